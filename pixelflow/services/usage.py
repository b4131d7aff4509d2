"""Usage reports: what a user's succeeded jobs cost, over a time range, per UTC day if asked.

The API (``GET /v1/usage``, for the caller) and the CLI (``pixelflow usage``, for operators)
both answer through this service, so they print the same numbers.
"""

from __future__ import annotations

from datetime import date, datetime

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.models import UsageDay
from pixelflow.core.usage import report_days, usage_window
from pixelflow.core.wire import UsageReport


class UsageService:
    def __init__(self, *, store: Store, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    async def report(
        self,
        user_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        by_day: bool = False,
    ) -> UsageReport:
        start, end = usage_window(start, end, now=self.clock())
        # Checked before any query: a too-long day report costs nothing.
        days = report_days(start, end) if by_day else None
        totals = await self.store.usage_totals(user_id, start=start, end=end)
        rows = None
        if days is not None:
            found = {
                day.date: day for day in await self.store.usage_days(user_id, start=start, end=end)
            }
            # Every day of the range, zeros included: a chart needs no gap-filling.
            rows = [found.get(day) or _empty_day(day) for day in days]
        return UsageReport(
            user_id=user_id,
            start=start,
            end=end,
            jobs=totals.jobs,
            pixels_processed=totals.pixels_processed,
            bytes_in=totals.bytes_in,
            bytes_out=totals.bytes_out,
            bytes_saved=totals.bytes_saved,
            compute_time_ms=totals.compute_time_ms,
            days=rows,
        )


def _empty_day(day: date) -> UsageDay:
    return UsageDay(
        date=day,
        jobs=0,
        pixels_processed=0,
        bytes_in=0,
        bytes_out=0,
        bytes_saved=0,
        compute_time_ms=0,
    )

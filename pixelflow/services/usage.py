"""Usage reports: what a user's succeeded jobs cost, over a time range, per UTC day if asked.

The API (``GET /v1/usage``, for the caller) and the CLI (``pixelflow usage``, for operators)
both answer through this service, so they print the same numbers.
"""

from __future__ import annotations

from datetime import datetime

from pixelflow.adapters.store.protocol import Store
from pixelflow.core.clock import Clock, utc_now
from pixelflow.core.models import UsageDay, UsageTotals
from pixelflow.core.usage import report_days, usage_window
from pixelflow.core.wire import UsageReport

_FIELDS: tuple[str, ...] = UsageTotals.__struct_fields__


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
        if not by_day:
            totals = await self.store.usage_totals(user_id, start=start, end=end)
            return _report(user_id, start, end, totals, days=None)
        days = report_days(start, end)  # refuses a too-long range before any query
        found = {
            row.date: row for row in await self.store.usage_days(user_id, start=start, end=end)
        }
        # Every day of the range, zeros included: a chart needs no gap-filling. The totals are
        # the days' sum, so the two always agree (one query, one snapshot).
        rows = [found.get(day) or UsageDay(date=day, **dict.fromkeys(_FIELDS, 0)) for day in days]
        totals = UsageTotals(**{f: sum(getattr(row, f) for row in rows) for f in _FIELDS})
        return _report(user_id, start, end, totals, days=rows)


def _report(
    user_id: str,
    start: datetime,
    end: datetime,
    totals: UsageTotals,
    *,
    days: list[UsageDay] | None,
) -> UsageReport:
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
        days=days,
    )

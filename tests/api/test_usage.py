"""GET /v1/usage through the real app and embedded worker: the caller's own numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.api.conftest import ClientFactory
from tests.support.jobs import job_body, wait_for

TOTALS = ("pixels_processed", "bytes_in", "bytes_out", "bytes_saved", "compute_time_ms")


def month_bounds(now: datetime) -> tuple[str, str]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z")


async def run_job(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    body = job_body(
        {"id": "small", "action": "resize", "width": 100, "format": "webp"},
        {"id": "turned", "action": "rotate", "angle": 90},
        source="local_file",
        key="rocket.jpg",
    )
    created = (await client.post("/v1/jobs", json=body, headers=headers)).json()
    assert (await client.post(created["start_url"], headers=headers)).status_code == 202
    client.headers.update(headers)
    job = await wait_for(client, created["job_id"])
    assert job["status"] == "succeeded", job
    return job


async def test_usage_matches_the_callers_jobs(make_client: ClientFactory) -> None:
    client = await make_client(PIXELFLOW_AUTH="header")
    alice, bob = {"X-User-ID": "alice"}, {"X-User-ID": "bob"}
    before = datetime.now(UTC)
    empty = await client.get("/v1/usage", headers=alice)
    assert empty.status_code == 200, empty.text
    assert empty.json()["jobs"] == 0

    jobs = [await run_job(client, alice) for _ in range(2)]
    await run_job(client, bob)

    report = (await client.get("/v1/usage", headers=alice)).json()
    start, end = month_bounds(before)
    assert (report["from"], report["to"], report["user_id"]) == (start, end, "alice")
    assert report["jobs"] == 2
    for field in TOTALS:
        assert report[field] == sum(job["usage"][field] for job in jobs), field  # type: ignore[index]
    assert "days" not in report

    today = datetime.now(UTC).date().isoformat()
    by_day = (await client.get("/v1/usage", params={"group": "day"}, headers=alice)).json()
    assert {k: v for k, v in by_day.items() if k != "days"} == report
    rows = {row["date"]: row for row in by_day["days"]}
    assert rows[today] == {"date": today, "jobs": 2, **{f: report[f] for f in TOTALS}}
    assert sum(row["jobs"] for row in by_day["days"]) == 2
    assert len(by_day["days"]) >= 28 and by_day["days"][0]["date"] == start[:10]

    # A range that ended before the jobs ran counts none of them.
    earlier = {"from": "2020-01-01T00:00:00Z", "to": (before - timedelta(seconds=1)).isoformat()}
    assert (await client.get("/v1/usage", params=earlier, headers=alice)).json()["jobs"] == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "last week"}, "invalid_time_range"),
        ({"to": "2026-03-01T00:00:00"}, "invalid_time_range"),  # no offset
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "invalid_time_range"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "invalid_time_range"),
        ({"from": "2020-01-01", "to": "2026-01-01", "group": "day"}, "invalid_time_range"),
        ({"group": "week"}, "invalid_parameter"),
        ({"since": "2026-03-01"}, "unknown_parameter"),
    ],
)
async def test_a_bad_range_is_a_400_with_a_stable_code(
    client: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    response = await client.get("/v1/usage", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code, response.text


async def test_usage_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/usage"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "group"}
    assert set(operation["responses"]) == {"200", "400", "401", "503"}
    schema = document["components"]["schemas"]["UsageReport"]
    assert {"from", "to", "jobs", *TOTALS, "days"} <= set(schema["properties"])
    assert set(document["components"]["schemas"]["UsageDay"]["required"]) >= {"date", "jobs"}

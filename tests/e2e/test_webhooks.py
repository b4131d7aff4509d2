"""Webhooks end to end, on real processes: the production deployment (``pixelflow api`` +
``pixelflow worker`` on PostgreSQL, Redis and SeaweedFS) and ``pixelflow serve``, each sending
to a real receiver in the test process.

The delivery policy is shrunk so a whole schedule runs in seconds: 5 attempts, backoff from
0.2 s doubling up to 3 s, a 2 s timeout per attempt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.deployment import TEST_WEBHOOK_SECRET, Deployment, production_deployment
from tests.support.processes import PixelflowProcess, free_port, pixelflow_command
from tests.support.receiver import Received, Receiver, Reply
from tests.support.seaweed import SeaweedServer

FAST_WEBHOOKS = {
    "PIXELFLOW_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
    "WEBHOOK_MAX_ATTEMPTS": "5",
    "WEBHOOK_INITIAL_BACKOFF": "0.2",
    "WEBHOOK_MAX_BACKOFF": "3",
    "WEBHOOK_TIMEOUT": "2",
    "WEBHOOK_POLL_INTERVAL": "0.2",
}
QUICK = [{"id": "thumb", "action": "resize", "width": 160, "format": "webp"}]
GOOD, BROKEN = "photo-1080p.jpg", "bad-not-an-image.jpg"


class Backend:
    """One way of running PixelFlow, seen through its HTTP API."""

    name: str
    url: str
    secret: str

    def client(self) -> httpx.AsyncClient:
        raise NotImplementedError

    def create_key(self, user: str) -> str:
        """A new API key for ``user`` (``api_key`` mode), made by ``pixelflow keys create``."""
        raise NotImplementedError

    def key_client(self, key: str) -> httpx.AsyncClient:
        raise NotImplementedError

    async def create(self, client: httpx.AsyncClient, webhook_url: str, image: str) -> str:
        raise NotImplementedError

    def logs(self) -> str:
        raise NotImplementedError

    async def submit(self, client: httpx.AsyncClient, webhook_url: str, image: str = GOOD) -> str:
        job_id = await self.create(client, webhook_url, image)
        started = await client.post(f"/v1/jobs/{job_id}/start")
        assert started.status_code == 202, f"{started.text}\n{self.logs()}"
        return job_id

    async def settled(
        self, client: httpx.AsyncClient, job_id: str, within: float = 60
    ) -> dict[str, Any]:
        """The job, as the API shows it, once its webhook is delivered or failed."""
        deadline = time.monotonic() + within
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = await client.get(f"/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()
            hook = job.get("webhook")
            if hook is not None and hook["state"] in {"delivered", "failed"}:
                return job
            await asyncio.sleep(0.1)
        raise AssertionError(f"webhook of {job_id} not settled: {job}\n{self.logs()}")


class Production(Backend):
    name = "production"

    def __init__(self, deployment: Deployment, fixtures: Path) -> None:
        self.deployment = deployment
        self.fixtures = fixtures
        self.url = deployment.url
        self.secret = TEST_WEBHOOK_SECRET

    def client(self) -> httpx.AsyncClient:
        return self.deployment.client("hooks")

    def create_key(self, user: str) -> str:
        return self.deployment.create_key(user)

    def key_client(self, key: str) -> httpx.AsyncClient:
        return self.deployment.key_client(key)

    async def create(self, client: httpx.AsyncClient, webhook_url: str, image: str) -> str:
        body = {"source_type": "s3_presigned", "pipeline": QUICK, "webhook_url": webhook_url}
        created = await client.post("/v1/jobs", json=body)
        assert created.status_code == 202, f"{created.text}\n{self.logs()}"
        async with httpx.AsyncClient(timeout=30) as http:
            put = await http.put(
                created.json()["upload"]["presigned_put_url"],
                content=(self.fixtures / image).read_bytes(),
            )
        assert put.status_code == 200, put.text
        job_id: str = created.json()["job_id"]
        return job_id

    def logs(self) -> str:
        return self.deployment.logs()


class Serve(Backend):
    name = "serve"

    def __init__(self, workdir: Path, fixtures: Path, **env: str) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.args = ["serve", "--port", str(port), "--data-dir", str(self.data_dir)]
        self.env = {
            "PIXELFLOW_LOCAL_SOURCE_ROOT": str(fixtures),
            "PIXELFLOW_API_METRICS_ADDR": "",
            **FAST_WEBHOOKS,
            **env,
        }
        self.process: PixelflowProcess | None = None
        self.secret = ""
        self.starts = 0

    def start(self) -> Serve:
        self.starts += 1
        log = self.workdir / f"serve-{self.starts}.log"
        self.process = PixelflowProcess(self.args, env=self.env, log_path=log).start()
        self.process.wait_http(f"{self.url}/healthz")
        if self.env.get("PIXELFLOW_AUTH") != "api_key":
            # Unset WEBHOOK_SIGNING_SECRET: serve made one and keeps it in its data dir.
            key = (self.data_dir / "webhook-signing.key").read_bytes()
            self.secret = "whsec_" + base64.b64encode(key).decode()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)

    def create_key(self, user: str) -> str:
        command = pixelflow_command(
            "keys", "create", "--user", user, "--data-dir", str(self.data_dir)
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def key_client(self, key: str) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)

    async def create(self, client: httpx.AsyncClient, webhook_url: str, image: str) -> str:
        body = {
            "source_type": "local_file",
            "object_key": image,
            "pipeline": QUICK,
            "webhook_url": webhook_url,
        }
        created = await client.post("/v1/jobs", json=body)
        assert created.status_code == 202, f"{created.text}\n{self.logs()}"
        job_id: str = created.json()["job_id"]
        return job_id

    def logs(self) -> str:
        return "" if self.process is None else self.process.log_tail(40)


@contextlib.contextmanager
def webhook_deployment(
    seaweed: SeaweedServer, workdir: Path, fixtures_dir: Path, **env: str
) -> Iterator[Production]:
    """api and one worker with fast webhook retries; ``env`` adds to (or overrides) that."""
    with production_deployment(
        workdir,
        seaweed.endpoint,
        PIXELFLOW_RATE_LIMIT_CAPACITY="1000",
        WORKER_CONCURRENCY="2",
        WORKER_MAX_ACTIVE_JOBS="1",
        **{**FAST_WEBHOOKS, **env},
    ) as deployment:
        deployment.start(workers=("worker-a",))
        yield Production(deployment, fixtures_dir)


@pytest.fixture(scope="module")
def production(
    seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path
) -> Iterator[Production]:
    with webhook_deployment(seaweed, tmp_path_factory.mktemp("webhooks"), fixtures_dir) as p:
        yield p


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[Serve]:
    server = Serve(tmp_path_factory.mktemp("serve-webhooks"), fixtures_dir).start()
    yield server
    server.stop()


@pytest.fixture(params=["production", "serve"])
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.getfixturevalue(request.param)
    return chosen


@pytest.fixture(scope="module")
def keyed_production(
    seaweed: SeaweedServer, tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path
) -> Iterator[Production]:
    """api and worker in api_key mode. WEBHOOK_SIGNING_SECRET stays set, as an operator
    leaving header mode would leave it: every user's own secret signs, never the shared one."""
    workdir = tmp_path_factory.mktemp("webhooks-keyed")
    with webhook_deployment(seaweed, workdir, fixtures_dir, PIXELFLOW_AUTH="api_key") as p:
        yield p


@pytest.fixture(scope="module")
def keyed_serve(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path) -> Iterator[Serve]:
    workdir = tmp_path_factory.mktemp("serve-webhooks-keyed")
    server = Serve(workdir, fixtures_dir, PIXELFLOW_AUTH="api_key").start()
    yield server
    server.stop()


@pytest.fixture(params=["keyed_production", "keyed_serve"])
def keyed(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.getfixturevalue(request.param)
    return chosen


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


def event_of(request: Received) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.json.decode(request.body)
    return body


# -- the Done-when cases, on both backends -----------------------------------------------------


async def test_one_completed_event_however_many_attempts_it_takes(
    backend: Backend, receiver: Receiver
) -> None:
    url = receiver.script("/hook", Reply(500), Reply(503), Reply(500), Reply(200))
    async with backend.client() as client:
        job_id = await backend.submit(client, url)
        job = await backend.settled(client, job_id)
        await asyncio.sleep(1)  # room for a second event to arrive, if one were sent
    assert job["status"] == "succeeded"
    hook = job["webhook"]
    assert (hook["event"], hook["state"], hook["attempts"], hook["last_status"]) == (
        "job.completed",
        "delivered",
        4,
        200,
    )
    requests = receiver.received("/hook")
    assert len(requests) == 4
    assert {r.headers["webhook-id"] for r in requests} == {hook["event_id"]}
    assert {r.headers["x-pixelflow-event"] for r in requests} == {"job.completed"}
    assert all(r.verifies_with(backend.secret) for r in requests), backend.logs()
    body = event_of(requests[0])
    assert (body["event"], body["event_id"], body["id"], body["status"]) == (
        "job.completed",
        hook["event_id"],
        job_id,
        "succeeded",
    )
    assert [o["step_id"] for o in body["outputs"]] == ["thumb"]


async def test_a_receiver_down_all_along_fails_the_delivery_not_the_job(backend: Backend) -> None:
    async with backend.client() as client:
        job_id = await backend.submit(client, f"http://127.0.0.1:{free_port()}/down")
        job = await backend.settled(client, job_id)
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
    assert (job["webhook"]["state"], job["webhook"]["attempts"]) == ("failed", 5)
    assert job["webhook"]["next_attempt_at"] is None


async def test_410_gets_one_delivery(backend: Backend, receiver: Receiver) -> None:
    url = receiver.script("/gone", Reply(410))
    async with backend.client() as client:
        job = await backend.settled(client, await backend.submit(client, url))
        await asyncio.sleep(1)  # a retry would come within 0.2..0.4 s
    assert (job["webhook"]["state"], job["webhook"]["attempts"]) == ("failed", 1)
    assert len(receiver.received("/gone")) == 1


async def test_retry_after_is_honoured(backend: Backend, receiver: Receiver) -> None:
    url = receiver.script("/busy", Reply(503, {"Retry-After": "2"}), Reply(200))
    async with backend.client() as client:
        job = await backend.settled(client, await backend.submit(client, url))
    first, second = receiver.received("/busy")
    assert second.at - first.at >= 1.9  # the backoff alone would retry after 0.1..0.2 s
    assert (job["webhook"]["state"], job["webhook"]["attempts"]) == ("delivered", 2)


async def test_a_redirect_is_not_followed(backend: Backend, receiver: Receiver) -> None:
    url = receiver.script("/moved", Reply(307, {"Location": receiver.url("/elsewhere")}))
    async with backend.client() as client:
        job = await backend.settled(client, await backend.submit(client, url))
    assert receiver.received("/elsewhere") == []
    assert [r.path for r in receiver.requests] == ["/moved", "/moved"]  # then 200 on retry
    assert (job["webhook"]["attempts"], job["webhook"]["state"]) == (2, "delivered")


async def test_failed_and_canceled_jobs_are_each_delivered_once(
    backend: Backend, receiver: Receiver
) -> None:
    async with backend.client() as client:
        failed_id = await backend.submit(client, receiver.url("/failed"), image=BROKEN)
        canceled_id = await backend.create(client, receiver.url("/canceled"), GOOD)
        canceled = await client.post(f"/v1/jobs/{canceled_id}/cancel")
        assert canceled.status_code == 202, canceled.text
        failed = await backend.settled(client, failed_id)
        cancel_view = await backend.settled(client, canceled_id)
        await asyncio.sleep(1)
    assert failed["status"] == "failed" and failed["webhook"]["event"] == "job.failed"
    assert cancel_view["status"] == "canceled"
    assert cancel_view["webhook"]["event"] == "job.canceled"
    (to_failed,) = receiver.received("/failed")
    (to_canceled,) = receiver.received("/canceled")
    assert event_of(to_failed)["error"]["code"] == "invalid_image"
    assert to_canceled.headers["x-pixelflow-event"] == "job.canceled"
    assert to_failed.verifies_with(backend.secret) and to_canceled.verifies_with(backend.secret)


async def test_secret_routes_refuse_shared_secret_modes(backend: Backend) -> None:
    async with backend.client() as client:
        for method, path in (
            ("GET", "/v1/webhooks/secret"),
            ("POST", "/v1/webhooks/secret/rotate"),
        ):
            response = await client.request(method, path)
            assert response.status_code == 409, response.text
            assert response.json()["code"] == "webhook_secret_shared"


# -- per-user secrets (api_key mode), on both backends -------------------------------------------


async def read_secret(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/webhooks/secret")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def signed_by(request: Received, signature: str, secret: str) -> bool:
    """``signature`` (one ``v1,...`` of ``webhook-signature``) verifies with ``secret``."""
    try:
        Webhook(secret).verify(request.body, {**request.headers, "webhook-signature": signature})
    except WebhookVerificationError:
        return False
    return True


async def test_each_users_events_verify_with_their_own_secret_only(
    keyed: Backend, receiver: Receiver
) -> None:
    """Two users, each with a key: alice reads her secret before her job (the API makes it),
    bob after his event was sent (the worker made it)."""
    secrets: dict[str, str] = {}
    for user in ("alice", "bob"):
        async with keyed.key_client(keyed.create_key(user)) as client:
            if user == "alice":
                secrets[user] = (await read_secret(client))["secret"]
            job = await keyed.settled(client, await keyed.submit(client, receiver.url(f"/{user}")))
            assert (job["webhook"]["state"], job["webhook"]["attempts"]) == ("delivered", 1)
            shown = await read_secret(client)
            assert shown["previous_expires_at"] is None
            assert secrets.setdefault(user, shown["secret"]) == shown["secret"]
    assert secrets["alice"] != secrets["bob"]
    (to_alice,) = receiver.received("/alice")
    (to_bob,) = receiver.received("/bob")
    for event, own, other in ((to_alice, "alice", "bob"), (to_bob, "bob", "alice")):
        assert event.verifies_with(secrets[own]), keyed.logs()
        assert not event.verifies_with(secrets[other])
        assert not event.verifies_with(TEST_WEBHOOK_SECRET)  # the shared one signs nothing
        assert " " not in event.headers["webhook-signature"]  # one secret, one signature


async def test_after_a_rotation_the_new_and_old_secrets_both_sign(
    keyed: Backend, receiver: Receiver
) -> None:
    async with keyed.key_client(keyed.create_key("carol")) as client:
        old = (await read_secret(client))["secret"]
        response = await client.post("/v1/webhooks/secret/rotate")
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        rotated = response.json()
        new = rotated["secret"]
        assert new.startswith("whsec_") and new != old
        overlap = datetime.fromisoformat(rotated["previous_expires_at"]) - datetime.now(UTC)
        assert timedelta(hours=23, minutes=59) < overlap <= timedelta(hours=24)
        assert await read_secret(client) == rotated
        job = await keyed.settled(client, await keyed.submit(client, receiver.url("/rotated")))
    assert job["webhook"]["state"] == "delivered", keyed.logs()
    (event,) = receiver.received("/rotated")
    signatures = event.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2, signatures
    first, second = signatures  # v1,<new> v1,<old>
    assert signed_by(event, first, new) and not signed_by(event, first, old)
    assert signed_by(event, second, old) and not signed_by(event, second, new)
    # X-Pixelflow-Signature carries the newest only (and Standard Webhooks verifies with either).
    assert event.verifies_with(new) and not event.verifies_with(old)


# -- faults ------------------------------------------------------------------------------------


async def test_deliveries_survive_a_worker_kill_and_a_redis_flush(
    seaweed: SeaweedServer, tmp_path: Path, fixtures_dir: Path, receiver: Receiver
) -> None:
    env = {**FAST_WEBHOOKS, "WEBHOOK_TIMEOUT": "4", "WEBHOOK_INITIAL_BACKOFF": "1"}
    with production_deployment(tmp_path, seaweed.endpoint, **env) as deployment:
        deployment.start(workers=("worker-a",))
        backend = Production(deployment, fixtures_dir)
        # The first attempt hangs: the worker is killed in the middle of it.
        killed = receiver.script("/killed", Reply(200, delay=30), Reply(200))
        # Two failures, with Redis losing this deployment's keys between them.
        flushed = receiver.script("/flushed", Reply(500), Reply(500), Reply(200))
        async with backend.client() as client:
            killed_id = await backend.submit(client, killed)
            await receiver.wait_for("/killed", 1)
            deployment.processes["worker-a"].kill()
            deployment.start_worker("worker-b")

            flushed_id = await backend.submit(client, flushed)
            await receiver.wait_for("/flushed", 1)
            assert await deployment.forget_queue() > 0
            killed_job = await backend.settled(client, killed_id)
            flushed_job = await backend.settled(client, flushed_id)

    # The interrupted attempt was never recorded: the event is sent again, same id, once more.
    first, again = receiver.received("/killed")
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert (killed_job["status"], killed_job["attempts"]) == ("succeeded", 1)
    assert (killed_job["webhook"]["state"], killed_job["webhook"]["attempts"]) == ("delivered", 1)
    assert len(receiver.received("/flushed")) == 3
    assert (flushed_job["webhook"]["state"], flushed_job["webhook"]["attempts"]) == (
        "delivered",
        3,
    )


async def test_serve_resumes_deliveries_after_a_crash(
    tmp_path: Path, fixtures_dir: Path, receiver: Receiver
) -> None:
    server = Serve(tmp_path, fixtures_dir, WEBHOOK_TIMEOUT="4").start()
    try:
        url = receiver.script("/crash", Reply(200, delay=30), Reply(200))
        async with server.client() as client:
            job_id = await server.submit(client, url)
            await receiver.wait_for("/crash", 1)
        assert server.process is not None
        server.process.kill()
        server.start()
        async with server.client() as client:
            job = await server.settled(client, job_id)
    finally:
        server.stop()
    first, again = receiver.received("/crash")
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert again.verifies_with(server.secret)  # the same secret, kept across restarts
    assert (job["webhook"]["state"], job["webhook"]["attempts"]) == ("delivered", 1)
    key = server.data_dir / "webhook-signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


# -- startup -----------------------------------------------------------------------------------


def test_api_and_worker_refuse_to_start_without_the_shared_secret(
    production: Production, tmp_path: Path
) -> None:
    deployment = production.deployment
    for command in ("api", "worker"):
        env = {**deployment.env, "PIXELFLOW_API_ADDR": f"127.0.0.1:{free_port()}"}
        env.pop("WEBHOOK_SIGNING_SECRET")
        process = PixelflowProcess([command], env=env, log_path=tmp_path / f"{command}.log")
        process.env.pop("WEBHOOK_SIGNING_SECRET", None)
        process.start()
        assert process.process is not None
        assert process.process.wait(timeout=60) == 2
        assert "WEBHOOK_SIGNING_SECRET: required" in process.log_text()

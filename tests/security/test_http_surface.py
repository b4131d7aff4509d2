"""The HTTP surface of a real ``serve``, attacked as a hostile web page or client would."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.security.conftest import MAX_SOURCE_BYTES, Target

S3_JOB = {"source_type": "s3_presigned", "pipeline": [{"id": "a", "action": "convert"}]}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["error"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "host", ["attacker.example", "127.evil.example", "localhost.attacker.example", "0.0.0.0"]
)
def test_a_foreign_host_name_is_refused_dns_rebinding(target: Target, host: str) -> None:
    with target.client() as client:
        headers = {"Host": f"{host}:{target.port}"}
        assert_error(client.get("/v1/jobs", headers=headers), 400, "host_not_allowed")
        created = client.post("/v1/jobs", json=S3_JOB, headers=headers)
        assert_error(created, 400, "host_not_allowed")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_loopback_host_names_are_answered(target: Target, host: str) -> None:
    with target.client() as client:
        for header in (host, f"{host}:{target.port}"):
            assert client.get("/v1/jobs", headers={"Host": header}).status_code == 200


def test_allowed_hosts_widen_the_check(
    tmp_path_factory: pytest.TempPathFactory, target: Target
) -> None:
    log = tmp_path_factory.mktemp("allowed") / "serve.log"
    wide = Target(target.root, log, PIXELFLOW_ALLOWED_HOSTS="dev.example, *.lan")
    wide.data_dir = target.root / ".pixelflow-allowed"
    wide.process.args[-1] = str(wide.data_dir)
    wide.start()
    try:
        with wide.client() as client:
            for host in ("dev.example", "box.lan", "localhost"):
                assert client.get("/healthz", headers={"Host": host}).status_code == 200
            assert_error(client.get("/healthz", headers={"Host": "lan"}), 400, "host_not_allowed")
            assert_error(
                client.get("/healthz", headers={"Host": "evil.example"}), 400, "host_not_allowed"
            )
    finally:
        wide.process.stop()


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_json_body_must_say_it_is_json(target: Target, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with target.client() as client:
        response = client.post("/v1/jobs", content=json.dumps(S3_JOB).encode(), headers=headers)
        if content_type is None:
            assert "content-type" not in response.request.headers
        assert_error(response, 415, "unsupported_media_type")


def test_body_less_start_and_cancel_need_no_content_type(target: Target) -> None:
    with target.client() as client:
        created = client.post("/v1/jobs", json=S3_JOB).json()
        canceled = client.post(f"/v1/jobs/{created['job_id']}/cancel")
        assert "content-type" not in canceled.request.headers
        assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"


def test_invalid_utf8_is_invalid_json_not_a_500(target: Target) -> None:
    headers = {"content-type": "application/json"}
    with target.client() as client:
        for body in (b'{"source_type": "s3_pre\xffsigned"}', b"\xff{}", b'{"source_type": "\xc3"}'):
            response = client.post("/v1/jobs", content=body, headers=headers)
            assert_error(response, 400, "invalid_json")


def test_bodies_are_bounded(target: Target) -> None:
    headers = {"content-type": "application/json"}
    big = b'{"source_type": "s3_presigned", "pad": "' + b"x" * (1 << 20) + b'"}'
    with target.client() as client:
        assert_error(client.post("/v1/jobs", content=big, headers=headers), 413, "body_too_large")


def test_a_pipeline_that_cannot_finish_in_time_is_refused_at_create(target: Target) -> None:
    # A 2×2 image enlarged to 6000×6000 and blurred three times at σ=100: minutes of CPU.
    body = {
        "source_type": "s3_presigned",
        "pipeline": [
            {"id": "big", "action": "resize", "width": 6000, "height": 6000, "fit": "fill"},
            {"id": "b1", "action": "blur", "sigma": 100, "input": "big"},
            {"id": "b2", "action": "blur", "sigma": 100, "input": "b1"},
            {"id": "b3", "action": "blur", "sigma": 100, "input": "b2"},
        ],
    }
    with target.client() as client:
        response = client.post("/v1/jobs", json=body)
        assert_error(response, 400, "pipeline_too_costly")
        assert response.json()["error"].startswith("pipeline[1] (blur)")


def test_signed_object_urls_cannot_be_forged_or_misused(target: Target) -> None:
    with target.client() as client:
        created = client.post("/v1/jobs", json=S3_JOB).json()
        put_url = created["upload"]["presigned_put_url"]
        parts = urlsplit(put_url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}

        def url(path: str = parts.path, **changes: str) -> str:
            return f"{path}?{urlencode({**query, **changes})}"

        forged = "0" * 64
        assert_error(client.put(url(signature=forged), content=b"x"), 401, "invalid_signature")
        later = str(int(query["expires"]) + 3600)
        assert_error(client.put(url(expires=later), content=b"x"), 401, "invalid_signature")
        other_key = parts.path.replace("/source", "/other")
        assert_error(client.put(url(other_key), content=b"x"), 401, "invalid_signature")
        # A PUT URL does not grant a GET of the same key (outputs are served by the outputs
        # route only, so there is no object GET at all).
        read = client.get(url())
        assert read.status_code in {401, 405} and read.json()["code"] in {
            "invalid_signature",
            "method_not_allowed",
        }
        # An output key under the data dir cannot be reached by path tricks either.
        traversal = parts.path.replace("uploads/", "uploads/../../")
        response = client.put(url(traversal), content=b"x")
        assert response.status_code in {400, 401, 404}
        assert response.headers["content-type"].startswith("application/json")
        # The upload itself is bounded by PIXELFLOW_MAX_SOURCE_BYTES, declared or streamed.
        too_big = b"x" * (MAX_SOURCE_BYTES + 1)
        assert_error(client.put(url(), content=too_big), 413, "body_too_large")
        streamed = iter([too_big[: 1 << 20]] * 3)
        assert_error(client.put(url(), content=streamed), 413, "body_too_large")
        assert client.put(url(), content=b"small enough").status_code == 200


def test_form_upload_is_bounded_by_its_signed_limit(target: Target) -> None:
    """``upload.presigned_post`` on serve: the same shape as S3's presigned POST, a file over the
    signed limit is refused before it is stored (start then finds no source), its fields cannot
    be altered, and a small image uploads and runs."""
    with target.client() as client:
        created = client.post("/v1/jobs", json=S3_JOB).json()
        post = created["upload"]["presigned_post"]
        assert post["url"] == f"{target.url}/v1/objects"
        assert post["fields"]["max_bytes"] == str(MAX_SOURCE_BYTES)
        start_url = f"/v1/jobs/{created['job_id']}/start"

        def send(data: bytes, **changes: str) -> httpx.Response:
            fields = {**post["fields"], **changes}
            return client.post(post["url"], data=fields, files={"file": ("source", data)})

        assert_error(send(b"x" * (MAX_SOURCE_BYTES + 1)), 413, "body_too_large")
        assert_error(client.post(start_url), 409, "source_missing")
        raised = str(MAX_SOURCE_BYTES * 2)
        assert_error(send(b"x", max_bytes=raised), 401, "invalid_signature")
        other_key = post["fields"]["key"].replace("/source", "/other")
        assert_error(send(b"x", key=other_key), 401, "invalid_signature")
        assert_error(send(b"x", signature="0" * 64), 401, "invalid_signature")
        assert_error(send(b""), 400, "empty_upload")
        # A form whose file is not named "file", or a raw body, is no upload.
        misnamed = {"image": ("source", b"x")}
        no_file = client.post(post["url"], data=post["fields"], files=misnamed)
        assert_error(no_file, 400, "missing_field")
        raw = client.post(post["url"], content=b"x", headers={"content-type": "text/plain"})
        assert_error(raw, 415, "unsupported_media_type")
        for content_type in ("multipart/form-data; boundary=b", "multipart/form-data"):
            broken = client.post(
                post["url"], content=b"--x\r\n", headers={"content-type": content_type}
            )
            assert_error(broken, 400, "invalid_form")
        assert_error(client.post(start_url), 409, "source_missing")

        rocket = (target.root / "rocket.jpg").read_bytes()
        assert send(rocket).status_code == 204
        assert client.post(start_url).status_code == 202
        job = target.wait(client, created["job_id"])
    assert job["status"] == "succeeded", job


def test_sql_in_every_string_is_data(target: Target) -> None:
    injection = "x'); DROP TABLE jobs; --"
    with target.client() as client:
        created = client.post("/v1/jobs", json=S3_JOB, headers={"Idempotency-Key": injection})
        assert created.status_code == 202
        again = client.post("/v1/jobs", json=S3_JOB, headers={"Idempotency-Key": injection})
        assert again.json()["job_id"] == created.json()["job_id"]
        assert client.get("/v1/jobs", params={"cursor": injection}).status_code in {200, 400}
        assert client.get(f"/v1/jobs/{injection}").status_code == 404
        assert client.get("/v1/jobs").status_code == 200  # the table is still there


def test_errors_carry_no_internals(target: Target) -> None:
    with target.client() as client:
        assert_error(client.get("/v2/nothing"), 404, "not_found")
        assert_error(client.request("BREW", "/v1/jobs"), 405, "method_not_allowed")
        assert_error(client.get("/v1/jobs/nope"), 404, "job_not_found")

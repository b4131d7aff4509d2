"""Hostile images through a real ``serve``: refused before decoding, without libvips' words."""

from __future__ import annotations

import pytest

from tests.security.conftest import Target


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("bad-bomb-400mp.png", "source_too_large"),  # refused from its header
        ("drawing.svg", "invalid_image"),  # a loader outside the allowlist
        ("bad-not-an-image.jpg", "invalid_image"),
    ],
)
def test_hostile_sources_fail_the_job_with_a_clear_code(
    target: Target, source: str, code: str
) -> None:
    body = {
        "source_type": "local_file",
        "object_key": source,
        "pipeline": [{"id": "a", "action": "convert", "format": "png"}],
    }
    with target.client() as client:
        job = target.run(client, body)
    assert job["status"] == "failed"
    assert job["error"]["code"] == code
    assert job["attempts"] == 1  # permanent: never retried
    message = job["error"]["message"].lower()
    assert "vips" not in message and "traceback" not in message and "load" not in message

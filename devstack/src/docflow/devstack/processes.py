"""Starting and stopping the local stack's processes: one helper for all of them."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with code {process.returncode}")
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Process:
    """A child process in its own process group, so a stop reaches its children too."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 log_path: Path | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self.popen = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out:
            out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole process group (a Celery worker and its pool children)."""
        if self.alive():
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group at once, as the OOM killer or a node loss would."""
        if self.popen is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it lingers."""
        if self.popen is None:
            return
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

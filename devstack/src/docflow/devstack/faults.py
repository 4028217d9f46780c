"""Real faults for the local stack's processes and folders, for the reliability tests.

Nothing here mocks a failure: processes get real signals, and a "dependency outage"
is a real filesystem failure. A folder is taken away and a plain file put in its
place, so every access fails with ENOTDIR, as on a broken mount, rather than with
ENOENT (which the stores would rightly read as "no such object", or quietly fix by
creating the folder anew).
"""

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from docflow.devstack.processes import Process

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll until `condition()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is `pid` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command may contain spaces and parentheses: ppid follows the last ')'.
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def pool_child(worker: Process, timeout: float = 30) -> int:
    """The pid of a Celery worker's (single) prefork pool process."""
    return wait_for(lambda: next(iter(children_of(worker.pid)), None), timeout,
                    f"{worker.name}'s pool process")


def kill_pool_child(worker: Process) -> int:
    """SIGKILL the pool process only, as the kernel's OOM killer would: the worker's
    main process sees it lost and requeues the message it held (reject_on_worker_lost)."""
    pid = pool_child(worker)
    os.kill(pid, signal.SIGKILL)
    return pid


@contextmanager
def unavailable(folder: Path) -> Iterator[None]:
    """`folder` is unreachable (ENOTDIR for everything in it) until the block ends."""
    aside = folder.with_name(folder.name + ".unavailable")
    folder.rename(aside)
    folder.write_text("a dependency outage injected by docflow.devstack.faults\n")
    try:
        yield
    finally:
        restore(folder)


def restore(folder: Path) -> None:
    """End an outage begun by `unavailable` (also callable from within its block)."""
    aside = folder.with_name(folder.name + ".unavailable")
    if aside.exists():
        folder.unlink()
        aside.rename(folder)

"""`make run` keeps its processes running: one that exits is started again, with a backoff.

Before, one worker exiting (an OOM kill, a crash at start-up) stopped the whole stack.
A platform restarts a pod; the local stack does the same for its processes: each
restart is announced on the console with the exit code and the log to read, and
waits twice as long as the one before (from `base` up to `cap` seconds), so a
process that dies at once does not spin. A process that stayed up `stable_after`
seconds starts again from `base`.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from docflow.devstack.processes import Process

Say = Callable[[str], None]


@dataclass
class Supervised:
    """One process and how to start it again (the start returns the new Process)."""

    name: str
    process: Process
    start: Callable[[], Process]
    log: Path | None = None
    started_at: float = 0.0
    restarts: int = 0  # in a row, without a stable run between them
    restart_at: float | None = None  # when it is down: when to start it again


@dataclass
class Supervisor:
    say: Say
    base: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0
    clock: Callable[[], float] = time.monotonic
    entries: list[Supervised] = field(default_factory=list)

    def watch(self, name: str, process: Process | None, start: Callable[[], Process],
              log: Path | None = None) -> None:
        if process is not None:
            self.entries.append(Supervised(name, process, start, log, started_at=self.clock()))

    def delay(self, restarts: int) -> float:
        """Seconds before restart number `restarts` (1, 2, ...)."""
        return min(self.cap, self.base * 2 ** (restarts - 1))

    def check(self) -> None:
        """Notice what exited, start what is due. Call it every fraction of a second."""
        now = self.clock()
        for entry in self.entries:
            if entry.restart_at is None:
                if entry.process.alive():
                    continue
                if now - entry.started_at >= self.stable_after:
                    entry.restarts = 0
                entry.restarts += 1
                wait = self.delay(entry.restarts)
                entry.restart_at = now + wait
                code = entry.process.popen.returncode if entry.process.popen else None
                where = f"; its log: {entry.log}" if entry.log else ""
                self.say(f"docflow: {entry.name} exited (code {code}); restarting it in {wait:g} s "
                         f"(restart {entry.restarts} in a row){where}")
            elif now >= entry.restart_at:
                self._restart(entry)

    def _restart(self, entry: Supervised) -> None:
        try:
            entry.process = entry.start()
        except Exception as exc:  # it died again while starting: back off further
            entry.restarts += 1
            wait = self.delay(entry.restarts)
            entry.restart_at = self.clock() + wait
            self.say(f"docflow: {entry.name} failed to start ({exc}); trying again in {wait:g} s "
                     f"(restart {entry.restarts} in a row)")
            return
        entry.restart_at = None
        entry.started_at = self.clock()
        self.say(f"docflow: {entry.name} restarted (pid {entry.process.pid})")

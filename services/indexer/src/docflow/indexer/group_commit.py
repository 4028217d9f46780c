"""Appends to one table from the worker's threads, committed together (a group commit).

The indexer's document worker runs its tasks in threads (docs/architecture.md, "Group
commits"). Every LanceDB append is a commit: a new fragment and a new table version,
and a search's cost follows the fragment count. Appends to the same table that meet
here share one commit. The first to arrive leads: it waits until every other writer of
the process has handed in its rows or left (at most `max_wait_seconds`), then commits
them all. Each writer returns only once the commit holding its rows has landed, or
raises that commit's error; so a task still completes its document only after its
vectors are stored, and a message not yet acknowledged is redelivered as before.

A writer alone in the process commits at once: lingering happens only while other
tasks are running that may bring rows.
"""

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa

# How long a leader waits for the other running tasks' rows: a few index tasks' work
# (loading the artifacts, building the rows), so a backlog fills the group, while a
# task that is slow for another reason holds the others up at most this long.
MAX_WAIT_SECONDS = 0.25
# Rows of one commit at most; a bigger group is cut there (a new leader takes the rest).
MAX_ROWS = 20_000


@dataclass(eq=False)
class _Append:
    rows: pa.Table
    done: bool = False
    error: BaseException | None = None


class GroupCommit:
    def __init__(self, max_wait_seconds: float = MAX_WAIT_SECONDS, max_rows: int = MAX_ROWS) -> None:
        self.max_wait_seconds = max_wait_seconds
        self.max_rows = max_rows
        self._changed = threading.Condition()
        self._writers = 0  # threads inside `writer()`
        self._pending: dict[Hashable, list[_Append]] = {}  # key -> appends not yet committed
        self._committing: dict[Hashable, int] = {}  # key -> appends in its running commit

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Around a task that may append: while it runs, a leader may wait for its rows."""
        with self._changed:
            self._writers += 1
        try:
            yield
        finally:
            with self._changed:
                self._writers -= 1
                self._changed.notify_all()

    def append(self, key: Hashable, rows: pa.Table, commit: Callable[[pa.Table], None]) -> None:
        """Have `rows` committed to the table `key` names, together with other threads'
        rows for it; returns once they are, or raises the error of the commit that held them."""
        mine = _Append(rows)
        with self._changed:
            self._pending.setdefault(key, []).append(mine)
            self._changed.notify_all()
        while True:
            with self._changed:
                # Another thread's commit to this table is running: it may not hold these
                # rows, so wait for it to end, then take the lead if they are still pending.
                while not mine.done and key in self._committing:
                    self._changed.wait()
                if mine.done:
                    break
                group = self._gather(key, mine)
            self._commit(key, group, commit)
        if mine.error is not None:
            raise mine.error

    def _gather(self, key: Hashable, leader: _Append) -> list[_Append]:
        """As the leader (holding the condition): wait for the other writers' rows, then
        take the key's pending appends, the leader's first, up to `max_rows`."""
        deadline = time.monotonic() + self.max_wait_seconds
        self._committing[key] = 0
        while self._arrived() < self._writers and self._rows(key) < self.max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._changed.wait(remaining)
        pending = self._pending.pop(key)
        pending.remove(leader)
        pending.insert(0, leader)
        group, rows = [], 0
        for append in pending:
            if group and rows + append.rows.num_rows > self.max_rows:
                break
            group.append(append)
            rows += append.rows.num_rows
        if len(group) < len(pending):
            self._pending[key] = pending[len(group):]
        self._committing[key] = len(group)
        return group

    def _arrived(self) -> int:
        """Writers that have handed in their rows (pending or being committed)."""
        return sum(map(len, self._pending.values())) + sum(self._committing.values())

    def _rows(self, key: Hashable) -> int:
        return sum(append.rows.num_rows for append in self._pending.get(key, ()))

    def _commit(self, key: Hashable, group: list[_Append], commit: Callable[[pa.Table], None]) -> None:
        error = None
        try:
            commit(group[0].rows if len(group) == 1 else pa.concat_tables([a.rows for a in group]))
        except BaseException as exc:  # every writer of the group gets it, the leader too
            error = exc
        with self._changed:
            for append in group:
                append.error, append.done = error, True
            del self._committing[key]
            self._changed.notify_all()

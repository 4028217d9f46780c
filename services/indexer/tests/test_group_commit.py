"""Group commits: appends from several threads to one table share a LanceDB commit.

Real threads and a real LanceDB folder under tmp_path. Threads are lined up with a
barrier, so which appends meet does not depend on timing; the generous `max_wait`
values make a leader that waits when it should not show up as a test hanging, not
as a flaky timing.
"""

import threading
import time
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from docflow.indexer.group_commit import GroupCommit
from docflow.indexer.stores import VectorRecord
from docflow.indexer.stores.lancedb import LanceDBStore, table_name
from docflow.shared.messages import Chunk

SCHEMA = pa.schema([pa.field("x", pa.int64())])


@pytest.fixture
def table(tmp_path: Path):
    return lancedb.connect(str(tmp_path / "db")).create_table("t", schema=SCHEMA)


def rows(*values: int) -> pa.Table:
    return pa.table({"x": list(values)}, schema=SCHEMA)


def run_writers(count: int, body) -> list[BaseException | None]:
    """`count` threads, each running body(i) inside its own writer() once all are in."""
    errors: list[BaseException | None] = [None] * count

    def thread(i: int) -> None:
        try:
            body(i)
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a writer never returned"
    return errors


def test_writers_running_together_share_one_commit(table):
    group = GroupCommit(max_wait_seconds=30)
    everyone_in = threading.Barrier(6)
    before = table.version

    def body(i: int) -> None:
        with group.writer():
            everyone_in.wait()
            group.append("t", rows(i, 100 + i), table.add)

    assert run_writers(6, body) == [None] * 6
    assert table.version == before + 1  # one commit for the six appends
    assert sorted(table.to_arrow()["x"].to_pylist()) == sorted([*range(6), *range(100, 106)])


def test_a_writer_alone_commits_at_once(table):
    """No other task runs, so there is nothing to wait for (a 30 s wait would show)."""
    group = GroupCommit(max_wait_seconds=30)
    began = time.monotonic()
    with group.writer():
        group.append("t", rows(1), table.add)
    assert time.monotonic() - began < 10
    assert table.count_rows() == 1


def test_a_writer_that_leaves_without_rows_does_not_hold_the_commit(table):
    group = GroupCommit(max_wait_seconds=30)
    everyone_in = threading.Barrier(2)
    began = time.monotonic()

    def body(i: int) -> None:
        with group.writer():
            everyone_in.wait()
            if i == 0:
                group.append("t", rows(1), table.add)
            # writer 1 ends its task without appending (say, its document had no text)

    assert run_writers(2, body) == [None, None]
    assert time.monotonic() - began < 10
    assert table.count_rows() == 1


def test_a_failed_commit_fails_every_writer_of_its_group(table):
    group = GroupCommit(max_wait_seconds=30)
    everyone_in = threading.Barrier(4)
    commits = []

    def failing_commit(data: pa.Table) -> None:
        commits.append(data.num_rows)
        raise OSError("disk full")

    def body(i: int) -> None:
        with group.writer():
            everyone_in.wait()
            group.append("t", rows(i), failing_commit)

    errors = run_writers(4, body)
    assert commits == [4]
    assert all(isinstance(error, OSError) and "disk full" in str(error) for error in errors)
    assert table.count_rows() == 0  # nothing landed, so every task fails and is retried


def test_appends_to_different_tables_are_committed_apart(tmp_path):
    db = lancedb.connect(str(tmp_path / "db"))
    tables = {name: db.create_table(name, schema=SCHEMA) for name in ("a", "b")}
    group = GroupCommit(max_wait_seconds=30)
    everyone_in = threading.Barrier(4)

    def body(i: int) -> None:
        name = "ab"[i % 2]
        with group.writer():
            everyone_in.wait()
            group.append(name, rows(i), tables[name].add)

    assert run_writers(4, body) == [None] * 4
    assert sorted(tables["a"].to_arrow()["x"].to_pylist()) == [0, 2]
    assert sorted(tables["b"].to_arrow()["x"].to_pylist()) == [1, 3]
    assert tables["a"].version == tables["b"].version == 2  # created, then one commit each


def test_a_group_is_cut_at_its_row_limit(table):
    group = GroupCommit(max_wait_seconds=30, max_rows=4)
    everyone_in = threading.Barrier(3)
    commits = []

    def add(data: pa.Table) -> None:
        commits.append(data.num_rows)
        table.add(data)

    def body(i: int) -> None:
        with group.writer():
            everyone_in.wait()
            group.append("t", rows(*range(10 * i, 10 * i + 3)), add)

    assert run_writers(3, body) == [None] * 3
    assert commits == [3, 3, 3]  # two 3-row appends exceed 4 rows: one per commit
    assert table.count_rows() == 9


def test_store_appends_from_threads_share_commits_and_keep_every_row(tmp_path):
    """The LanceDB store's first-run appends (`fresh`) go through the group commit."""
    store = LanceDBStore(str(tmp_path / "lancedb"))
    store.upsert("acme", [VectorRecord.for_chunk("seed", 1, Chunk(index=0, text="seed"),
                                                 np.ones(4, dtype=np.float32))], fresh=True)
    versions_before = store.db.open_table(table_name("acme")).version
    everyone_in = threading.Barrier(8)

    def body(i: int) -> None:
        with store.appends.writer():
            everyone_in.wait()
            chunks = [VectorRecord.for_chunk(f"doc{i}", 1, Chunk(index=c, text=f"doc {i} part {c}"),
                                             np.eye(4, dtype=np.float32)[c]) for c in range(3)]
            store.upsert("acme", chunks, fresh=True)

    assert run_writers(8, body) == [None] * 8
    assert all(store.count("acme", f"doc{i}") == 3 for i in range(8))
    table = store.db.open_table(table_name("acme"))
    # One commit for the eight documents (and at most one more for the keyword
    # index the store builds on a table's first appends).
    assert table.version - versions_before <= 2

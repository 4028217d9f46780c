"""A search is answered while documents wait to be embedded.

Searches have queues of their own (docflow.query.embed, docflow.query.index) that the
embedder and the indexer consume ahead of their document queues, so a query waits for
at most the document task a worker process is running, not for the whole backlog (on
one shared queue it would be served first in, first out: after every document).
"""

import os

import pytest
import redis

from docflow.devstack import samples
from docflow.devstack.faults import wait_for
from docflow.shared import kombu_layout
from docflow.shared.names import Queue, Stage, WorkerRole

BACKLOG = 8


def held_by_stage_workers(client: redis.Redis) -> list:
    """Deliveries workers hold (kombu's unacked hash), but for maintenance runs: the
    maintenance worker holds a run scheduled with a countdown until it is due."""
    held = (kombu_layout.decode(raw, with_body=False) for _, raw in kombu_layout.unacked(client))
    return [envelope for envelope in held if envelope is None or envelope.queue != Queue.MAINTENANCE.value]


def document(number: int) -> bytes:
    """Long enough (~120 chunks, several seconds of embedding even with the int8
    runtime) that embedding it outlasts a search's own steps after its query is
    embedded on a loaded machine: otherwise documents embedded meanwhile would count
    as documents the search waited for. (At ~30 chunks, about a second, CI once saw
    a third document taken while the search's index step ran.)"""
    return samples.text([
        f"Backlog report {number}, section {section}: the ferry left the harbour at dawn while the "
        f"survey team counted herons along the canal and logged the tide at the granite quay."
        for section in range(480)
    ])


@pytest.fixture
def embedder_restored(stack):
    """Leave the stack as found: the embedder running with its default processes."""
    yield
    stack.workers[Stage.EMBED].stop()
    stack.start_worker(Stage.EMBED)
    stack.wait_for_worker(Stage.EMBED)


def test_a_search_does_not_wait_behind_an_embedding_backlog(stack, api_a, embedder_restored):
    client = redis.Redis.from_url(stack.redis_url)

    def embed_backlog() -> int:
        # Both lanes: past the fair-share limit, the tenant's later documents take the bulk lane.
        return sum(client.llen(queue.value) for queue in (Queue.EMBED, Queue.BULK_EMBED))

    wait_for(lambda: embed_backlog() == 0 and not held_by_stage_workers(client), 600,
             "an idle pipeline before the test", interval=0.5)

    # Documents pile up in the embed lanes while no embedder runs.
    stack.workers[Stage.EMBED].stop()
    document_ids = [api_a.upload(f"backlog-{n}.txt", document(n)) for n in range(BACKLOG)]
    wait_for(lambda: embed_backlog() == BACKLOG, 120, f"{BACKLOG} documents waiting to be embedded")

    # One embedder process (as a chart pod runs) starts on the backlog; then a search.
    stack.start_worker(Stage.EMBED, concurrency=1)
    stack.wait_for_worker(Stage.EMBED)
    api_a.search("herons along the canal")
    still_waiting = embed_backlog()
    # The running document, and at most the next one taken after the query's embedding.
    assert still_waiting >= BACKLOG - 2, f"the search waited for {BACKLOG - still_waiting} of {BACKLOG} documents"

    for document_id in document_ids:
        assert api_a.wait_final(document_id, timeout=240)["status"] == "completed"


def _pool(pid: int) -> list[int]:
    """A worker's main process and its pool processes (its children)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == pid:
                children.append(int(entry))
    return [pid, *children]


def test_document_and_maintenance_workers_yield_the_cpu_to_the_query_workers(stack):
    """Document and maintenance workers run at niceness 10 (Settings.worker_nice), the
    query-only workers at 0: under a bulk ingest the kernel runs a search's work first."""
    for stage, process in stack.workers.items():
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in _pool(process.popen.pid)} == {10}, stage
    for (stage, role), process in stack.side_workers.items():
        expected = 0 if role is WorkerRole.QUERY else 10
        assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in _pool(process.popen.pid)} == {expected}, \
            (stage, role)

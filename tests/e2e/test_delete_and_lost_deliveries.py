"""Delete means gone, reprocess keeps one version's files, and no document waits an hour
for a dead worker's delivery.

A stack of its own: kombu's visibility timeout is left at its default (3600 s), so
only the gateway's sweep (every 2 s here) can bring back a dead worker's delivery
within the test's minutes; hard time limits are short (embed 12 s) so that the sweep
may judge a delivery lost soon. Everything is real: redis-server, Celery worker
processes, the gateway over HTTP, local storage on disk. One stray write is made by
the test itself (a file put into a deleted document's folder, as a run that wrote
between the delete and its own check and then died would leave it): that moment
cannot be hit from outside reliably.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from docflow.devstack.stack import LocalStack
from docflow.gateway.recovery import LOST_DELIVERY_GRACE_SECONDS
from docflow.indexer.stores import open_vector_store
from docflow.shared import kombu_layout
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.names import BULK_QUEUE_OF_STAGE, QUEUE_OF_STAGE, Queue, Stage, Task

from .conftest import Api, own_stack
from .test_faults_workers import long_text, wait_for_stage

KEY, TENANT = "key-lifecycle", "lifecycle"
EXTRACT_HARD, EMBED_HARD, INDEX_HARD = 30, 12, 12
SWEEP_SECONDS = 2
ENV = {
    "DOCFLOW_API_KEYS": f"{KEY}={TENANT}",
    "DOCFLOW_EMBEDDER": "hash",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    "DOCFLOW_EXTRACT_SOFT_TIME_LIMIT": str(EXTRACT_HARD - 2),
    "DOCFLOW_EXTRACT_TIME_LIMIT": str(EXTRACT_HARD),
    "DOCFLOW_EMBED_SOFT_TIME_LIMIT": str(EMBED_HARD - 2),
    "DOCFLOW_EMBED_TIME_LIMIT": str(EMBED_HARD),
    "DOCFLOW_INDEX_SOFT_TIME_LIMIT": str(INDEX_HARD - 2),
    "DOCFLOW_INDEX_TIME_LIMIT": str(INDEX_HARD),
    # DOCFLOW_VISIBILITY_TIMEOUT deliberately unset: kombu's own restore takes an hour.
    "DOCFLOW_RECOVERY_INTERVAL_SECONDS": str(SWEEP_SECONDS),
    # Small batches make the embed task of a long document last seconds.
    "DOCFLOW_EMBEDDING_BATCH_SIZE": "8",
}


@pytest.fixture(scope="module")
def lifecycle_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with own_stack(tmp_path_factory, "delete-and-lost", ENV) as local:
        yield local


@pytest.fixture(scope="module")
def api(lifecycle_stack) -> Api:
    return Api(lifecycle_stack.gateway_url, KEY, TENANT)


@pytest.fixture(scope="module")
def rdb(lifecycle_stack) -> redis.Redis:
    return redis.Redis.from_url(lifecycle_stack.redis_url, decode_responses=True)


def folder(stack: LocalStack, document_id: str) -> Path:
    return stack.data_dir / "storage" / "tenants" / TENANT / "documents" / document_id


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def wait_until(condition, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


# Both lanes of every stage (fair sharing's bulk lanes included).
DOCUMENT_QUEUES = tuple(queue.value for lanes in (QUEUE_OF_STAGE, BULK_QUEUE_OF_STAGE)
                        for queue in lanes.values())


def no_document_work(rdb: redis.Redis) -> bool:
    """No message waiting in a document queue and none delivered from one: every run has
    ended. (The maintenance worker holds a scheduled run until its countdown: not a
    document's.)"""
    queued = sum(rdb.llen(queue) for queue in DOCUMENT_QUEUES)
    held = [envelope for _, raw in kombu_layout.unacked(rdb)
            if (envelope := kombu_layout.decode(raw, with_body=False)) and envelope.queue in DOCUMENT_QUEUES]
    return queued == 0 and not held


def extracting(rdb: redis.Redis) -> bool:
    """An extract delivery is held by the worker (its run has not ended)."""
    return any(getattr(kombu_layout.decode(raw, with_body=False), "task", None) == Task.EXTRACT.value
               for _, raw in kombu_layout.unacked(rdb))


def test_a_document_deleted_while_it_is_extracted_leaves_nothing_in_storage(lifecycle_stack, api, rdb):
    """The issue's reproduction: a big text deleted mid-extraction got its pages.json
    and chunks.json written seconds after the 204, for good."""
    big = long_text(paragraphs=9000, seed=3)  # ~9 MB: seconds of reading and chunking
    document_id = api.upload("big-notes.txt", big)
    api.wait_status(document_id, "extracting", timeout=60)
    assert api.http.delete(f"/v1/documents/{document_id}").status_code == 204
    assert extracting(rdb), "the delete must land while the extract run is going"
    assert not folder(lifecycle_stack, document_id).exists()
    # The extract run ends (acked) well after the delete...
    wait_until(lambda: no_document_work(rdb), 120, "the extract run to end")
    time.sleep(1)
    # ... and it wrote nothing.
    assert files_under(folder(lifecycle_stack, document_id)) == []


def test_a_completed_reprocess_removes_the_older_versions_artifacts(lifecycle_stack, api):
    document_id = api.upload("notes.txt", long_text(paragraphs=5, seed=4))
    assert api.wait_final(document_id)["status"] == "completed"
    assert {"v1/chunks.json", "v1/embeddings.npy", "v1/pages.json"} <= set(
        files_under(folder(lifecycle_stack, document_id)))
    assert api.http.post(f"/v1/documents/{document_id}/reprocess").status_code == 202
    record = api.wait_final(document_id)
    assert (record["status"], record["version"]) == ("completed", 2)
    assert files_under(folder(lifecycle_stack, document_id)) == [
        "original", "v2/chunks.json", "v2/embeddings.npy", "v2/pages.json"]


def test_the_sweep_removes_what_a_run_left_after_the_delete_and_the_documents_redis_keys(
        lifecycle_stack, api, rdb):
    settings = lifecycle_stack.settings()
    prefix = settings.redis_key_prefix
    document_id = api.upload("short.txt", long_text(paragraphs=3, seed=5))
    upload = api.wait_final(document_id)
    task_id = upload["task_id"]
    assert api.http.get(f"/v1/tasks/{task_id}").status_code == 200
    assert rdb.exists(f"{prefix}task:{task_id}")
    assert rdb.exists(f"celery-task-meta-{task_id}.index")
    letters = DeadLetterStore(rdb, prefix)
    letter = letters.add(task_name="docflow.embed.document", task_id=f"{task_id}.embed", queue=Queue.EMBED.value,
                         args=[], stage="embed", error_code="internal_error", error_message="earlier failure",
                         attempts=4, document_id=document_id, tenant=TENANT)

    assert api.http.delete(f"/v1/documents/{document_id}").status_code == 204
    deleted_at = time.monotonic()
    # A run that wrote between the delete and its own check, then died:
    stray = folder(lifecycle_stack, document_id) / "v1" / "chunks.json"
    stray.parent.mkdir(parents=True)
    stray.write_text('[{"index": 0, "text": "deleted content"}]')

    bound = EXTRACT_HARD + LOST_DELIVERY_GRACE_SECONDS + 2 * SWEEP_SECONDS + 10
    wait_until(lambda: not folder(lifecycle_stack, document_id).exists(), bound,
               "the sweep to remove the deleted document's folder again", interval=1)
    assert time.monotonic() - deleted_at >= EXTRACT_HARD, "not before every run of it has ended"
    assert not rdb.exists(f"{prefix}task:{task_id}")
    assert [key for key in rdb.scan_iter(f"celery-task-meta-{task_id}*")] == []
    assert letters.get(letter.id) is None
    assert rdb.zcard(f"{prefix}documents:deleted") == 0 and rdb.hlen(f"{prefix}documents:deleted:tasks") == 0
    assert api.http.get(f"/v1/tasks/{task_id}").status_code == 404


def test_a_killed_workers_document_resumes_within_its_hard_limit_not_the_visibility_timeout(
        lifecycle_stack, api):
    """SIGKILL of the whole embedder (main process and pool child, as a node loss): its
    delivery stays in kombu's unacked hash, which kombu restores only after the
    visibility timeout (3600 s here). The sweep restores it once it is older than the
    embed task's hard limit (no run of it can be live then) plus the grace."""
    document_id = api.upload("long-notes.txt", long_text(paragraphs=400, seed=6))
    wait_for_stage(api, document_id, Stage.EMBED)
    worker = lifecycle_stack.workers[Stage.EMBED]
    worker.kill()
    killed_at = time.monotonic()
    assert api.document(document_id)["status"] == "embedding", "the kill must land mid-task"
    lifecycle_stack.start_worker(Stage.EMBED)
    lifecycle_stack.wait_for_worker(Stage.EMBED)
    bound = EMBED_HARD + LOST_DELIVERY_GRACE_SECONDS + 2 * SWEEP_SECONDS + 60
    record = api.wait_final(document_id, timeout=bound)
    resumed_after = time.monotonic() - killed_at
    assert record["status"] == "completed", record["error"]
    assert resumed_after >= EMBED_HARD, "a delivery younger than its hard limit may still run: never restored"
    stored = open_vector_store(lifecycle_stack.settings()).count(TENANT, document_id)
    assert stored == record["chunks"] == record["vectors"], "each chunk once"
    print(f"\nresumed and completed {resumed_after:.1f} s after the kill (visibility timeout 3600 s)")

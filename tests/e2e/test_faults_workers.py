"""Workers die, are scaled down, hang and crash on a poison message: nothing is lost,
nothing is indexed twice, and nothing loops forever.

Every fault is real: SIGKILL of a whole worker (main process and pool, as a node loss
does) or of its pool process only (as the OOM killer does), SIGTERM of the main
process (a scale-down), SIGSTOP of the pool process (a hang in native code that no
soft time limit can interrupt). The module runs its own stack with short limits:
time limits of seconds, a 14 s visibility timeout (a message a dead worker held
comes back within ~25 s), one retry with a 1 s backoff, at most 3 deliveries of a
stage per document. The extract stage killed mid-task is in test_lifecycle.py.
"""

import os
import random
import signal
import time
from collections.abc import Iterator

import pytest

from docflow.devstack import samples
from docflow.devstack.faults import kill_pool_child, pool_child, wait_for
from docflow.devstack.stack import LocalStack
from docflow.indexer.stores import open_vector_store
from docflow.shared.names import Stage

from .conftest import ADMIN_KEY, Admin, Api, own_stack

KEY, TENANT = "key-faults", "faults"
MAX_DELIVERIES = 3
EXTRACT_SOFT, EXTRACT_HARD = 6, 9
ENV = {
    "DOCFLOW_API_KEYS": f"{KEY}={TENANT}",
    "DOCFLOW_ADMIN_API_KEYS": ADMIN_KEY,
    "DOCFLOW_EMBEDDER": "hash",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    "DOCFLOW_EXTRACT_SOFT_TIME_LIMIT": str(EXTRACT_SOFT),
    "DOCFLOW_EXTRACT_TIME_LIMIT": str(EXTRACT_HARD),
    "DOCFLOW_EMBED_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_EMBED_TIME_LIMIT": "12",
    "DOCFLOW_INDEX_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_INDEX_TIME_LIMIT": "12",
    # Maintenance limits count towards the visibility timeout too (settings).
    "DOCFLOW_MAINTAIN_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_MAINTAIN_TIME_LIMIT": "12",
    "DOCFLOW_VISIBILITY_TIMEOUT": "14",
    "DOCFLOW_MAX_RETRIES": "1",
    "DOCFLOW_RETRY_BACKOFF": "1",
    "DOCFLOW_RETRY_JITTER": "false",
    "DOCFLOW_MAX_DELIVERIES": str(MAX_DELIVERIES),
    # Small batches make the embed and index tasks of a long document last seconds.
    "DOCFLOW_EMBEDDING_BATCH_SIZE": "8",
    "DOCFLOW_UPSERT_BATCH_SIZE": "20",
}
STATUS_OF_STAGE = {Stage.EXTRACT: "extracting", Stage.EMBED: "embedding", Stage.INDEX: "indexing"}
WORDS = ("river station survey morning heron colony canal winter lantern harbour orchard granite "
         "meadow archive ledger signal valley timber copper beacon glacier ferry market quarry").split()


@pytest.fixture(scope="module")
def faults_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with own_stack(tmp_path_factory, "faults-workers", ENV) as local:
        yield local


@pytest.fixture(scope="module")
def api(faults_stack) -> Api:
    return Api(faults_stack.gateway_url, KEY, TENANT)


@pytest.fixture(scope="module")
def admin(faults_stack) -> Admin:
    return Admin(faults_stack.gateway_url)


@pytest.fixture
def workers_restored(faults_stack):
    """Leave every worker running for the next test, whatever this one did to them."""
    yield
    for stage, worker in faults_stack.workers.items():
        if not worker.alive():
            faults_stack.start_worker(stage)
            faults_stack.wait_for_worker(stage)


def long_text(paragraphs: int, seed: int) -> bytes:
    """Distinct prose that chunks into many chunks: embed and index tasks of seconds."""
    rng = random.Random(seed)
    return samples.text([" ".join(f"Note {p}.{s}: the {' '.join(rng.choices(WORDS, k=12))}."
                                  for s in range(6)) for p in range(paragraphs)])


def stored_vectors(stack: LocalStack, document_id: str) -> int:
    return open_vector_store(stack.settings()).count(TENANT, document_id)


def wait_for_stage(api: Api, document_id: str, stage: Stage, min_attempts: int = 1) -> dict:
    def reached():
        record = api.document(document_id)
        assert record["status"] not in ("completed", "failed"), record
        return record if record["status"] == STATUS_OF_STAGE[stage] and record["attempts"] >= min_attempts \
            else None
    return wait_for(reached, 120, f"{document_id} to run its {stage.value} stage", interval=0.02)


def assert_completed_once(stack: LocalStack, api: Api, document_id: str, timeout: float = 180) -> dict:
    record = api.wait_final(document_id, timeout=timeout)
    assert record["status"] == "completed", record["error"]
    assert stored_vectors(stack, document_id) == record["chunks"] == record["vectors"], "each chunk once"
    return record


# The indexer's document worker runs threads (names.pool_of_role): it has no pool
# process to kill, only itself.
@pytest.mark.parametrize(("stage", "how"), [(Stage.EMBED, "pool process"), (Stage.INDEX, "whole worker")])
def test_a_worker_killed_mid_task_loses_nothing_and_duplicates_nothing(faults_stack, api, workers_restored,
                                                                       stage, how):
    """Whole worker: the message waits in Redis's unacked hash until the visibility
    timeout, then another consumer restores it. Pool process: the main process sees
    the loss and requeues the message at once (task_reject_on_worker_lost)."""
    document_id = api.upload("long-notes.txt", long_text(paragraphs=400, seed=len(stage.value)))
    wait_for_stage(api, document_id, stage)
    worker = faults_stack.workers[stage]
    if how == "whole worker":
        worker.kill()
        faults_stack.start_worker(stage)
    else:
        kill_pool_child(worker)
    assert api.document(document_id)["status"] == STATUS_OF_STAGE[stage], "the kill must land mid-task"
    record = assert_completed_once(faults_stack, api, document_id)
    assert record["chunks"] > 100


def test_sigterm_mid_task_finishes_the_task_before_the_worker_exits(faults_stack, api, workers_restored):
    """A scale-down: SIGTERM to the main process (PID 1's tini forwards it there) is
    Celery's warm shutdown: the running task completes, no new one is taken."""
    document_id = api.upload("long-notes.txt", long_text(paragraphs=400, seed=11))
    wait_for_stage(api, document_id, Stage.INDEX)
    worker = faults_stack.workers[Stage.INDEX]
    os.kill(worker.pid, signal.SIGTERM)
    assert api.document(document_id)["status"] == "indexing", "the signal must land mid-task"
    assert worker.popen.wait(timeout=30) == 0
    record = api.document(document_id)
    assert record["status"] == "completed" and record["attempts"] == 1, "finished by the same run"
    assert stored_vectors(faults_stack, document_id) == record["chunks"]


def test_sigterm_then_sigkill_after_the_grace_period_requeues_the_task(faults_stack, api, workers_restored):
    """A grace period too short for the task: Kubernetes follows SIGTERM with SIGKILL.
    The unfinished task was never acknowledged, so it is redelivered and completes once."""
    document_id = api.upload("longer-notes.txt", long_text(paragraphs=1500, seed=12))  # seconds of indexing
    wait_for_stage(api, document_id, Stage.INDEX)
    worker = faults_stack.workers[Stage.INDEX]
    os.kill(worker.pid, signal.SIGTERM)
    time.sleep(0.2)
    worker.kill()
    assert api.document(document_id)["status"] == "indexing", "killed before the task finished"
    faults_stack.start_worker(Stage.INDEX)
    record = assert_completed_once(faults_stack, api, document_id)
    assert record["attempts"] == 2, "one interrupted run, one complete run"


def test_a_poison_message_is_dead_lettered_after_max_deliveries_and_can_be_replayed(
        faults_stack, api, admin, workers_restored):
    """A document that gets its worker killed every time (as one that exhausts memory
    would) is redelivered at once each time; the delivery after the third is
    dead-lettered instead of run, so the queue moves on."""
    pages = [f"Page {n}: the survey crew logged herons along the canal at dawn." for n in range(6)]
    document_id = api.upload("poison.pdf", samples.scanned_pdf(pages))
    for delivery in range(1, MAX_DELIVERIES + 1):
        wait_for_stage(api, document_id, Stage.EXTRACT, min_attempts=delivery)
        time.sleep(0.3)  # inside OCR
        kill_pool_child(faults_stack.workers[Stage.EXTRACT])

    record = api.wait_final(document_id, timeout=120)
    assert record["status"] == "failed"
    assert (record["error"]["code"], record["error"]["stage"]) == ("redelivery_limit", "extract")
    letter = admin.dead_letter_for(document_id)
    assert (letter["error_code"], letter["stage"], letter["attempts"]) == ("redelivery_limit", "extract",
                                                                          MAX_DELIVERIES)
    assert faults_stack.workers[Stage.EXTRACT].alive(), "the worker itself survived every crash of its pool"

    # The cause is gone (nobody kills the worker now): the operator replays the letter.
    admin.replay(letter["id"])
    replayed = assert_completed_once(faults_stack, api, document_id)
    assert replayed["version"] == record["version"], "a replay resumes the same version"
    assert all(d["document_id"] != document_id for d in admin.dead_letters())


def test_a_task_hung_past_its_hard_time_limit_fails_with_timeout_and_the_worker_keeps_serving(
        faults_stack, api, admin, workers_restored):
    """SIGSTOP freezes the pool process as a hang in native code would: the soft limit's
    signal cannot be handled, so the hard limit kills the process. The document fails
    with `timeout` (a hang is not retried: it would hang again) and is dead-lettered."""
    pages = [f"Page {n}: a frozen page of the harbour ledger." for n in range(4)]
    document_id = api.upload("frozen.pdf", samples.scanned_pdf(pages))
    wait_for_stage(api, document_id, Stage.EXTRACT)
    started = time.monotonic()
    os.kill(pool_child(faults_stack.workers[Stage.EXTRACT]), signal.SIGSTOP)

    record = api.wait_final(document_id, timeout=EXTRACT_HARD + 30)
    assert time.monotonic() - started < EXTRACT_HARD + 15
    assert record["status"] == "failed"
    assert (record["error"]["code"], record["error"]["stage"]) == ("timeout", "extract")
    assert admin.dead_letter_for(document_id)["error_code"] == "timeout"
    follow_up = api.upload("after.txt", samples.text(["The worker keeps serving after a hang."]))
    assert_completed_once(faults_stack, api, follow_up, timeout=60)


def test_a_file_too_slow_for_the_soft_time_limit_fails_with_timeout_after_its_retry(
        faults_stack, api, admin, workers_restored):
    """Twenty-four scanned pages take far longer to OCR than the 6 s soft limit: the
    task is interrupted, retried once after its backoff, interrupted again, and fails
    with `timeout`; the worker process is the same before and after."""
    main_pid = faults_stack.workers[Stage.EXTRACT].pid
    pages = [f"Page {n}: " + "a long account of the harbour ledger and its keepers. " * 12 for n in range(24)]
    document_id = api.upload("slow.pdf", samples.scanned_pdf(pages))
    record = api.wait_final(document_id, timeout=120)
    assert record["status"] == "failed"
    assert (record["error"]["code"], record["error"]["stage"]) == ("timeout", "extract")
    assert record["attempts"] == 2, "one retry, then the failure"
    assert admin.dead_letter_for(document_id)["attempts"] == 2
    assert faults_stack.workers[Stage.EXTRACT].pid == main_pid and faults_stack.workers[Stage.EXTRACT].alive()
    follow_up = api.upload("after.txt", samples.text(["The worker keeps serving after a timeout."]))
    assert_completed_once(faults_stack, api, follow_up, timeout=60)

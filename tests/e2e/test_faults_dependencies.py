"""Dependencies go away: object storage, the vector store, Redis itself.

A short outage is ridden out by retries with exponential backoff; one longer than
the retry budget fails the document with a code naming the dependency and leaves a
dead letter, which an operator replays once the dependency is back. Redis crashing
(SIGKILL) and restarting with its AOF loses no accepted document, and uploads
during the outage get 503 with Retry-After, never a 500.

Outages are real: the storage or LanceDB folder is replaced by a plain file, so every
access fails with ENOTDIR as on a broken mount (docflow.devstack.faults). The module
runs its own stack: 3 retries, backoff 1, 2, 4 s without jitter (a 7 s budget).
"""

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from docflow.devstack import samples
from docflow.devstack.faults import restore, unavailable, wait_for
from docflow.devstack.stack import LocalStack
from docflow.indexer.stores import open_vector_store
from docflow.shared.names import Queue, Stage

from .conftest import ADMIN_KEY, Admin, Api, own_stack, write_figures

KEY, TENANT = "key-deps", "deps"
MAX_RETRIES = 3
ENV = {
    "DOCFLOW_API_KEYS": f"{KEY}={TENANT}",
    "DOCFLOW_ADMIN_API_KEYS": ADMIN_KEY,
    "DOCFLOW_EMBEDDER": "hash",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    "DOCFLOW_EXTRACT_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_EXTRACT_TIME_LIMIT": "12",
    "DOCFLOW_EMBED_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_EMBED_TIME_LIMIT": "12",
    "DOCFLOW_INDEX_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_INDEX_TIME_LIMIT": "12",
    # Maintenance limits count towards the visibility timeout too (settings).
    "DOCFLOW_MAINTAIN_SOFT_TIME_LIMIT": "10",
    "DOCFLOW_MAINTAIN_TIME_LIMIT": "12",
    "DOCFLOW_VISIBILITY_TIMEOUT": "15",
    # Small batches: a long document's embed task lasts long enough to be caught mid-run.
    "DOCFLOW_EMBEDDING_BATCH_SIZE": "4",
    "DOCFLOW_MAX_RETRIES": str(MAX_RETRIES),
    "DOCFLOW_RETRY_BACKOFF": "1",
    "DOCFLOW_RETRY_JITTER": "false",
    # Documents whose message a Redis crash lost are started again within seconds.
    "DOCFLOW_RECOVERY_INTERVAL_SECONDS": "3",
    "DOCFLOW_RECOVERY_MIN_IDLE_SECONDS": "10",
}


@pytest.fixture(scope="module")
def deps_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with own_stack(tmp_path_factory, "faults-dependencies", ENV) as local:
        yield local


@pytest.fixture(scope="module")
def api(deps_stack) -> Api:
    return Api(deps_stack.gateway_url, KEY, TENANT)


@pytest.fixture(scope="module")
def admin(deps_stack) -> Admin:
    return Admin(deps_stack.gateway_url)


@pytest.fixture
def storage(deps_stack):
    folder = deps_stack.data_dir / "storage"
    yield folder
    restore(folder)
    if not deps_stack.workers[Stage.EXTRACT].alive():
        deps_stack.start_worker(Stage.EXTRACT)
        deps_stack.wait_for_worker(Stage.EXTRACT)


@pytest.fixture
def vector_store(deps_stack):
    folder = deps_stack.data_dir / "lancedb"
    yield folder
    restore(folder)


def stored_vectors(stack: LocalStack, document_id: str) -> int:
    return open_vector_store(stack.settings()).count(TENANT, document_id)


def stage_state(api: Api, record: dict, stage: Stage) -> str:
    body = api.http.get(f"/v1/tasks/{record['task_id']}").json()
    return next(s["state"] for s in body["stages"] if s["stage"] == stage.value)


def upload_while_extractor_is_stopped(stack: LocalStack, api: Api, name: str) -> str:
    """Accept a document with no extractor running, so the outage starts before its first run."""
    stack.workers[Stage.EXTRACT].stop()
    return api.upload(name, samples.text([f"{name}: herons return to the canal every spring."]))


def test_storage_unreachable_briefly_is_retried_with_backoff_then_completes(deps_stack, api, storage):
    document_id = upload_while_extractor_is_stopped(deps_stack, api, "brief-storage-outage.txt")
    with unavailable(storage):
        refused = api.http.post("/v1/documents", files={"file": ("during.txt", b"written during the outage")})
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
        assert "storage_unavailable" in refused.json()["detail"]
        deps_stack.start_worker(Stage.EXTRACT)
        record = api.document(document_id)
        wait_for(lambda: stage_state(api, record, Stage.EXTRACT) == "RETRY", 60, "the first retry")
    record = api.wait_final(document_id, timeout=60)
    assert record["status"] == "completed", record["error"]
    assert record["stage"] == "index" and stored_vectors(deps_stack, document_id) == record["chunks"]


def test_storage_unreachable_beyond_the_retry_budget_fails_then_replays(deps_stack, api, admin, storage):
    document_id = upload_while_extractor_is_stopped(deps_stack, api, "long-storage-outage.txt")
    with unavailable(storage):
        deps_stack.start_worker(Stage.EXTRACT)
        record = api.wait_final(document_id, timeout=90)
    assert record["status"] == "failed"
    assert (record["error"]["code"], record["error"]["stage"]) == ("storage_unavailable", "extract")
    assert record["attempts"] == MAX_RETRIES + 1
    letter = admin.dead_letter_for(document_id)
    assert (letter["error_code"], letter["stage"], letter["attempts"]) == ("storage_unavailable", "extract",
                                                                          MAX_RETRIES + 1)
    assert "not a directory" in letter["error_message"].lower()

    admin.replay(letter["id"])  # storage is back
    record = api.wait_final(document_id, timeout=60)
    assert record["status"] == "completed", record["error"]
    assert stored_vectors(deps_stack, document_id) == record["chunks"]


def test_vector_store_unreachable_briefly_is_retried_then_completes(deps_stack, api, vector_store):
    with unavailable(vector_store):
        document_id = api.upload("brief-index-outage.txt",
                                 samples.text(["Kingfishers dive from the bridge."]))
        record = api.document(document_id)
        wait_for(lambda: stage_state(api, record, Stage.INDEX) == "RETRY", 60,
                 "the index stage's first retry")
    record = api.wait_final(document_id, timeout=60)
    assert record["status"] == "completed", record["error"]
    assert record["attempts"] >= 2
    assert stored_vectors(deps_stack, document_id) == record["chunks"]


def test_vector_store_unreachable_beyond_the_retry_budget_fails_then_replays(deps_stack, api, admin,
                                                                             vector_store):
    with unavailable(vector_store):
        document_id = api.upload("long-index-outage.txt", samples.text(["Otters fish below the weir."]))
        record = api.wait_final(document_id, timeout=90)
    assert record["status"] == "failed"
    assert (record["error"]["code"], record["error"]["stage"]) == ("vector_store_unavailable", "index")
    letter = admin.dead_letter_for(document_id)
    assert (letter["error_code"], letter["stage"], letter["attempts"]) == (
        "vector_store_unavailable", "index", MAX_RETRIES + 1)
    admin.replay(letter["id"])
    record = api.wait_final(document_id, timeout=60)
    assert record["status"] == "completed", record["error"]
    assert record["attempts"] == 1, "the replay ran the index stage only, once"
    assert stored_vectors(deps_stack, document_id) == record["chunks"]


class Uploader:
    """Uploads documents one after another in a thread, keeping every answer."""

    def __init__(self, api: Api) -> None:
        self.http = httpx.Client(base_url=str(api.http.base_url), headers=dict(api.http.headers), timeout=30)
        self.accepted: list[str] = []
        self.answers: list[tuple[float, int, str | None]] = []  # (when, status, Retry-After)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            data = samples.text([f"Document {n}: the ferry crossed the delta at {n} past nine."])
            try:
                response = self.http.post("/v1/documents", files={"file": (f"doc-{n}.txt", data)})
            except httpx.HTTPError as exc:  # not an answer at all: that would be a finding too
                self.answers.append((time.monotonic(), 0, repr(exc)))
                continue
            self.answers.append((time.monotonic(), response.status_code, response.headers.get("Retry-After")))
            if response.status_code == 202:
                self.accepted.append(response.json()["document_id"])
            time.sleep(0.05)


def test_redis_crash_and_restart_mid_run_loses_no_accepted_document(deps_stack, api):
    """redis-server is SIGKILLed while a long document is being embedded, others are in
    flight and uploads keep coming. With AOF (appendfsync everysec) every write Redis
    acknowledged has already been written to the file, so a process crash loses none;
    after the restart the workers reconnect, what they held is redelivered, and every
    accepted document ends final."""
    uploader = Uploader(api)
    uploader.thread.start()
    wait_for(lambda: len(uploader.accepted) >= 10, 60, "documents in flight")
    paragraphs = [f"Entry {n}: the lock keeper logged {n} barges and a heron on the weir."
                  for n in range(600)]
    in_flight = api.upload("in-flight.txt", samples.text(paragraphs))
    wait_for(lambda: api.document(in_flight)["status"] == "embedding", 60, "the long document's embedding",
             interval=0.01)
    deps_stack.redis.process.kill()
    down_at = time.monotonic()
    time.sleep(4)
    restarting_at = time.monotonic()
    deps_stack.redis.start()  # same port, same data directory: the AOF is replayed
    up_at = time.monotonic()
    wait_for(lambda: any(when > up_at and status == 202 for when, status, _ in uploader.answers), 60,
             "uploads to be accepted again")
    uploader.stop.set()
    uploader.thread.join(timeout=30)

    # Answers given while Redis was surely down (a request already past Redis when it
    # died may still be answered 202 in the first moments).
    during = [(status, retry) for when, status, retry in uploader.answers
              if down_at + 0.5 < when < restarting_at]
    assert during, "uploads were attempted during the outage"
    assert all(status == 503 and retry and int(retry) > 0 for status, retry in during), \
        [a for a in during if a[0] != 503]
    assert not [a for a in uploader.answers if a[1] >= 500 and a[1] != 503], "no 500, ever"

    records = {d: api.wait_final(d, timeout=180) for d in [in_flight, *uploader.accepted]}
    assert all(r["status"] == "completed" for r in records.values()), \
        [r["error"] for r in records.values() if r["status"] != "completed"]
    duplicated = sum(stored_vectors(deps_stack, d) - r["chunks"] for d, r in records.items())
    assert all(stored_vectors(deps_stack, d) == r["chunks"] for d, r in records.items()), "each chunk once"
    write_figures("redis-crash", {
        "accepted": len(records), "accepted_before_crash": sum(1 for w, s, _ in uploader.answers
                                                               if s == 202 and w < down_at) + 1,
        "outage_seconds": round(up_at - down_at, 1), "uploads_answered_during_outage": len(during),
        "answered_503_with_retry_after": sum(1 for s, r in during if s == 503 and r),
        "answered_other_5xx": sum(1 for _, s, _ in uploader.answers if s >= 500 and s != 503),
        "completed": sum(1 for r in records.values() if r["status"] == "completed"),
        "tasks_running_at_crash": 1,  # the long document's embed task, terminated and redelivered
        "recovered_as_new_version": sum(1 for r in records.values() if r["version"] > 1),
        "lost": 0, "duplicated_vectors": duplicated})


@pytest.fixture
def extractor_restored(deps_stack):
    yield
    if not deps_stack.workers[Stage.EXTRACT].alive():
        deps_stack.start_worker(Stage.EXTRACT)
        deps_stack.wait_for_worker(Stage.EXTRACT)


def test_a_document_whose_message_was_lost_between_brpop_and_unacked_is_started_again(
        deps_stack, api, extractor_restored):
    """The crash above hits this only by chance: kombu takes a message off its queue
    with BRPOP and records it as unacked in a second command, so Redis dying between
    the two loses it (a run of this test once left an AOF ending in exactly that RPOP).
    Here that state is made on purpose -- the message popped and recorded nowhere --
    and the gateway's recovery sweep starts the document again as a new version."""
    deps_stack.workers[Stage.EXTRACT].stop()
    document_id = api.upload("lost-message.txt", samples.text(["Swifts nest under the old mill roof."]))
    client = redis.Redis.from_url(deps_stack.redis_url)
    assert client.llen(Queue.EXTRACT.value) == 1
    client.rpop(Queue.EXTRACT.value)  # what the BRPOP did before Redis died
    deps_stack.start_worker(Stage.EXTRACT)

    record = api.wait_final(document_id, timeout=60)
    assert record["status"] == "completed", record["error"]
    assert record["version"] == 2, "started again as a new version, like a reprocess"
    assert stored_vectors(deps_stack, document_id) == record["chunks"]


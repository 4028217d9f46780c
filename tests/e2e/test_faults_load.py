"""Accounting under load: many clients upload at once while workers are killed and
restarted; at the end every accepted document is completed or failed with a reason,
none is stuck, none is lost, and no chunk is indexed twice.

DOCFLOW_LOAD_DOCUMENTS sets the count: 80 in `make test` (CI), 500 in `make soak`.
The module runs its own stack with the hashing embedder (the model is not what is
under test), a 12 s visibility timeout and generous rate limits. One in ten uploads
is a corrupt PDF (it must fail with `corrupt_file`, not be retried); one in 25 is not
a document at all (refused with 415, never accepted). The figures of each run are
written to .data/reliability/load-<count>.json (docs/reliability.md quotes them).
"""

import base64
import json
import os
import signal
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import lancedb
import pytest
import redis

from docflow.devstack import hostile, samples
from docflow.devstack.faults import kill_pool_child
from docflow.devstack.stack import LocalStack
from docflow.shared.names import BULK_QUEUE_OF_STAGE, QUEUE_OF_STAGE, Stage

from .conftest import FINAL, Api, own_stack, write_figures

DOCUMENTS = int(os.environ.get("DOCFLOW_LOAD_DOCUMENTS", "80"))
CLIENTS = int(os.environ.get("DOCFLOW_LOAD_CLIENTS", "8"))
TENANTS = {"key-load-a": "load-a", "key-load-b": "load-b"}
ENV = {
    "DOCFLOW_API_KEYS": ",".join(f"{key}={tenant}" for key, tenant in TENANTS.items()),
    "DOCFLOW_EMBEDDER": "hash",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    "DOCFLOW_EXTRACT_SOFT_TIME_LIMIT": "8",
    "DOCFLOW_EXTRACT_TIME_LIMIT": "10",
    "DOCFLOW_EMBED_SOFT_TIME_LIMIT": "8",
    "DOCFLOW_EMBED_TIME_LIMIT": "10",
    "DOCFLOW_INDEX_SOFT_TIME_LIMIT": "8",
    "DOCFLOW_INDEX_TIME_LIMIT": "10",
    # Maintenance limits count towards the visibility timeout too (settings).
    "DOCFLOW_MAINTAIN_SOFT_TIME_LIMIT": "8",
    "DOCFLOW_MAINTAIN_TIME_LIMIT": "10",
    "DOCFLOW_VISIBILITY_TIMEOUT": "12",
    "DOCFLOW_RETRY_BACKOFF": "1",
    "DOCFLOW_UPLOAD_RATE_LIMIT_PER_MINUTE": "100000",
    "DOCFLOW_RECOVERY_INTERVAL_SECONDS": "5",
    "DOCFLOW_RECOVERY_MIN_IDLE_SECONDS": "20",
}
WORDS = ("harbour lantern orchard glacier meadow quarry ferry beacon archive ledger copper timber "
         "valley signal granite heron canal delta marsh island bridge tower garden mill").split()


@pytest.fixture(scope="module")
def load_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with own_stack(tmp_path_factory, "faults-load", ENV) as local:
        yield local


def document(n: int) -> tuple[str, bytes, str]:
    """(file name, bytes, what should happen) for the n-th upload."""
    rng = random.Random(n)
    sentences = [f"Record {n}.{s}: the {' '.join(rng.choices(WORDS, k=10))}."
                 for s in range(rng.randint(3, 40))]
    if n % 25 == 24:
        return f"noise-{n}.bin", bytes(rng.getrandbits(8) for _ in range(2048)), "refused"
    if n % 10 == 9:
        return f"corrupt-{n}.pdf", hostile.corrupt_pdf(), "failed"
    if n % 10 == 8:
        return f"memo-{n}.docx", samples.docx(sentences), "completed"
    if n % 10 == 7:
        return f"report-{n}.pdf", samples.pdf([" ".join(sentences)]), "completed"
    return f"notes-{n}.txt", samples.text(sentences), "completed"


class Clients:
    """Upload from many threads, each a client of its own, honouring 429/503 Retry-After."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.local = threading.local()
        self.lock = threading.Lock()
        self.accepted: dict[str, tuple[str, str]] = {}  # document id -> (tenant, expected outcome)
        self.refused: Counter = Counter()
        self.retried = 0
        self.submitted = 0

    def http(self, key: str) -> httpx.Client:
        clients = getattr(self.local, "clients", None)
        if clients is None:
            clients = self.local.clients = {}
        if key not in clients:
            clients[key] = httpx.Client(base_url=self.stack.gateway_url, timeout=60,
                                        headers={"Authorization": f"Bearer {key}"})
        return clients[key]

    def upload(self, n: int) -> None:
        key = list(TENANTS)[n % len(TENANTS)]
        name, data, expected = document(n)
        for _ in range(20):
            # on_duplicate=new: the corrupt PDF is the same bytes each time, and each is an upload to follow.
            response = self.http(key).post("/v1/documents", files={"file": (name, data)},
                                           params={"on_duplicate": "new"})
            if response.status_code in (429, 503):
                with self.lock:
                    self.retried += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            break
        with self.lock:
            self.submitted += 1
            if response.status_code == 202:
                assert expected != "refused", (name, response.text)
                self.accepted[response.json()["document_id"]] = (TENANTS[key], expected)
            else:
                assert response.status_code == 415 and expected == "refused", (name, response.status_code,
                                                                                 response.text)
                self.refused[response.status_code] += 1


STATUS_OF_STAGE = {Stage.EXTRACT: "extracting", Stage.EMBED: "embedding", Stage.INDEX: "indexing"}
# (stage, fault), spread evenly over the uploads: node losses, OOM kills, a scale-down.
# The indexer's document worker runs threads (names.pool_of_role): no pool process.
FAULT_PLAN = [(Stage.EXTRACT, "kill worker"), (Stage.EMBED, "kill pool process"),
              (Stage.INDEX, "terminate worker"), (Stage.EMBED, "terminate worker"),
              (Stage.INDEX, "kill worker"), (Stage.EXTRACT, "kill pool process")]


def mid_task(stack: LocalStack, stage: Stage, timeout: float = 30) -> list[str]:
    """Wait until the stage's worker is running a document's task: it holds the
    message (kombu's unacked hash: delivered, not acknowledged; with prefetch off,
    the one it runs) and the run has begun (the record names the stage). Its ids."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    # Either lane of the stage: past the fair-share limit the load's documents go bulk.
    queues = {QUEUE_OF_STAGE[stage].value, BULK_QUEUE_OF_STAGE[stage].value}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [json.loads(raw) for raw in client.hvals("unacked")]
        documents = [json.loads(base64.b64decode(message["body"]))[0][0].get("document_id")
                     for message, _exchange, routing_key in held if routing_key in queues]
        begun = [STATUS_OF_STAGE[stage], stage.value]
        running = [d for d in documents if client.hmget(f"docflow:doc:{d}", "status", "stage") == begun]
        if running:
            return running
        time.sleep(0.002)
    return []


def inflict(stack: LocalStack, stage: Stage, fault: str) -> None:
    worker = stack.workers[stage]
    if fault == "kill pool process":
        kill_pool_child(worker)  # the main process requeues at once and forks a new one
        return
    if fault == "kill worker":
        worker.kill()  # what it held comes back after the visibility timeout
    else:  # a scale-down: warm shutdown finishes the running task, takes no new one
        os.kill(worker.pid, signal.SIGTERM)
        worker.popen.wait(timeout=60)
    time.sleep(1)
    stack.start_worker(stage)


def indexed_ids(stack: LocalStack, tenant: str) -> list[str]:
    """Every vector id in the tenant's LanceDB table, read straight from the store."""
    db = lancedb.connect(str(stack.data_dir / "lancedb"))
    if f"tenant_{tenant}" not in db.list_tables().tables:
        return []
    return db.open_table(f"tenant_{tenant}").to_arrow().column("id").to_pylist()


@pytest.mark.timeout(600 + 3 * DOCUMENTS)
def test_every_accepted_document_is_accounted_for_while_workers_are_killed(load_stack):
    clients = Clients(load_stack)
    faults: list[str] = []
    hit: set[str] = set()  # documents whose task was running when its worker was hit

    def inject_faults() -> None:
        for number, (stage, fault) in enumerate(FAULT_PLAN, 1):
            while clients.submitted < number * DOCUMENTS // (len(FAULT_PLAN) + 1):
                time.sleep(0.02)
            running = mid_task(load_stack, stage)
            inflict(load_stack, stage, fault)
            hit.update(running)
            faults.append(f"{fault} ({stage.value}), {'mid-task' if running else 'idle'}")

    started = time.monotonic()
    saboteur = threading.Thread(target=inject_faults, daemon=True)
    saboteur.start()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(clients.upload, range(DOCUMENTS)))
    saboteur.join(timeout=300)
    uploaded_in = time.monotonic() - started

    # --- every accepted document reaches a final state ----------------------------------
    api = {tenant: Api(load_stack.gateway_url, key, tenant) for key, tenant in TENANTS.items()}
    deadline = time.monotonic() + 240 + DOCUMENTS
    records: dict[str, dict] = {}
    for document_id, (tenant, _) in clients.accepted.items():
        remaining = max(10, deadline - time.monotonic())
        records[document_id] = api[tenant].wait_final(document_id, timeout=remaining)
    settled_in = time.monotonic() - started

    outcomes = Counter(record["status"] for record in records.values())
    assert len(records) == len(clients.accepted)
    assert outcomes["completed"] + outcomes["failed"] == len(clients.accepted), outcomes
    stuck = [d for d, r in records.items() if r["status"] not in FINAL]
    assert not stuck
    for document_id, record in records.items():
        expected = clients.accepted[document_id][1]
        assert record["status"] == expected, (document_id, record["filename"], record["error"])
        if record["status"] == "failed":
            assert record["error"]["code"] == "corrupt_file" and record["error"]["message"], record
            # Bad input is not retried; a second run only if a fault killed the first.
            assert record["attempts"] == 1 or document_id in hit, record

    # --- nothing lost from the listings, nothing indexed twice --------------------------
    for key, tenant in TENANTS.items():
        listed = api[tenant].http.get("/v1/documents", params={"limit": 1}).json()["total"]
        assert listed == sum(1 for t, _ in clients.accepted.values() if t == tenant)
    duplicated = 0
    for tenant in TENANTS.values():
        ids = indexed_ids(load_stack, tenant)
        duplicated += len(ids) - len(set(ids))
        per_document = Counter(vector_id.split("#", 1)[0] for vector_id in ids)
        for document_id, (owner, _) in clients.accepted.items():
            if owner == tenant and records[document_id]["status"] == "completed":
                assert per_document[document_id] == records[document_id]["chunks"] == \
                    records[document_id]["vectors"], document_id
    assert duplicated == 0

    figures = {
        "documents_uploaded": DOCUMENTS, "clients": CLIENTS, "accepted": len(clients.accepted),
        "refused_at_upload": dict(clients.refused), "completed": outcomes["completed"],
        "failed": outcomes["failed"],
        "failed_codes": dict(Counter(r["error"]["code"] for r in records.values() if r["error"])),
        "stuck": len(stuck), "lost": len(clients.accepted) - len(records), "duplicated_vectors": duplicated,
        "vectors": sum(r["vectors"] or 0 for r in records.values()),
        "documents_mid_task_when_hit": len(hit),
        "documents_recovered_as_new_version": sum(1 for r in records.values() if r["version"] > 1),
        "faults_injected": faults, "upload_retries_after_429_or_503": clients.retried,
        "seconds_to_upload": round(uploaded_in, 1), "seconds_until_all_final": round(settled_in, 1),
    }
    write_figures(f"load-{DOCUMENTS}", figures)
    assert len(faults) == len(FAULT_PLAN) and hit, "faults must land mid-task"

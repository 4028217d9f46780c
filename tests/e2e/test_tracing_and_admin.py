"""A correlation id follows a document through every process; the operations API sees
the real queues and workers.

The id a client sends as X-Request-ID travels in the Celery message headers through
extract, embed and index and is on every log line about the document, in each
worker's own log file. The admin routes are served by a gateway app built in this
process against the stack's Redis (the stack's gateway has no admin key configured):
what they report comes from the real workers answering Celery broadcasts and from
the real queues.
"""

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from docflow.devstack import samples
from docflow.devstack.stack import default_concurrency, worker_name
from docflow.gateway.main import create_app
from docflow.shared.names import Queue, Stage, WorkerRole, pool_of_role, queues_of_role, queues_of_stage, roles_of_stage

ADMIN_KEY = "e2e-admin-key"


def log_records(path) -> list[dict]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def test_the_request_id_is_on_every_log_line_of_the_document_in_every_stage(stack, api_a):
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    response = api_a.http.post("/v1/documents", headers={"X-Request-ID": request_id},
                               files={"file": ("trace.txt", samples.text(["Follow this document."]))})
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == request_id
    document_id = response.json()["document_id"]
    assert api_a.wait_final(document_id)["status"] == "completed"
    time.sleep(0.5)  # the last lines reach the log files

    gateway = [r for r in log_records(stack.logs_dir / "gateway.log") if r.get("request_id") == request_id]
    assert {"document accepted", "request"} <= {r["event"] for r in gateway}
    for service in ("extractor", "embedder", "indexer"):
        records = log_records(stack.logs_dir / f"{service}.log")
        about_document = [r for r in records if document_id in json.dumps(r)]
        assert about_document, f"{service}: nothing logged about the document"
        untagged = [r["event"] for r in about_document if r.get("request_id") != request_id]
        assert not untagged, f"{service}: lines about the document without its request id: {untagged}"


@pytest.fixture
def admin(stack):
    settings = stack.settings().model_copy(update={"admin_api_keys": SecretStr(ADMIN_KEY)})
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client


def long_text(paragraphs: int) -> bytes:
    return samples.text([f"Paragraph {p}: " + " ".join(f"ledger{p}x{w} harbour signal" for w in range(40))
                         for p in range(paragraphs)])


def test_admin_routes_show_the_real_workers_queues_and_tasks_in_flight(stack, api_a, admin):
    workers = admin.get("/v1/admin/workers").json()["workers"]
    # Every worker the stack runs, by its role: the document worker per stage (the
    # query queue as its fallback), plus query-only and maintenance workers.
    for stage in Stage:
        for role in roles_of_stage(stage):
            name = worker_name(stage, role)
            found = [w for w in workers if w["name"].startswith(f"{name}@")]
            assert len(found) == 1, (name, workers)
            assert found[0]["stages"] == [stage.value]
            assert sorted(found[0]["queues"]) == sorted(queue.value for queue in queues_of_role(stage, role))
            # What the local stack starts: one MiniLM process per core for documents'
            # embeds, else one (a query-only embedder loads one model).
            expected = default_concurrency(stage, "minilm") if role is WorkerRole.DOCUMENT else 1
            assert found[0]["concurrency"] == expected
            assert found[0]["pool"] == pool_of_role(stage, role)  # threads for the indexer's documents
            # Embedders say what they embed with; other workers have nothing to say.
            expected_embedder = ({"provider": "minilm", "model": "all-MiniLM-L6-v2", "runtime": "onnx-int8",
                                  "device": "cpu", "dimensions": 384, "model_id": "minilm:all-MiniLM-L6-v2:384"}
                                 if stage is Stage.EMBED else None)
            assert found[0]["embedder"] == expected_embedder, found[0]
    assert queues_of_role(Stage.EMBED, WorkerRole.DOCUMENT) == queues_of_stage(Stage.EMBED)

    # Long enough that the embed task runs for seconds: each admin call waits up to a
    # second for the workers' answers.
    document_id = api_a.upload("long.txt", long_text(150))
    seen = {}

    def embedding_in_flight() -> bool:
        workers = admin.get("/v1/admin/workers").json()["workers"]
        # The document embedder (the query-only one serves the same stage).
        embedder = next(w for w in workers if w["name"].startswith(f"{worker_name(Stage.EMBED)}@"))
        if embedder["active_tasks"] != 1:
            return False
        queues = {q["name"]: q for q in admin.get("/v1/admin/queues").json()["queues"]}
        seen.update(queues=queues, embedder=embedder)
        return queues["docflow.embed"]["in_flight"] == 1

    deadline = time.monotonic() + 120
    while not embedding_in_flight():
        assert time.monotonic() < deadline, "never saw the embed task in flight"
        assert api_a.document(document_id)["status"] not in {"completed", "failed"}, \
            "the document finished before the embed task was seen running"
        time.sleep(0.05)

    assert seen["queues"]["docflow.embed"]["consumers"] == 1
    # Its bulk lane (fair sharing): the same document embedder, and no other worker.
    assert seen["queues"]["docflow.bulk.embed"]["consumers"] == 1
    # The query queue: the query-only embedder, and the document embedder as its fallback.
    assert seen["queues"]["docflow.query.embed"]["consumers"] == 2
    (task,) = seen["embedder"]["active"]
    assert task["name"] == "docflow.embed.document"
    assert task["started_at"] is not None
    assert api_a.wait_final(document_id)["status"] == "completed"
    after = admin.get("/v1/admin/queues").json()
    # Every document and query queue is drained; the maintenance worker may hold the
    # run the index writes scheduled (it waits out its countdown unacked).
    assert all(q["in_flight"] == 0 and q["backlog"] == 0 for q in after["queues"]
               if q["name"] != Queue.MAINTENANCE.value), after

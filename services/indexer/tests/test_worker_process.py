"""The indexer as deployed: a prefork worker (`celery -A docflow.indexer.worker`), tasks via Redis.

A LanceDB connection opened in the prefork parent hung its children forever
(docs/architecture.md), so the store must be opened in each pool child and never in the
parent. That hang did not reproduce with a local LanceDB folder on this machine, so
rather than wait for a hang this test checks where the store was opened: once in
each child, never in the worker's main process.
"""

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from docflow.devstack.processes import Process, wait_until
from docflow.shared.celery_app import create_celery_app
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Stage, Task, queues_of_stage
from docflow.shared.settings import Settings
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

TENANT = "acme"


@pytest.fixture
def worker_env(tmp_path: Path, redis_server, redis_client) -> dict[str, str]:
    return {**os.environ,
            "DOCFLOW_REDIS_URL": redis_server.url,
            "DOCFLOW_STORAGE_BACKEND": "local",
            "DOCFLOW_STORAGE_PATH": str(tmp_path / "storage"),
            "DOCFLOW_VECTOR_STORE": "lancedb",
            "DOCFLOW_LANCEDB_URI": str(tmp_path / "lancedb"),
            "DOCFLOW_WORKER_CONCURRENCY": "2"}


QUEUES = ",".join(queue.value for queue in queues_of_stage(Stage.INDEX))  # documents and searches


@pytest.fixture
def indexer_worker(worker_env, tmp_path):
    celery = str(Path(sys.executable).with_name("celery"))
    process = Process("indexer", [celery, "-A", "docflow.indexer.worker", "worker", "-Q", QUEUES,
                                  "-P", "prefork", "--without-gossip", "--without-mingle", "-l", "INFO"],
                      env=worker_env, log_path=tmp_path / "worker.log", cwd=tmp_path).start()
    yield process
    process.stop()


def test_a_prefork_worker_indexes_and_searches_through_the_broker(worker_env, indexer_worker, redis_client,
                                                                  tmp_path):
    settings = Settings(redis_url=worker_env["DOCFLOW_REDIS_URL"])
    status = StatusStore(redis_client)
    storage = LocalStorage(tmp_path / "storage")
    document_id = uuid.uuid4().hex
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename="a.txt",
                                 content_type="text/plain", size_bytes=3, original_key="k",
                                 created_at=now, updated_at=now))
    msg = PipelineMessage(document_id=document_id, tenant=TENANT, version=1, content_type="text/plain",
                          original_key="k")
    msg = msg.model_copy(update={"chunks_key": msg.key("chunks.json"),
                                 "embeddings_key": msg.key("embeddings.npy")})
    storage.put(msg.chunks_key, json.dumps([{"index": i, "text": f"t{i}"} for i in range(4)]).encode())
    matrix = np.eye(4, 8, dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    storage.put(msg.embeddings_key, buffer.getvalue())

    producer = create_celery_app("test-producer", settings)
    try:
        indexed = producer.send_task(Task.INDEX.value, args=[msg.model_dump()]).get(timeout=60)
        query = {"tenant": TENANT, "text": "", "mode": "vector", "limit": 1}
        hits = producer.send_task(Task.SEARCH.value, args=[matrix[2].tolist(), query]).get(timeout=30)
    except Exception:
        print((tmp_path / "worker.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        producer.close()

    assert indexed == {"document_id": document_id, "version": 1, "vectors": 4}
    assert [(h["chunk_index"], h["text"]) for h in hits] == [(2, "t2")]
    assert status.get(document_id).status is DocumentStatus.COMPLETED
    # One opening per pool child (concurrency 2), none in the main process. A child
    # may still be starting (importing lancedb takes seconds), so wait for both.
    wait_until(lambda: len(store_openings(tmp_path / "worker.log")) == 2, 60, "both pool children")
    opened_in = store_openings(tmp_path / "worker.log")
    assert len(set(opened_in)) == 2
    assert indexer_worker.pid not in opened_in


def store_openings(log_path: Path) -> list[int]:
    """Pids of the processes that logged opening the vector store."""
    return [json.loads(line)["pid"] for line in log_path.read_text(errors="replace").splitlines()
            if '"vector store opened"' in line]


def test_loading_the_worker_app_does_not_import_lancedb():
    """The prefork parent imports the app and its tasks; lancedb must wait for the children."""
    check = ("import sys, docflow.indexer.worker, docflow.indexer.tasks; "
             "sys.exit('lancedb' in sys.modules or 'pyarrow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", check], timeout=60).returncode == 0


def test_the_worker_log_holds_no_task_return_values(worker_env, indexer_worker, redis_client, tmp_path):
    """Celery's "succeeded" line used to end with the return value: a search's chunk texts.
    A real prefork worker indexes and answers a search; its log names the tasks, their ids
    and run times, and holds no chunk text."""
    settings = Settings(redis_url=worker_env["DOCFLOW_REDIS_URL"])
    status = StatusStore(redis_client)
    storage = LocalStorage(tmp_path / "storage")
    document_id = uuid.uuid4().hex
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename="a.txt",
                                 content_type="text/plain", size_bytes=3, original_key="k",
                                 created_at=now, updated_at=now))
    msg = PipelineMessage(document_id=document_id, tenant=TENANT, version=1, content_type="text/plain",
                          original_key="k")
    msg = msg.model_copy(update={"chunks_key": msg.key("chunks.json"),
                                 "embeddings_key": msg.key("embeddings.npy")})
    secret = "confidentialmergerplans"
    storage.put(msg.chunks_key, json.dumps([{"index": i, "text": f"{secret} {i}"} for i in range(3)]).encode())
    buffer = io.BytesIO()
    np.save(buffer, np.eye(3, 8, dtype=np.float32), allow_pickle=False)
    storage.put(msg.embeddings_key, buffer.getvalue())

    producer = create_celery_app("test-producer", settings)
    try:
        producer.send_task(Task.INDEX.value, args=[msg.model_dump()]).get(timeout=60)
        query = {"tenant": TENANT, "text": secret, "mode": "keyword", "limit": 3}
        search = producer.send_task(Task.SEARCH.value, args=[None, query])
        hits = search.get(timeout=30)
    finally:
        producer.close()
    assert len(hits) == 3 and all(secret in hit["text"] for hit in hits)

    log_path = tmp_path / "worker.log"
    wait_until(lambda: f"[{search.id}] succeeded in" in log_path.read_text(errors="replace"), 30,
               "the search's success line")
    text = log_path.read_text(errors="replace")
    (line,) = [line for line in text.splitlines() if f"[{search.id}] succeeded in" in line]
    event = json.loads(line)["event"]
    assert event.startswith(f"Task {Task.SEARCH.value}[{search.id}] succeeded in ")
    assert event.endswith("s")  # the run time, and nothing after it
    assert secret not in text
    assert "chunk_index" not in text


"""The real worker: `celery -A docflow.embedder.worker worker` with a prefork pool and MiniLM.

Guards the fact docs/architecture.md warns about: torch initialised before fork deadlocks the
pool's children, so the parent must never import torch and each child loads the model.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from docflow.embedder.providers.minilm import threads_per_process
from docflow.shared.artifacts import load_embeddings as matrix_from_npy
from docflow.shared.celery_app import create_celery_app
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Stage, Task, queues_of_stage
from docflow.shared.settings import Settings
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

CELERY = str(Path(sys.executable).parent / "celery")


def test_importing_the_worker_and_its_tasks_does_not_import_torch():
    script = ("import sys, docflow.embedder.worker, docflow.embedder.tasks; "
              "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "DOCFLOW_EMBEDDER": "minilm"}).stdout
    assert out.split() == ["False", "False"]


@pytest.fixture
def worker_settings(redis_server, redis_client, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_server.url, storage_path=tmp_path / "storage", embedder="minilm")


@pytest.fixture
def minilm_worker(worker_settings: Settings, tmp_path: Path):
    """A prefork worker with two children, on the embed queues only, logging to a file."""
    env = {**os.environ, "DOCFLOW_REDIS_URL": worker_settings.redis_url,
           "DOCFLOW_STORAGE_PATH": str(worker_settings.storage_path), "DOCFLOW_EMBEDDER": "minilm"}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [CELERY, "-A", "docflow.embedder.worker", "worker", "-Q", ",".join(q.value for q in queues_of_stage(Stage.EMBED)),
             "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield log_path
    os.killpg(process.pid, signal.SIGTERM)  # warm shutdown of the worker and its children
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def test_a_prefork_worker_embeds_documents_and_queries_with_minilm(
        minilm_worker, worker_settings, redis_client, tmp_path):
    storage = LocalStorage(worker_settings.storage_path)
    status = StatusStore(redis_client)
    now = utcnow()
    status.create(DocumentRecord(document_id="doc-w", tenant="acme", filename="faq.md",
                                 content_type="text/markdown", size_bytes=10, original_key="k",
                                 created_at=now, updated_at=now))
    msg = PipelineMessage(document_id="doc-w", tenant="acme", version=1, content_type="text/markdown",
                          original_key="k")
    texts = ["Our office is closed on public holidays.",
             "To reset your password, open Settings and choose 'Forgot password'.",
             "Invoices are sent by e-mail at the start of each month."]
    storage.put(msg.key("chunks.json"), json.dumps([{"index": i, "text": t} for i, t in enumerate(texts)]).encode())
    msg = msg.model_copy(update={"chunks_key": msg.key("chunks.json")})

    producer = create_celery_app("test-producer", worker_settings)
    try:
        done = producer.send_task(Task.EMBED.value, args=[msg.model_dump()]).get(timeout=90)
        query = producer.send_task(Task.EMBED_QUERY.value, args=["how can I change my password"]).get(timeout=30)
    except Exception:
        print(minilm_worker.read_text())
        raise

    matrix = matrix_from_npy(storage.get(done["embeddings_key"]))
    assert matrix.shape == (3, 384)
    assert int(np.argmax(matrix @ np.asarray(query["vector"], dtype=np.float32))) == 1
    # The default runtime; the model is the same whichever runtime computed it.
    assert (done["embedding_model"], done["embedding_runtime"]) == ("minilm:all-MiniLM-L6-v2:384", "onnx-int8")
    assert (query["model_id"], query["runtime"]) == ("minilm:all-MiniLM-L6-v2:384", "onnx-int8")
    record = status.get("doc-w")
    assert record.status is DocumentStatus.EMBEDDING and record.progress == 80

    # `--concurrency 2` with DOCFLOW_WORKER_CONCURRENCY unset: each child still gets only
    # its share of the CPUs (two processes of all-CPU torch pools oversubscribe the cores).
    # Each child loads the model as it starts; the one that ran no task may still be at it.
    def loaded() -> list[dict]:
        return [json.loads(line) for line in minilm_worker.read_text().splitlines()
                if '"embedding provider loaded"' in line]

    deadline = time.monotonic() + 120
    while len(loaded()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [line["threads"] for line in loaded()] == [threads_per_process(2)] * 2

"""/v1/admin/queues and /v1/admin/workers: for operators' keys only.

No worker runs in most of these tests, so the workers list is empty and every queue has
no consumer; one starts a real embedder worker to see what it reports about its model;
tests/e2e/test_tracing_and_admin.py asks the same routes about the whole stack's workers.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.names import Queue
from docflow.shared.queue_stats import UNACKED_KEY

ADMIN_KEY = "ops-key-5be0"


@pytest.fixture
def admin_gateway(make_gateway):
    return make_gateway(admin_api_keys=SecretStr(ADMIN_KEY))


def as_admin(gateway, path: str):
    return gateway.client.get(path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})


@pytest.mark.parametrize("path", ["/v1/admin/queues", "/v1/admin/workers"])
def test_admin_routes_need_an_admin_key(admin_gateway, path):
    assert admin_gateway.client.get(path).status_code == 401
    assert admin_gateway.get(path).status_code == 403  # a tenant's key is not enough
    assert admin_gateway.client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert as_admin(admin_gateway, path).status_code == 200


def test_queues_report_backlog_in_flight_consumers_and_dead_letters(admin_gateway, redis_client):
    admin_gateway.accepted()
    admin_gateway.accepted()
    redis_client.hset(UNACKED_KEY, "tag-1", json.dumps([{"headers": {}}, "docflow.embed", "docflow.embed"]))
    DeadLetterStore(redis_client, admin_gateway.settings.redis_key_prefix).add(
        task_name="docflow.index.document", task_id="t", queue="docflow.index", args=[], stage="index",
        error_code="vector_store_unavailable", error_message="down", attempts=4)

    report = as_admin(admin_gateway, "/v1/admin/queues").json()

    queues = {queue["name"]: queue for queue in report["queues"]}
    assert [(name, queue["stage"]) for name, queue in queues.items()] == [
        ("docflow.extract", "extract"), ("docflow.embed", "embed"), ("docflow.index", "index"),
        ("docflow.bulk.extract", "extract"), ("docflow.bulk.embed", "embed"), ("docflow.bulk.index", "index"),
        ("docflow.query.embed", "embed"), ("docflow.query.index", "index"), ("docflow.maintenance.index", "index"),
        ("docflow.webhooks", "index")]
    assert queues["docflow.extract"]["backlog"] == 2
    assert 0 <= queues["docflow.extract"]["oldest_message_age_seconds"] < 30
    assert queues["docflow.embed"] == {"name": "docflow.embed", "stage": "embed", "backlog": 0, "in_flight": 1,
                                       "consumers": 0, "oldest_message_age_seconds": 0.0}
    assert queues["docflow.query.embed"]["in_flight"] == 0, "counted on the queue it was taken from"
    assert all(queue["consumers"] == 0 for queue in report["queues"])
    assert report["dead_letters"] == 1


def test_workers_report_is_empty_when_no_worker_answers(admin_gateway):
    assert as_admin(admin_gateway, "/v1/admin/workers").json() == {"workers": []}


def test_admin_routes_answer_503_when_redis_is_down(make_gateway):
    gateway = make_gateway(admin_api_keys=SecretStr(ADMIN_KEY), redis_url="redis://127.0.0.1:1/0")
    response = as_admin(gateway, "/v1/admin/queues")
    assert response.status_code == 503
    assert response.headers["Retry-After"]


@pytest.fixture
def embedder_worker(settings, tmp_path):
    """A real embedder worker (prefork, one process) on MiniLM's fp32 ONNX runtime, a
    runtime other than the default, so the report can only come from its settings."""
    env = {**os.environ, "DOCFLOW_REDIS_URL": settings.redis_url, "DOCFLOW_STORAGE_PATH": str(settings.storage_path),
           "DOCFLOW_EMBEDDER": "minilm", "DOCFLOW_MINILM_RUNTIME": "onnx"}
    with open(tmp_path / "embedder.log", "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "docflow.embedder.worker", "worker",
             "-Q", Queue.QUERY_EMBED.value, "-n", "embedder-admin-test@%h", "--pool", "prefork",
             "--concurrency", "1", "--loglevel", "INFO"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield tmp_path / "embedder.log"
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def test_workers_report_an_embedders_provider_model_and_runtime(admin_gateway, embedder_worker):
    deadline = time.monotonic() + 90
    while True:
        workers = as_admin(admin_gateway, "/v1/admin/workers").json()["workers"]
        if workers:
            break
        assert time.monotonic() < deadline, embedder_worker.read_text(errors="replace")[-3000:]
        time.sleep(0.5)
    (worker,) = workers
    assert worker["name"].startswith("embedder-admin-test@")
    assert worker["stages"] == ["embed"]
    assert worker["embedder"] == {"provider": "minilm", "model": "all-MiniLM-L6-v2", "runtime": "onnx",
                                  "device": "cpu", "dimensions": 384, "model_id": "minilm:all-MiniLM-L6-v2:384"}
    # The first broadcast (who is there) always waits its full second; the embedder's
    # answer ends its own broadcast at once instead of adding another second.
    started = time.monotonic()
    assert as_admin(admin_gateway, "/v1/admin/workers").json()["workers"] == workers
    assert time.monotonic() - started < 1.0 + 0.4

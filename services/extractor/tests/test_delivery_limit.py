"""A stage delivered more than DOCFLOW_MAX_DELIVERIES times is dead-lettered, not run;
Redis itself failing mid-run is not recorded as the document's failure.

tests/e2e/test_faults_workers.py kills real worker processes on every delivery of a
document; this pins the bookkeeping on the real task with a real Redis.
"""

import uuid

import pytest
import redis

from docflow.extractor.tasks import app, extract_document
from docflow.shared.content_types import ContentType
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import ErrorCode
from docflow.shared.messages import PipelineMessage, artifact_prefix
from docflow.shared.names import Queue, Task
from docflow.shared.settings import get_settings
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

TENANT = "acme"
MAX_DELIVERIES = 3


@pytest.fixture
def stage(monkeypatch, tmp_path, redis_server, redis_client):
    monkeypatch.setenv("DOCFLOW_REDIS_URL", redis_server.url)
    monkeypatch.setenv("DOCFLOW_STORAGE_PATH", str(tmp_path / "storage"))
    monkeypatch.setenv("DOCFLOW_MAX_DELIVERIES", str(MAX_DELIVERIES))
    monkeypatch.setenv("DOCFLOW_MAX_RETRIES", "1")
    task = app.tasks[Task.EXTRACT.value]

    def forget():
        get_settings.cache_clear()
        task.reset_resources()

    forget()
    yield StatusStore(redis_client), LocalStorage(tmp_path / "storage"), task
    forget()


def submit(status: StatusStore, storage: LocalStorage) -> dict:
    document_id = uuid.uuid4().hex
    original_key = f"{artifact_prefix(TENANT, document_id)}original"
    storage.put(original_key, b"Herons nest in colonies along the canal.")
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename="a.txt",
                                 content_type=ContentType.TEXT, size_bytes=40, original_key=original_key,
                                 created_at=now, updated_at=now))
    return PipelineMessage(document_id=document_id, tenant=TENANT, version=1, content_type=ContentType.TEXT,
                           original_key=original_key).model_dump()


def test_a_run_past_the_delivery_limit_is_dead_lettered_instead_of_run(stage, redis_client):
    status, storage, _ = stage
    message = submit(status, storage)
    for _ in range(MAX_DELIVERIES):  # runs that died (worker killed) before finishing
        status.begin_stage(message["document_id"], 1, "extract", DocumentStatus.EXTRACTING, 5)

    result = extract_document.apply(args=[message])

    assert result.state == "IGNORED"
    record = status.get(message["document_id"])
    assert record.status == DocumentStatus.FAILED
    assert (record.error.code, record.error.stage) == (ErrorCode.REDELIVERY_LIMIT, "extract")
    assert f"ran {MAX_DELIVERIES} times" in record.error.message
    (letter,) = DeadLetterStore(redis_client).list()
    assert (letter.error_code, letter.stage, letter.attempts) == (
        "redelivery_limit", "extract", MAX_DELIVERIES)
    assert letter.args == [message] and letter.replayable
    assert not list(storage.root.rglob("chunks.json")), "the poison message was not run again"


@pytest.mark.parametrize(("delivered_from", "recorded"), [
    (Queue.BULK_EXTRACT.value, Queue.BULK_EXTRACT.value),  # its replay resumes in the bulk lane
    (Queue.EXTRACT.value, Queue.EXTRACT.value),
    (None, Queue.EXTRACT.value),  # not known (no delivery): the stage's document queue
])
def test_a_dead_letter_names_the_lane_its_message_came_from(stage, redis_client, delivered_from, recorded):
    status, storage, _ = stage
    message = submit(status, storage)
    for _ in range(MAX_DELIVERIES):
        status.begin_stage(message["document_id"], 1, "extract", DocumentStatus.EXTRACTING, 5)

    extract_document.apply(args=[message], routing_key=delivered_from)

    (letter,) = DeadLetterStore(redis_client).list()
    assert letter.queue == recorded


def test_runs_within_the_limit_proceed(stage):
    status, storage, _ = stage
    message = submit(status, storage)
    for _ in range(MAX_DELIVERIES - 1):
        status.begin_stage(message["document_id"], 1, "extract", DocumentStatus.EXTRACTING, 5)
    assert extract_document.apply(args=[message]).successful()
    assert status.get(message["document_id"]).attempts == MAX_DELIVERIES


def test_redis_failing_mid_run_records_no_failure_and_no_dead_letter(stage, redis_client, monkeypatch):
    """The worker requeues such a run (docflow.shared.delivery.DocflowRequest)."""
    status, storage, task = stage
    message = submit(status, storage)

    def redis_gone(*_args, **_kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(task.storage, "get", redis_gone)
    result = extract_document.apply(args=[message])

    assert result.failed()
    record = status.get(message["document_id"])
    assert record.status == DocumentStatus.EXTRACTING and record.error is None
    assert DeadLetterStore(redis_client).count() == 0

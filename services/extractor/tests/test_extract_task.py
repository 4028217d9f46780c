"""The real extract task against a real Redis and local storage: keys in, keys out."""

import io
import json
import uuid

import docx
import pytest
from celery.exceptions import Ignore
from fpdf import FPDF

from docflow.extractor.pages import Every
from docflow.extractor.tasks import _page_reporter, app, extract_document
from docflow.shared.artifacts import CHUNKS as CHUNKS_ARTIFACT
from docflow.shared.artifacts import PAGES as PAGES_ARTIFACT
from docflow.shared.content_types import ContentType
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.messages import PipelineMessage, artifact_prefix
from docflow.shared.names import Task
from docflow.shared.settings import get_settings
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

TENANT = "acme"


@pytest.fixture
def stage(monkeypatch, tmp_path, redis_server, redis_client):
    """Point the task at this test's Redis and storage folder."""
    monkeypatch.setenv("DOCFLOW_REDIS_URL", redis_server.url)
    monkeypatch.setenv("DOCFLOW_STORAGE_PATH", str(tmp_path / "storage"))
    task = app.tasks[Task.EXTRACT.value]

    def forget_cached_settings_and_connections():
        get_settings.cache_clear()
        task.reset_resources()

    forget_cached_settings_and_connections()
    yield StatusStore(redis_client), LocalStorage(tmp_path / "storage")
    forget_cached_settings_and_connections()


def submit(status: StatusStore, storage: LocalStorage, filename: str, content_type: str,
           original: bytes) -> dict:
    """What the gateway does: store the original, record the document, build the message."""
    document_id = uuid.uuid4().hex
    original_key = f"{artifact_prefix(TENANT, document_id)}original"
    storage.put(original_key, original)
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename=filename,
                                 content_type=content_type, size_bytes=len(original),
                                 original_key=original_key, created_at=now, updated_at=now))
    return PipelineMessage(document_id=document_id, tenant=TENANT, version=1,
                           content_type=content_type, original_key=original_key).model_dump()


def three_page_pdf() -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for topic in ("lighthouses", "glaciers", "orchards"):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"This page is about {topic}. " * 30)
    return bytes(pdf.output())


def test_extract_writes_pages_and_chunks_and_returns_only_keys(stage):
    status, storage = stage
    message = submit(status, storage, "report.pdf", ContentType.PDF, three_page_pdf())

    result = extract_document.apply(args=[message])

    assert result.successful(), result.traceback
    returned = result.get()
    run_prefix = f"{artifact_prefix(TENANT, message['document_id'])}v1/"
    assert returned == {**message, "chunks_key": run_prefix + CHUNKS_ARTIFACT}
    assert all(len(str(value)) < 200 for value in returned.values()), "messages carry keys, never text"

    chunks = json.loads(storage.get(returned["chunks_key"]))
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert {c["page"] for c in chunks} == {1, 2, 3}
    assert "glaciers" in next(c["text"] for c in chunks if c["page"] == 2)
    pages = json.loads(storage.get(PipelineMessage(**returned).key(PAGES_ARTIFACT)))
    assert [p["page"] for p in pages] == [1, 2, 3]

    record = status.get(message["document_id"])
    assert record.status == DocumentStatus.EXTRACTING
    assert record.progress == 40, "extraction fills the first 40% of the bar"
    assert (record.pages, record.chunks) == (3, len(chunks))
    assert (record.stage, record.attempts) == ("extract", 1)


def test_a_docx_has_chunks_but_no_page_count(stage):
    status, storage = stage
    document = docx.Document()
    document.add_paragraph("Our bakery sells sourdough loaves made with rye flour.")
    data = io.BytesIO()
    document.save(data)
    message = submit(status, storage, "bakery.docx", ContentType.DOCX, data.getvalue())

    returned = extract_document.apply(args=[message]).get()

    chunks = json.loads(storage.get(returned["chunks_key"]))
    assert chunks == [{"index": 0, "text": "Our bakery sells sourdough loaves made with rye flour.",
                       "page": None}]
    record = status.get(message["document_id"])
    assert (record.pages, record.chunks) == (None, 1)


def test_a_corrupt_file_fails_the_document_at_once_without_a_dead_letter(stage, redis_client):
    status, storage = stage
    message = submit(status, storage, "broken.pdf", ContentType.PDF, three_page_pdf()[:300])

    result = extract_document.apply(args=[message])

    assert result.failed()
    record = status.get(message["document_id"])
    assert record.status == DocumentStatus.FAILED
    assert (record.error.code, record.error.stage) == ("corrupt_file", "extract")
    assert record.attempts == 1
    assert DeadLetterStore(redis_client).count() == 0, "a permanent error is not worth replaying"


def test_a_stale_run_is_ignored_and_writes_nothing(stage):
    status, storage = stage
    message = submit(status, storage, "notes.txt", ContentType.TEXT, b"Version one of the notes.")
    status.restart(message["document_id"], task_id="reprocess")  # the document is now at v2

    result = extract_document.apply(args=[message])

    assert result.state == "IGNORED"
    stale = PipelineMessage(**message)
    with pytest.raises(PermanentError) as missing:
        storage.get(stale.key(CHUNKS_ARTIFACT))
    assert missing.value.code == ErrorCode.ARTIFACT_MISSING
    assert status.get(message["document_id"]).status == DocumentStatus.QUEUED


def test_an_extract_message_delivered_again_after_embedding_began_is_ignored(stage):
    """Its ack was lost in a crash after the chain went on: running it again would send
    the document through embed and index a second time."""
    status, storage = stage
    message = submit(status, storage, "notes.txt", ContentType.TEXT, b"Notes that were already extracted.")
    assert extract_document.apply(args=[message]).successful()
    assert status.begin_stage(message["document_id"], 1, "embed", DocumentStatus.EMBEDDING, 40) == 1

    result = extract_document.apply(args=[message])

    assert result.state == "IGNORED"
    record = status.get(message["document_id"])
    assert (record.status, record.stage, record.attempts) == (DocumentStatus.EMBEDDING, "embed", 1)


def test_extraction_stops_when_the_document_is_cancelled_meanwhile(stage):
    status, storage = stage
    message = submit(status, storage, "scan.pdf", ContentType.PDF, three_page_pdf())
    task = app.tasks[Task.EXTRACT.value]
    msg = task.begin(message)
    on_page = _page_reporter(task, msg, due=Every(0))  # as if every page took an interval
    on_page(1, 3)
    assert status.get(msg.document_id).pages == 3

    assert status.cancel(msg.document_id)
    with pytest.raises(Ignore):
        on_page(2, 3)


def test_pages_read_within_one_interval_write_no_progress(stage):
    """A Redis round trip per page would cost more than reading a page: a short
    document's pages and progress are written once, with its chunks."""
    status, storage = stage
    message = submit(status, storage, "scan.pdf", ContentType.PDF, three_page_pdf())
    task = app.tasks[Task.EXTRACT.value]
    msg = task.begin(message)
    before = status.get(msg.document_id)
    on_page = _page_reporter(task, msg)
    for page in (1, 2, 3):
        on_page(page, 3)
    after = status.get(msg.document_id)
    assert (after.pages, after.progress, after.updated_at) == (None, 0, before.updated_at)

"""Big PDFs fan out into page ranges: same artifacts as one task, pages-done progress,
and a failed range fails the document with the range's own error.

Here the chord's tasks run in this process, one after the other (an eager chord would
need the result backend); tests/e2e/test_fanout.py runs the real chord on real workers.
"""

import io
import json
import uuid

import pytest
from celery import chord
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject, StreamObject

from docflow.devstack import samples
from docflow.extractor.fanout import RangeProgress, extract_range, plan_ranges, should_fan_out
from docflow.extractor.tasks import app, extract_document
from docflow.shared.artifacts import CHUNKS as CHUNKS_ARTIFACT
from docflow.shared.artifacts import PAGES as PAGES_ARTIFACT
from docflow.shared.content_types import ContentType
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.messages import PipelineMessage, artifact_prefix
from docflow.shared.names import Task
from docflow.shared.settings import Settings, get_settings
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

TENANT = "acme"
TOPICS = ["lighthouses", "glaciers", "orchards", "volcanoes", "harbours", "meadows", "bridges",
          "comets", "deserts", "libraries", "canals"]


def page_text(number: int) -> str:
    topic = TOPICS[number % len(TOPICS)]
    # Some pages hold several chunks, one is blank: chunk numbering must still line up.
    if number == 6:
        return " "
    sentences = 8 + 25 * (number % 3)
    return " ".join(f"Page {number} sentence {i} is about {topic} and their keepers." for i in range(sentences))


def eleven_page_pdf() -> bytes:
    return samples.pdf([page_text(number) for number in range(1, 12)])


@pytest.fixture
def stage(monkeypatch, tmp_path, redis_server, redis_client):
    monkeypatch.setenv("DOCFLOW_REDIS_URL", redis_server.url)
    monkeypatch.setenv("DOCFLOW_STORAGE_PATH", str(tmp_path / "storage"))
    tasks = [app.tasks[name.value] for name in (Task.EXTRACT, Task.EXTRACT_RANGE, Task.EXTRACT_MERGE)]

    def configure(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        for task in tasks:
            task.reset_resources()

    configure()
    yield StatusStore(redis_client), LocalStorage(tmp_path / "storage"), configure
    get_settings.cache_clear()
    for task in tasks:
        task.reset_resources()


def submit(status: StatusStore, storage: LocalStorage, original: bytes) -> dict:
    document_id = uuid.uuid4().hex
    original_key = f"{artifact_prefix(TENANT, document_id)}original"
    storage.put(original_key, original)
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename="big.pdf",
                                 content_type=ContentType.PDF, size_bytes=len(original),
                                 original_key=original_key, created_at=now, updated_at=now))
    return PipelineMessage(document_id=document_id, tenant=TENANT, version=1,
                           content_type=ContentType.PDF, original_key=original_key).model_dump()


def artifacts(storage: LocalStorage, message: dict) -> tuple[bytes, bytes]:
    msg = PipelineMessage(**message)
    return storage.get(msg.key(PAGES_ARTIFACT)), storage.get(msg.key(CHUNKS_ARTIFACT))


def test_ranges_cover_every_page_once_in_order():
    assert plan_ranges(11, 3) == [(1, 3), (4, 6), (7, 9), (10, 11)]
    assert plan_ranges(6, 3) == [(1, 3), (4, 6)]
    assert plan_ranges(1, 20) == [(1, 1)]


def test_only_pdfs_at_the_threshold_and_longer_than_a_range_fan_out():
    settings = Settings(fanout_min_pages=100, fanout_range_pages=20)
    assert not should_fan_out(99, settings)
    assert should_fan_out(100, settings)
    assert not should_fan_out(30, Settings(fanout_min_pages=10, fanout_range_pages=50))


def replaced_by(task, message: dict, monkeypatch) -> chord:
    """Run the extract task; return the signature it replaced itself with."""
    replacements = []
    monkeypatch.setattr(task, "replace", lambda signature: replacements.append(signature))
    assert task.apply(args=[message]).successful()
    [replacement] = replacements
    return replacement


def run_chord_here(replacement: chord) -> dict:
    """What the workers do with the chord: every range, then the merge."""
    for part in replacement.tasks:
        result = app.tasks[part.task].apply(args=part.args)
        assert result.successful(), result.traceback
    assert replacement.body.immutable, "the merge takes no results from the ranges"
    merged = app.tasks[replacement.body.task].apply(args=replacement.body.args)
    assert merged.successful(), merged.traceback
    return merged.get()


def test_a_fanned_out_pdf_has_exactly_the_artifacts_of_a_single_task(stage, monkeypatch):
    status, storage, configure = stage
    original = eleven_page_pdf()

    configure(DOCFLOW_FANOUT_MIN_PAGES="1000")
    single = submit(status, storage, original)
    assert extract_document.apply(args=[single]).successful()

    configure(DOCFLOW_FANOUT_MIN_PAGES="4", DOCFLOW_FANOUT_RANGE_PAGES="3")
    fanned = submit(status, storage, original)
    replacement = replaced_by(extract_document, fanned, monkeypatch)
    assert status.get(fanned["document_id"]).pages == 11, "the page count shows before any range ran"
    returned = run_chord_here(replacement)

    assert [tuple(part.args[1:]) for part in replacement.tasks] == [(1, 3, 11), (4, 6, 11), (7, 9, 11), (10, 11, 11)]
    assert returned == {**fanned, "chunks_key": PipelineMessage(**fanned).key(CHUNKS_ARTIFACT)}
    fanned_pages, fanned_chunks = artifacts(storage, fanned)
    single_pages, single_chunks = artifacts(storage, single)
    assert fanned_chunks == single_chunks, "same chunks, same indexes, byte for byte"
    assert fanned_pages == single_pages
    chunks = json.loads(fanned_chunks)
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert len(chunks) > 11, "several pages hold more than one chunk"

    record = status.get(fanned["document_id"])
    assert (record.status, record.progress) == (DocumentStatus.EXTRACTING, 40)
    assert (record.pages, record.chunks) == (11, len(chunks))
    assert record.attempts == 1, "the ranges do not count as attempts of the stage"


def test_progress_counts_pages_done_across_ranges_and_redelivery_does_not_double_count(stage, redis_client):
    msg = PipelineMessage(document_id="d1", tenant=TENANT, version=2, content_type=ContentType.PDF,
                          original_key="k")
    progress = RangeProgress(redis_client, "docflow:", msg)

    assert progress.record(1, 3) == 3
    assert progress.record(4, 2) == 5
    assert progress.record(1, 3) == 5, "a redelivered range overwrites its own count"
    assert progress.record(4, 3) == 6
    progress.clear()
    assert progress.record(7, 1) == 1


def test_a_range_reports_pages_done_of_the_whole_document(stage):
    status, storage, configure = stage
    configure(DOCFLOW_FANOUT_MIN_PAGES="4", DOCFLOW_FANOUT_RANGE_PAGES="3")
    message = submit(status, storage, eleven_page_pdf())
    status.update(message["document_id"], 1, DocumentStatus.EXTRACTING, 0)

    assert extract_range.apply(args=[message, 4, 6, 11]).successful()
    after_one = status.get(message["document_id"])
    assert extract_range.apply(args=[message, 1, 3, 11]).successful()
    after_two = status.get(message["document_id"])

    assert after_one.progress == int(40 * 3 / 11)
    assert after_two.progress == int(40 * 6 / 11)


def pdf_with_a_broken_page(pages: int, broken: int) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(samples.pdf([page_text(n) for n in range(1, pages + 1)]))))
    contents = StreamObject()
    contents._data = b"q Q"
    contents[NameObject("/Filter")] = NameObject("/NoSuchDecode")
    writer.pages[broken - 1][NameObject("/Contents")] = writer._add_object(contents)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_failed_range_fails_the_document_with_the_ranges_error(stage):
    status, storage, configure = stage
    configure(DOCFLOW_FANOUT_MIN_PAGES="4", DOCFLOW_FANOUT_RANGE_PAGES="3")
    message = submit(status, storage, pdf_with_a_broken_page(pages=8, broken=5))

    result = extract_range.apply(args=[message, 4, 6, 8])

    assert result.failed()
    assert isinstance(result.result, PermanentError)
    record = status.get(message["document_id"])
    assert record.status == DocumentStatus.FAILED
    assert (record.error.code, record.error.stage) == (ErrorCode.CORRUPT_FILE, "extract")
    assert "Unsupported filter /NoSuchDecode" in record.error.message

    # The ranges still queued see the document failed and return at once.
    assert extract_range.apply(args=[message, 7, 8, 8]).get() is None

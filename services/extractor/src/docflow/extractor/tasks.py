"""The extract stage: a stored original to its pages' text and its chunks, in storage.

Claim check: the task receives and returns storage keys only. It writes
`pages.json` (the text of each page, for inspection and re-chunking) and
`chunks.json` (what the embedder reads) under the run's version prefix, so a
redelivered run overwrites its own artifacts and never touches another version's
(names and formats: docflow.shared.artifacts).

A document submitted as a URL arrives with the content type URL_PENDING and no
original yet: the task first fetches it (docflow.extractor.fetch), stores the bytes
as the document's original and records their judged type, size and name; from then
on it is a document like any upload (a retry of the run, or a reprocess, reads the
stored original instead of fetching again).
"""

import time
from typing import Any

import structlog
from celery.exceptions import Ignore

from docflow.extractor.chunking import chunk_pages
from docflow.extractor.fanout import fan_out_signature, keep_opened, should_fan_out
from docflow.extractor.fetch import Fetched, fetch
from docflow.extractor.pages import Every, Progress, page_count
from docflow.extractor.readers import read_document, require_text
from docflow.extractor.readers.pdf import open_pdf, read_pdf_pages
from docflow.extractor.worker import app
from docflow.shared import artifacts, metrics
from docflow.shared.content_types import URL_PENDING, ContentType
from docflow.shared.errors import ErrorCode, PermanentError, PipelineError
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Task
from docflow.shared.settings import Settings
from docflow.shared.stage_task import StageTask

log = structlog.get_logger(__name__)


@app.task(base=StageTask, name=Task.EXTRACT.value, bind=True)
def extract_document(self: StageTask, message: dict[str, Any]) -> dict[str, Any]:
    msg = self.begin(message)
    if msg.content_type == URL_PENDING:
        msg, original = _fetched_original(self, msg)
    else:
        original = self.storage.get(msg.original_key)
    if msg.content_type == ContentType.PDF:
        # Only the extractor can count a PDF's pages; a big one becomes a chord of
        # page ranges that keeps this task's id and the rest of the chain (fanout.py).
        reader, pages_in_pdf = open_pdf(original, self.settings)
        if should_fan_out(pages_in_pdf, self.settings):
            log.info("fanning out", pages=pages_in_pdf, range_pages=self.settings.fanout_range_pages)
            self.report(msg, 0, pages_in_pdf, pages=pages_in_pdf)
            keep_opened(msg, reader)
            return self.replace(fan_out_signature(msg, pages_in_pdf, self.settings, self.request.id,
                                                  queue=self.delivered_from()))
        pages = require_text(read_pdf_pages(reader, self.settings, 1, pages_in_pdf,
                                            _page_reporter(self, msg)))
    else:
        pages = read_document(msg.content_type, original, self.settings, _page_reporter(self, msg))
    chunks = chunk_pages(pages, self.settings.chunk_tokens, self.settings.chunk_overlap_tokens)

    # Delete means gone: a run whose document was deleted (or reprocessed) meanwhile writes nothing.
    if not self.store_artifacts(msg, {msg.key(artifacts.PAGES): artifacts.dump_pages(pages),
                                      msg.key(artifacts.CHUNKS): artifacts.dump_chunks(chunks)}):
        raise Ignore()
    pages_in_all = page_count(pages)
    metrics.PAGES_EXTRACTED.labels(msg.content_type).inc(len(pages))
    metrics.CHUNKS_PRODUCED.labels(msg.content_type).inc(len(chunks))
    self.report(msg, 1, 1, pages=pages_in_all, chunks=len(chunks))
    log.info("document extracted", content_type=msg.content_type, pages=pages_in_all, chunks=len(chunks))
    return msg.model_copy(update={"chunks_key": msg.key(artifacts.CHUNKS)}).model_dump()


def _fetched_original(task: StageTask, msg: PipelineMessage) -> tuple[PipelineMessage, bytes]:
    """A URL document's original, fetched and stored (or stored by an earlier run of this
    version), and the message with its judged content type (what the later stages see)."""
    record = task.status.get(msg.document_id)
    if record is None or record.version != msg.version:
        raise Ignore()  # deleted or reprocessed meanwhile
    if record.content_type != URL_PENDING:  # an earlier run of this version fetched it
        return msg.model_copy(update={"content_type": record.content_type}), task.storage.get(msg.original_key)
    if not record.source_url:
        raise PermanentError(ErrorCode.INTERNAL_ERROR, "the document is awaiting a fetch but records no URL")
    fetched = _timed_fetch(record.source_url, task.settings)
    if not task.store_artifacts(msg, {msg.original_key: fetched.data}):
        raise Ignore()
    task.status.update(msg.document_id, msg.version, content_type=fetched.content_type,
                       size_bytes=len(fetched.data), filename=fetched.filename)
    log.info("document fetched", content_type=fetched.content_type, size_bytes=len(fetched.data))
    return msg.model_copy(update={"content_type": fetched.content_type}), fetched.data


def _timed_fetch(url: str, settings: Settings) -> Fetched:
    """fetch(), counted and timed by outcome (`ok` or the failure's error code)."""
    started, outcome = time.monotonic(), "ok"
    try:
        return fetch(url, settings)
    except PipelineError as exc:
        outcome = exc.code.value
        raise
    finally:
        metrics.URL_FETCHES.labels(outcome).inc()
        metrics.URL_FETCH_SECONDS.labels(outcome).observe(time.monotonic() - started)


def _page_reporter(task: StageTask, msg: PipelineMessage, due: Every | None = None) -> Progress:
    # One write per interval while pages are read, the first after one interval: a
    # write per page would cost a Redis round trip per page, and most documents are
    # read well within one interval; the task's closing report then writes their
    # pages and progress in the same round trip as their chunks.
    due = due or Every(wait_first=True)

    def on_page(done: int, total: int) -> None:
        if not due():
            return
        # OCR of a long scan takes minutes: stop paying for a document that was
        # cancelled, deleted or reprocessed meanwhile (the write says so).
        if not task.report(msg, done, total, pages=total):
            log.info("stopping: document cancelled, deleted or reprocessed while extracting")
            raise Ignore()

    return on_page

"""Big PDFs fan out: page ranges extracted by parallel tasks, then merged in order.

The gateway cannot know a PDF's page count (it never imports pypdf), so the extract
task decides: at `DOCFLOW_FANOUT_MIN_PAGES` pages or more it replaces itself
(`Task.replace`, which keeps the rest of the chain and the task id the gateway
reports) with a chord on the extract queue:

    group(extract_range(1-10), extract_range(11-20), ...) → extract_merge → embed → index

- Each range parses only its own pages of the original (pypdf reads lazily) and
  lets them go afterwards, so a task's memory is bounded by the range, not the
  document (a pool process keeps the page table of the last PDF it opened, see
  `_opened_pdf`). It writes its pages and chunks under `ranges/` in the run's version
  prefix; a redelivered range overwrites its own files.
- The merge concatenates the ranges in page order and renumbers the chunks 0..n-1.
  Chunks never span pages, so this is exactly what the single task would have
  written: same pages.json, same chunks.json.
- Progress is pages done of pages in all, across ranges: a Redis hash per document
  version holds each range's pages done (a redelivered range overwrites its own
  count instead of adding to it), summed in the same transaction.
- A failed range fails the document with its own error (StageTask.on_failure);
  the chord then fails its merge, so the chain stops there. Ranges still running
  see the document is no longer current and return early.

The merge takes no results from the chord (an immutable signature): the ranges'
artifacts are found from the same plan, so a merge's only argument is the message,
like every other stage task's.
"""

from collections.abc import Iterator
from typing import Any

import redis
import structlog
from celery import chord, group
from celery.canvas import Signature
from celery.exceptions import Ignore
from pypdf import PdfReader

from docflow.extractor.chunking import chunk_pages
from docflow.extractor.pages import Every
from docflow.extractor.readers import NO_TEXT
from docflow.extractor.readers.pdf import open_pdf, read_pdf_pages
from docflow.extractor.worker import app
from docflow.shared import artifacts, metrics
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.messages import Chunk, PipelineMessage
from docflow.shared.names import Stage, Task
from docflow.shared.settings import Settings
from docflow.shared.stage_task import StageTask

log = structlog.get_logger(__name__)

# Long enough to outlive any run of the stage; the merge deletes it when done.
PROGRESS_TTL_SECONDS = 24 * 3600


def should_fan_out(pages: int, settings: Settings) -> bool:
    return pages >= settings.fanout_min_pages and pages > settings.fanout_range_pages


def plan_ranges(pages: int, range_pages: int) -> list[tuple[int, int]]:
    """1-based inclusive page ranges of at most `range_pages` pages covering 1..pages."""
    return [(first, min(first + range_pages - 1, pages)) for first in range(1, pages + 1, range_pages)]


def range_key(msg: PipelineMessage, first: int, last: int, artifact: str) -> str:
    # Zero-padded, so a listing sorts in page order.
    return msg.key(f"{artifacts.RANGES_FOLDER}{first:06d}-{last:06d}.{artifact}")


def fan_out_signature(msg: PipelineMessage, pages: int, settings: Settings,
                      stage_task_id: str | None = None, queue: str | None = None) -> Signature:
    """The chord that replaces a big PDF's extract task (whose id is `stage_task_id`), its
    ranges and merge on `queue` (the lane the task came from: a bulk import's big PDF
    stays in the bulk lane) or, without one, on their route."""
    message = msg.model_dump()
    range_pages = settings.fanout_range_pages
    lane = {"queue": queue} if queue else {}
    parts = [app.signature(Task.EXTRACT_RANGE.value, args=[message, first, last, pages],
                           kwargs={"stage_task_id": stage_task_id}, **lane)
             for first, last in plan_ranges(pages, range_pages)]
    merge = app.signature(Task.EXTRACT_MERGE.value, args=[message, pages, range_pages], immutable=True,
                          **lane)
    return chord(group(parts), merge)


class RangeProgress:
    """Pages done across a fanned-out document's ranges, counted atomically in Redis."""

    def __init__(self, client: redis.Redis, prefix: str, msg: PipelineMessage) -> None:
        self.redis = client
        self.key = f"{prefix}fanout:{msg.document_id}:v{msg.version}:pages"

    def record(self, first_page: int, done: int) -> int:
        """Set one range's pages done; returns the pages done of all ranges together."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.key, str(first_page), done)
        pipe.expire(self.key, PROGRESS_TTL_SECONDS)
        pipe.hvals(self.key)
        *_, counts = pipe.execute()
        return sum(int(count) for count in counts)

    def clear(self) -> None:
        self.redis.delete(self.key)


# (original key, reader) of the PDF this pool process read a range of last. The ranges
# of one document mostly land on the same few processes, and opening a PDF reads its
# cross-reference table and its whole page tree: ~90 ms for 1000 pages, more than
# extracting a 10-page range. So a process keeps that one reader, and after each range
# drops what the range parsed (`resolved_objects`): between ranges it holds the file
# and the page table (~1 KB a page), so memory stays bounded by the range.
_last_opened: tuple[str, PdfReader] | None = None


def _opened_pdf(task: StageTask, msg: PipelineMessage) -> PdfReader:
    global _last_opened
    if _last_opened is None or _last_opened[0] != msg.original_key:
        _last_opened = None  # let the previous document go before reading the next
        reader, _ = open_pdf(task.storage.get(msg.original_key), task.settings)
        _last_opened = (msg.original_key, reader)
    return _last_opened[1]


def keep_opened(msg: PipelineMessage, reader: PdfReader) -> None:
    """The extract task counted the pages with this reader: its process's ranges reuse it."""
    global _last_opened
    _last_opened = (msg.original_key, reader)


class _Superseded(Exception):
    """The document was cancelled, deleted, reprocessed or failed while a range ran."""


def _bind(msg: PipelineMessage, **more: Any) -> None:
    structlog.contextvars.bind_contextvars(document_id=msg.document_id, version=msg.version,
                                           stage=Stage.EXTRACT.value, **more)


class RangeTask(StageTask):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        # Celery fails a chord's callback only once every part has ended, and then
        # under the id of the chain's last task. Fail the extract stage's own id now,
        # with the range's error, so the pipeline's task status shows where it stopped.
        stage_task_id = (kwargs or {}).get("stage_task_id")
        if stage_task_id:
            self.backend.mark_as_failure(stage_task_id, exc, traceback=getattr(einfo, "traceback", None))


@app.task(base=RangeTask, name=Task.EXTRACT_RANGE.value, bind=True)
def extract_range(self: StageTask, message: dict[str, Any], first: int, last: int,
                  total: int, stage_task_id: str | None = None) -> dict[str, Any] | None:
    """Pages first..last of the PDF to their pages and chunks (chunk indexes local to the range).

    `stage_task_id` is the id of the extract task this chord replaced (and its merge's).
    """
    msg = PipelineMessage.model_validate(message)
    _bind(msg, first_page=first, last_page=last)
    # Not `begin()`: the extract stage was claimed (and its attempt counted) once, by
    # the task this chord replaced. Returning (not Ignore) lets the chord complete.
    if not self.status.is_current(msg.document_id, msg.version):
        log.info("skipping range: document no longer current")
        return None
    reader = _opened_pdf(self, msg)
    progress = RangeProgress(self.redis, self.settings.redis_key_prefix, msg)
    # The range's last page, and one write per interval while a slow range (OCR) runs.
    due = Every(wait_first=True)

    def on_page(done: int, count: int) -> None:
        if done != count and not due():
            return
        if not self.report(msg, progress.record(first, done), total):
            raise _Superseded

    try:
        pages = read_pdf_pages(reader, self.settings, first, last, on_page)
    except _Superseded:
        log.info("stopping range: document cancelled, deleted, reprocessed or failed meanwhile")
        return None
    finally:
        # The pages' parsed contents (streams, fonts) go; the page table stays.
        reader.resolved_objects.clear()
    chunks = chunk_pages(pages, self.settings.chunk_tokens, self.settings.chunk_overlap_tokens)
    if not self.store_artifacts(msg, {range_key(msg, first, last, artifacts.PAGES): artifacts.dump_pages(pages),
                                      range_key(msg, first, last, artifacts.CHUNKS): artifacts.dump_chunks(chunks)}):
        return None  # deleted or reprocessed meanwhile: nothing of it written
    metrics.PAGES_EXTRACTED.labels(msg.content_type).inc(len(pages))
    log.info("range extracted", pages=len(pages), chunks=len(chunks))
    return {"first": first, "last": last, "chunks": len(chunks)}


@app.task(base=StageTask, name=Task.EXTRACT_MERGE.value, bind=True)
def extract_merge(self: StageTask, message: dict[str, Any], total: int, range_pages: int) -> dict[str, Any]:
    """The ranges' pages and chunks, concatenated in page order: the document's artifacts."""
    msg = PipelineMessage.model_validate(message)
    _bind(msg)
    if not self.status.is_current(msg.document_id, msg.version):
        log.info("skipping merge: document no longer current")
        raise Ignore()
    ranges = plan_ranges(total, range_pages)
    chunks = list(_renumbered(self, msg, ranges))
    if not chunks:
        raise PermanentError(ErrorCode.EMPTY_DOCUMENT, NO_TEXT)
    if not self.store_artifacts(msg, {msg.key(artifacts.PAGES): _concatenated_pages(self, msg, ranges),
                                      msg.key(artifacts.CHUNKS): artifacts.dump_chunks(chunks)}):
        raise Ignore()  # deleted or reprocessed meanwhile: nothing of it written
    metrics.CHUNKS_PRODUCED.labels(msg.content_type).inc(len(chunks))
    self.report(msg, 1, 1, pages=total, chunks=len(chunks))
    RangeProgress(self.redis, self.settings.redis_key_prefix, msg).clear()
    log.info("document extracted", content_type=msg.content_type, pages=total, chunks=len(chunks),
             ranges=len(ranges))
    return msg.model_copy(update={"chunks_key": msg.key(artifacts.CHUNKS)}).model_dump()


def _renumbered(task: StageTask, msg: PipelineMessage, ranges: list[tuple[int, int]]) -> Iterator[Chunk]:
    index = 0
    for first, last in ranges:
        for chunk in artifacts.load_chunks(task.storage.get(range_key(msg, first, last, artifacts.CHUNKS))):
            yield Chunk(index=index, text=chunk.text, page=chunk.page)
            index += 1


def _concatenated_pages(task: StageTask, msg: PipelineMessage, ranges: list[tuple[int, int]]) -> bytes:
    """The ranges' pages.json joined into one, byte for byte what one task writes."""
    return artifacts.concatenate_pages([task.storage.get(range_key(msg, first, last, artifacts.PAGES))
                                        for first, last in ranges])

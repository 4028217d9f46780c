"""The extract stage: a stored original to its pages' text and its chunks, in storage.

Claim check: the task receives and returns storage keys only. It writes
`pages.json` (the text of each page, for inspection and re-chunking) and
`chunks.json` (what the embedder reads) under the run's version prefix, so a
redelivered run overwrites its own artifacts and never touches another version's.
"""

from typing import Any

import structlog
from celery.exceptions import Ignore
from pydantic import TypeAdapter

from docflow.extractor.chunking import chunk_pages
from docflow.extractor.pages import PAGES_JSON, Progress, page_count
from docflow.extractor.readers import read_document
from docflow.extractor.worker import app
from docflow.shared.messages import Chunk, PipelineMessage
from docflow.shared.names import Stage, Task
from docflow.shared.stage_task import PROGRESS_SPAN, StageTask

log = structlog.get_logger(__name__)

PAGES_ARTIFACT = "pages.json"
CHUNKS_ARTIFACT = "chunks.json"
CHUNKS_JSON = TypeAdapter(list[Chunk])


@app.task(base=StageTask, name=Task.EXTRACT.value, bind=True)
def extract_document(self: StageTask, message: dict[str, Any]) -> dict[str, Any]:
    msg = self.begin(message)
    original = self.storage.get(msg.original_key)
    pages = read_document(msg.content_type, original, self.settings, _page_reporter(self, msg))
    chunks = chunk_pages(pages, self.settings.chunk_tokens, self.settings.chunk_overlap_tokens)

    self.storage.put(msg.key(PAGES_ARTIFACT), PAGES_JSON.dump_json(pages))
    self.storage.put(msg.key(CHUNKS_ARTIFACT), CHUNKS_JSON.dump_json(chunks))
    pages_in_all = page_count(pages)
    self.report(msg, 1, 1, pages=pages_in_all, chunks=len(chunks))
    log.info("document extracted", content_type=msg.content_type, pages=pages_in_all, chunks=len(chunks))
    return msg.model_copy(update={"chunks_key": msg.key(CHUNKS_ARTIFACT)}).model_dump()


def _page_reporter(task: StageTask, msg: PipelineMessage) -> Progress:
    low, high = PROGRESS_SPAN[Stage.EXTRACT]

    def on_page(done: int, total: int) -> None:
        # One status write per point of this stage's share of the progress bar: a write
        # per page of a 5000-page PDF would cost 5000 Redis round trips for the same bar.
        if done != total and done % max(1, total // (high - low)):
            return
        task.report(msg, done, total, pages=total)
        # OCR of a long scan takes minutes: stop paying for a document that was
        # cancelled, deleted or reprocessed meanwhile.
        if not task.status.is_current(msg.document_id, msg.version):
            log.info("stopping: document cancelled, deleted or reprocessed while extracting")
            raise Ignore()

    return on_page

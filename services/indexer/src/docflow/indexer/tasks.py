"""The indexer's tasks: index a document's vectors, search a tenant, delete a document's vectors."""

import io
import time

import numpy as np
import structlog
from celery.exceptions import Ignore
from pydantic import TypeAdapter, ValidationError

from docflow.indexer.stores import SearchHit, VectorRecord
from docflow.indexer.worker import app, get_store
from docflow.shared import metrics
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.messages import Chunk, PipelineMessage
from docflow.shared.names import Task
from docflow.shared.stage_task import DocflowTask, StageTask
from docflow.shared.status import DocumentRecord, DocumentStatus
from docflow.shared.tracing import ACCEPTED_AT, header

log = structlog.get_logger(__name__)

_CHUNK_LIST = TypeAdapter(list[Chunk])


def load_chunks(data: bytes) -> list[Chunk]:
    try:
        return _CHUNK_LIST.validate_json(data)
    except ValidationError as exc:
        raise PermanentError(ErrorCode.INTERNAL_ERROR, f"chunks artifact is malformed: {exc}") from exc


def load_embeddings(data: bytes) -> np.ndarray:
    try:
        # No pickles: an .npy artifact must never be able to run code in the worker.
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise PermanentError(ErrorCode.INTERNAL_ERROR, f"embeddings artifact is malformed: {exc}") from exc


def build_records(msg: PipelineMessage, chunks: list[Chunk], embeddings: np.ndarray) -> list[VectorRecord]:
    """One record per chunk; embedding row i belongs to chunk i."""
    if not chunks:
        return []
    if embeddings.ndim != 2 or embeddings.shape[0] != len(chunks):
        raise PermanentError(ErrorCode.INTERNAL_ERROR,
                             f"{len(chunks)} chunks but embeddings of shape {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        # Neither store can rank a NaN; Pinecone rejects the request outright.
        raise PermanentError(ErrorCode.INTERNAL_ERROR, "embeddings contain NaN or infinite values")
    return [VectorRecord.for_chunk(msg.document_id, msg.version, chunk, row)
            for chunk, row in zip(chunks, embeddings.astype(np.float32, copy=False))]


def keeps_vectors(record: DocumentRecord | None, version: int) -> bool:
    """Whether `version`'s vectors belong in the store.

    Yes while it is the document's version and the document is in flight or completed
    (a twin delivery of this same task may have completed it first). No once the
    document was deleted, reprocessed, cancelled or failed.
    """
    return (record is not None and record.version == version
            and record.status not in (DocumentStatus.FAILED, DocumentStatus.CANCELLED))


@app.task(base=StageTask, name=Task.INDEX.value, bind=True)
def index_document(self: StageTask, message: dict) -> dict:
    """Upsert the document's vectors in batches, then either complete the document and
    drop its older versions, or, if the run went stale meanwhile, remove what it wrote.

    Staleness is judged by `keeps_vectors`, not `StatusStore.is_current`: is_current is
    also false once the document is completed, and a twin delivery of this task that
    completed first must not make this run delete the live vectors.
    """
    try:
        msg, attempt = self.begin_run(message)
    except Ignore:
        _remove_stale_run(self, message)
        raise
    if msg.chunks_key is None or msg.embeddings_key is None:
        raise PermanentError(ErrorCode.ARTIFACT_MISSING, "message carries no chunks or embeddings key")
    chunks = load_chunks(self.storage.get(msg.chunks_key))
    records = build_records(msg, chunks, load_embeddings(self.storage.get(msg.embeddings_key)))

    store = get_store()
    total = len(records)
    # `begin` counts every run of the stage per version atomically (a retry or a
    # redelivery after a killed worker counts 2, 3, ...) and refuses an earlier stage's
    # message once this one began, so the count never restarts: on the first run none
    # of this version's vector ids can exist yet and the store may append; later runs
    # overwrite by id.
    fresh = attempt == 1
    batch_size = self.settings.upsert_batch_size
    for start in range(0, total, batch_size):
        done = store.upsert(msg.tenant, records[start:start + batch_size], fresh=fresh) + start
        metrics.VECTORS_UPSERTED.labels(self.settings.vector_store).inc(done - start)
        if done < total:  # the last batch's progress (100) comes with `complete`
            self.report(msg, done, total)

    # Version 1 has no older versions to drop, so it completes at once: `complete`
    # applies only while the version is current and the document not final, and only
    # when it refuses is the record read to tell a twin's completion from staleness.
    if msg.version == 1 and self.status.complete(msg.document_id, msg.version, vectors=total):
        _count_completed(self, msg)
    elif keeps_vectors(self.status.get(msg.document_id), msg.version):
        if msg.version > 1:
            # Reprocessing replaces old vectors: drop the versions before this one
            # before completing, so a crash in between redelivers a run that drops them.
            store.delete_document(msg.tenant, msg.document_id, keep_version=msg.version)
        if self.status.complete(msg.document_id, msg.version, vectors=total):
            _count_completed(self, msg)
    else:
        # Deleted, reprocessed or cancelled while we wrote: a stale run leaves nothing behind.
        removed = store.delete_version(msg.tenant, msg.document_id, msg.version,
                                       written_ids=[record.id for record in records])
        log.info("run became stale while indexing; removed its vectors", removed=removed)
    return {"document_id": msg.document_id, "version": msg.version, "vectors": total}


def _count_completed(task: StageTask, msg: PipelineMessage) -> None:
    metrics.document_finished(DocumentStatus.COMPLETED.value, msg.content_type,
                              header(task.request, ACCEPTED_AT), time.time())


def _remove_stale_run(task: StageTask, message: dict) -> None:
    """A redelivered run of a now-stale version may have written vectors before it died."""
    try:
        msg = PipelineMessage.model_validate(message)
    except ValidationError:
        return
    if not keeps_vectors(task.status.get(msg.document_id), msg.version):
        get_store().delete_version(msg.tenant, msg.document_id, msg.version)


# The caller waits for the answer: a failure goes straight back to it, neither retried
# nor dead-lettered (a search replayed later answers no one).
@app.task(base=DocflowTask, name=Task.SEARCH.value, bind=True, autoretry_for=(), dead_letter_on_failure=False)
def search(self: DocflowTask, vector: list[float], tenant: str, top_k: int) -> list[dict]:
    """The gateway chains the embedder's query task into this one, so the query vector comes first."""
    hits: list[SearchHit] = get_store().search(tenant, vector, max(1, int(top_k)))
    return [hit.as_dict() for hit in hits]


@app.task(base=DocflowTask, name=Task.DELETE_VECTORS.value, bind=True)
def delete_document_vectors(self: DocflowTask, tenant: str, document_id: str) -> int:
    """Every version's vectors of a deleted document; retried on transient errors."""
    return get_store().delete_document(tenant, document_id)

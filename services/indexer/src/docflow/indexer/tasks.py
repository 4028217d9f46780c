"""The indexer's tasks: index a document's vectors, search a tenant, delete a document's
vectors, rewrite a document's metadata, and maintain a tenant's index."""

import time
from contextlib import nullcontext

import numpy as np
import structlog
from celery.exceptions import Ignore
from pydantic import ValidationError

from docflow.indexer import metrics as index_metrics
from docflow.indexer.generations import generation_for_write, reembeds, send_reembed
from docflow.indexer.maintenance import MaintenanceSchedule
from docflow.indexer.stores import NO_ATTRIBUTES, DocumentAttributes, SearchHit, VectorRecord
from docflow.indexer.stores.base import filterable_metadata
from docflow.indexer.worker import app, get_store
from docflow.shared import artifacts, metrics
from docflow.shared.embedding_models import QueryVector
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.highlights import highlights
from docflow.shared.messages import Chunk, PipelineMessage
from docflow.shared.names import Task
from docflow.shared.reembed import ReembedMessage
from docflow.shared.search import IndexHit, SearchMode, SearchQuery
from docflow.shared.stage_task import DocflowTask, StageTask
from docflow.shared.status import DocumentRecord, DocumentStatus
from docflow.shared.tracing import ACCEPTED_AT, header

log = structlog.get_logger(__name__)

def load_chunks(data: bytes) -> list[Chunk]:
    """The chunks.json artifact; a malformed one fails the document at once."""
    try:
        return artifacts.load_chunks(data)
    except ValidationError as exc:
        raise PermanentError(ErrorCode.INTERNAL_ERROR, f"chunks artifact is malformed: {exc}") from exc


def load_embeddings(data: bytes) -> np.ndarray:
    """The embeddings.npy artifact (never unpickled); a malformed one fails the document at once."""
    try:
        return artifacts.load_embeddings(data)
    except (ValueError, EOFError) as exc:
        raise PermanentError(ErrorCode.INTERNAL_ERROR, f"embeddings artifact is malformed: {exc}") from exc


def build_records(msg: PipelineMessage | ReembedMessage, chunks: list[Chunk], embeddings: np.ndarray,
                  attributes: DocumentAttributes = NO_ATTRIBUTES) -> list[VectorRecord]:
    """One record per chunk; embedding row i belongs to chunk i."""
    if not chunks:
        return []
    if embeddings.ndim != 2 or embeddings.shape[0] != len(chunks):
        raise PermanentError(ErrorCode.INTERNAL_ERROR,
                             f"{len(chunks)} chunks but embeddings of shape {embeddings.shape}")
    if not np.isfinite(embeddings).all():
        # Neither store can rank a NaN; Pinecone rejects the request outright.
        raise PermanentError(ErrorCode.INTERNAL_ERROR, "embeddings contain NaN or infinite values")
    return [VectorRecord.for_chunk(msg.document_id, msg.version, chunk, row, attributes)
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
    """Index one document. The worker runs these in threads; while one runs, another
    thread's append to the same table waits for its rows to share the commit
    (group_commit.py)."""
    appends = getattr(get_store(), "appends", None)  # LanceDB's; Pinecone has no commits
    with appends.writer() if appends is not None else nullcontext():
        return _index_document(self, message)


def _index_document(self: StageTask, message: dict) -> dict:
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
    # The document's attributes go on every chunk, so filters run inside the store.
    record = self.status.get(msg.document_id)
    attributes = DocumentAttributes.of(record) if record is not None else NO_ATTRIBUTES
    records = build_records(msg, chunks, load_embeddings(self.storage.get(msg.embeddings_key)), attributes)

    store = get_store()
    total = len(records)
    # The active generation, or the one a running re-embed builds if only it can take
    # this model (docs/architecture.md, "Re-embedding").
    generation = generation_for_write(self, msg.tenant, msg.embedding_model)
    # `begin` counts every run of the stage per version atomically (a retry or a
    # redelivery after a killed worker counts 2, 3, ...) and refuses an earlier stage's
    # message once this one began, so the count never restarts: on the first run none
    # of this version's vector ids can exist yet and the store may append; later runs
    # overwrite by id.
    fresh = attempt == 1
    batch_size = self.settings.upsert_batch_size
    for start in range(0, total, batch_size):
        done = store.upsert(msg.tenant, records[start:start + batch_size], fresh=fresh,
                            embedding_model=msg.embedding_model, generation=generation) + start
        metrics.VECTORS_UPSERTED.labels(self.settings.vector_store).inc(done - start)
        if done < total:  # the last batch's progress (100) comes with `complete`
            self.report(msg, done, total)

    # The metadata may have been changed (PATCH) while we wrote: the metadata task it
    # sent may have run before our last batch landed, so look again and rewrite.
    current = self.status.get(msg.document_id)
    if current is not None and filterable_metadata(current.metadata) != attributes.metadata:
        store.update_metadata(msg.tenant, msg.document_id, filterable_metadata(current.metadata),
                              generation=generation)

    # Version 1 has no older versions to drop, so it completes at once: `complete`
    # applies only while the version is current and the document not final, and only
    # when it refuses is the record read to tell a twin's completion from staleness.
    model = {"embedding_model": msg.embedding_model, "embedding_runtime": msg.embedding_runtime}
    if msg.version == 1 and self.status.complete(msg.document_id, msg.version, vectors=total, **model):
        _count_completed(self, msg)
        _after_write(self, msg, generation)
    elif keeps_vectors(self.status.get(msg.document_id), msg.version):
        if msg.version > 1:
            # Reprocessing replaces old vectors: drop the versions before this one
            # before completing, so a crash in between redelivers a run that drops them.
            store.delete_document(msg.tenant, msg.document_id, keep_version=msg.version,
                                  generation=generation)
            # And their artifacts, before `complete` (which ends the record's updates).
            self.drop_older_versions_artifacts(msg)
        if self.status.complete(msg.document_id, msg.version, vectors=total, **model):
            _count_completed(self, msg)
        _after_write(self, msg, generation)
    else:
        # Deleted, reprocessed or cancelled while we wrote: a stale run leaves nothing behind.
        removed = store.delete_version(msg.tenant, msg.document_id, msg.version,
                                       written_ids=[record.id for record in records], generation=generation)
        log.info("run became stale while indexing; removed its vectors", removed=removed)
    note_index_writes(self, msg.tenant)
    return {"document_id": msg.document_id, "version": msg.version, "vectors": total}


def _after_write(task: StageTask, msg: PipelineMessage, generation: int) -> None:
    """A completed document written into `generation` while a re-embed runs is noted for
    the job to redo in its new generation; one written into a generation a switch has
    retired meanwhile is sent there at once (docs/architecture.md, "Re-embedding")."""
    if reembeds(task).after_write(msg.tenant, msg.document_id, generation) == "late":
        active = reembeds(task).active(msg.tenant).generation
        log.info("generation switched while indexing; re-embedding into the active one", generation=active)
        send_reembed(msg.tenant, msg.document_id, msg.version, active)


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
        for generation in reembeds(task).live_generations(msg.tenant):
            get_store().delete_version(msg.tenant, msg.document_id, msg.version, generation=generation)


# The caller waits for the answer: a failure goes straight back to it, neither retried
# nor dead-lettered (a search replayed later answers no one).
@app.task(base=DocflowTask, name=Task.SEARCH.value, bind=True, autoretry_for=(), dead_letter_on_failure=False)
def search(self: DocflowTask, vector: dict | list[float] | None, query: dict) -> list[dict]:
    """The gateway chains the embedder's query task into this one for the modes that need a
    vector (so the vector comes first), and sends it alone with None for keyword search.

    The embedder's answer names the model of the vector (QueryVector); a store whose
    tenant index holds another model refuses it (EmbeddingModelMismatch: the gateway's
    409). A bare vector (an embedder from before models were recorded) is not checked.
    """
    request = SearchQuery.model_validate(query)
    embedded = QueryVector.of(vector)
    # The generation the gateway read with the model it had the query embedded with, so
    # a switch between the two steps cannot pair them wrongly ("Re-embedding").
    generation = request.generation if request.generation is not None else \
        reembeds(self).active(request.tenant).generation
    hits: list[SearchHit] = get_store().search(
        request.tenant, embedded.vector if embedded else None, request.limit, mode=request.mode,
        text=request.text, filter=request.filter, embedding_model=embedded.model_id if embedded else None,
        generation=generation)
    matched_terms = request.mode is not SearchMode.VECTOR
    return [IndexHit(document_id=hit.document_id, chunk_index=hit.chunk_index, text=hit.text, page=hit.page,
                     score=hit.score, highlights=highlights(request.text, hit.text) if matched_terms else [],
                     ).model_dump() for hit in hits]


@app.task(base=DocflowTask, name=Task.DELETE_DOCUMENT.value, bind=True)
def delete_document(self: DocflowTask, tenant: str, document_id: str) -> int:
    """Every version's vectors of a deleted document, in every live generation (a running
    re-embed's too); retried on transient errors."""
    removed = sum(get_store().delete_document(tenant, document_id, generation=generation)
                  for generation in reembeds(self).live_generations(tenant))
    note_index_writes(self, tenant)
    return removed


@app.task(base=DocflowTask, name=Task.UPDATE_METADATA.value, bind=True)
def update_metadata(self: DocflowTask, tenant: str, document_id: str) -> int:
    """Rewrite the document's metadata on its chunks from the status record (PATCH sends
    this): the record is read now, so a late or repeated run writes the newest metadata.
    An index run still writing looks again after its last batch (index_document)."""
    record = self.status.get(document_id)
    if record is None or record.tenant != tenant:
        return 0  # deleted meanwhile: its vectors go with it
    rewritten = sum(get_store().update_metadata(tenant, document_id, filterable_metadata(record.metadata),
                                                generation=generation)
                    for generation in reembeds(self).live_generations(tenant))
    note_index_writes(self, tenant)
    return rewritten


# Maintenance is best effort and self-renewing: a failed run is retried, and the next
# writes schedule another, so it is never dead-lettered.
@app.task(base=DocflowTask, name=Task.MAINTAIN.value, bind=True, dead_letter_on_failure=False)
def maintain(self: DocflowTask, tenant: str) -> dict:
    """Compact the tenant's table, update or build its indexes, clean old versions.

    On its own queue and worker (Queue.MAINTENANCE), one run per tenant at a time.
    """
    schedule = MaintenanceSchedule(self.redis, self.settings)
    run_id = self.request.id or "local"
    if not schedule.acquire(tenant, run_id):
        index_metrics.MAINTENANCE_RUNS.labels("busy").inc()
        log.info("maintenance already running for this tenant", tenant=tenant)
        return {"tenant": tenant, "outcome": "busy"}
    started = time.monotonic()
    outcome = "failed"
    try:
        schedule.started(tenant)
        store = get_store()
        maintain_table = getattr(store, "maintain", None)
        # The active generation's health is the tenant's; one a re-embed is building is
        # maintained too, so it is compact and indexed by the time searches switch to it.
        active, *building = reembeds(self).live_generations(tenant)
        for generation in building if maintain_table is not None else ():
            maintain_table(tenant, self.settings.index_version_retention_seconds,
                           self.settings.vector_index_min_rows, generation=generation)
        health = None if maintain_table is None else maintain_table(
            tenant, self.settings.index_version_retention_seconds, self.settings.vector_index_min_rows,
            generation=active)
        if health is None:  # Pinecone maintains itself; or the tenant has no table yet
            outcome = "skipped"
            return {"tenant": tenant, "outcome": outcome}
        outcome = "ok"
        if health["versions"] > 1 and schedule.cleanup_later(tenant):
            # Versions within the retention were kept, and may hold deleted rows.
            _send_maintenance(tenant, countdown=schedule.cleanup_delay_seconds)
        index_metrics.record_health(tenant, health, time.time())
        log.info("index maintained", tenant=tenant, seconds=round(time.monotonic() - started, 3), **health)
        return {"tenant": tenant, "outcome": outcome, **health}
    finally:
        index_metrics.MAINTENANCE_RUNS.labels(outcome).inc()
        index_metrics.MAINTENANCE_SECONDS.labels(outcome).observe(time.monotonic() - started)
        schedule.release(tenant, run_id)


def note_index_writes(task: DocflowTask, tenant: str, count: int = 1) -> None:
    """Count a write towards the tenant's next maintenance run, sending it when due.

    A failure here must not fail the write it follows (that is done): the next write
    schedules maintenance instead.
    """
    if task.settings.vector_store != "lancedb":
        return  # Pinecone compacts and indexes on its own
    try:
        now, later = MaintenanceSchedule(task.redis, task.settings).note_writes(tenant, count)
    except Exception as exc:
        log.warning("maintenance not scheduled", tenant=tenant, error=str(exc))
        return
    if now:
        _send_maintenance(tenant)
    elif later:
        _send_maintenance(tenant, countdown=task.settings.index_maintenance_delay_seconds)


def _send_maintenance(tenant: str, countdown: int | None = None) -> None:
    """Send a maintenance run; a failure is only logged (what sent it is done, and the
    tenant's next writes send another)."""
    try:
        maintain.apply_async(args=[tenant], countdown=countdown, ignore_result=True)  # no one reads it
    except Exception as exc:
        log.warning("maintenance not scheduled", tenant=tenant, error=str(exc))

"""Re-embedding a tenant into a new generation of its index, then switching searches to it
(docs/architecture.md, "Re-embedding"; the Redis side is docflow.shared.reembed).

The coordinator (`reembed_tenant`, on the maintenance queue) runs in short steps, one
message each: a step sends the next few documents (at most DOCFLOW_REEMBED_WINDOW in flight),
and once every document is done it switches; each step ends by sending the next. All
its state is in Redis (the walk's cursor, the sets of documents sent, done, failed
and to redo), so a worker killed midway loses nothing: the step's message is
redelivered (acks_late) and goes on from the saved cursor. A document sent twice (a
kill between sending and saving the cursor) is written twice under the same vector
ids, which overwrite: nothing is duplicated. One step at a time per tenant: a Redis
lock holding the step's task id (its redelivery takes it over at once).
"""

import time

import structlog
from celery.exceptions import SoftTimeLimitExceeded

from docflow.indexer import run_lock
from docflow.indexer.generations import reembeds, send_reembed
from docflow.indexer.stores import DocumentAttributes
from docflow.indexer.tasks import (build_records, keeps_vectors, load_chunks, load_embeddings,
                                   note_index_writes)
from docflow.indexer.worker import app, get_store
from docflow.shared.errors import TransientError
from docflow.shared.names import Task
from docflow.shared.reembed import ReembedMessage, Reembeds, ReembedState
from docflow.shared.stage_task import DocflowTask
from docflow.shared.status import DocumentRecord, DocumentStatus

log = structlog.get_logger(__name__)

# A step with nothing to send waits this long before the next looks again.
STEP_PAUSE_SECONDS = 0.5
# The lock outlives any step (a step is a few Redis calls and sends).
LOCK_SECONDS = 120


class CoordinatorTask(DocflowTask):
    """A step that finally fails (retries spent, time limit) fails the job: the old
    generation stays active, and a new POST starts over."""

    dead_letter_on_failure = False

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        if args:
            reembeds(self).fail(args[0], f"the re-embed coordinator failed: {type(exc).__name__}: {exc}")


class ReembedDocumentTask(DocflowTask):
    """A document whose re-embedding finally fails is counted as failed by its job."""

    dead_letter_on_failure = False  # the job reports it; a new re-embed retries it

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        reembeds(self).note_task_failure(args, exc)


@app.task(base=CoordinatorTask, name=Task.REEMBED_TENANT.value, bind=True)
def reembed_tenant(self: CoordinatorTask, tenant: str) -> dict:
    """One step of the tenant's re-embed; sends the next unless the job has ended."""
    jobs = reembeds(self)
    run_id = self.request.id or "local"
    lock = jobs.lock_key(tenant)
    if not run_lock.acquire(self.redis, lock, run_id, LOCK_SECONDS):
        return {"tenant": tenant, "outcome": "busy"}  # another step runs; it sends the next
    try:
        outcome = _step(self, jobs, tenant)
    finally:
        run_lock.release(self.redis, lock, run_id)
    if outcome in ("sent", "waiting"):
        if outcome == "waiting":
            time.sleep(STEP_PAUSE_SECONDS)
        # After the lock is released: the next step must find it free.
        reembed_tenant.apply_async(args=[tenant], ignore_result=True)
    return {"tenant": tenant, "outcome": outcome}


def _step(task: CoordinatorTask, jobs: Reembeds, tenant: str) -> str:
    fields = jobs.fields(tenant)
    if fields.get("state") != ReembedState.RUNNING.value:
        return fields.get("state", "none")
    source, target = int(fields["from"]), int(fields["to"])
    store = get_store()
    if fields.get("prepared") != "1":
        if fields.get("leftover"):  # the table of a job that failed: nothing uses it
            store.drop(tenant, int(fields["leftover"]))
        model = store.embedding_model(tenant, source)
        if model:  # searches embed their queries with it from now until the switch
            jobs.record_active_model(tenant, model)
        jobs.update(tenant, prepared=1)
        log.info("re-embed started", tenant=tenant, source=source, target=target, model=model)

    # DOCFLOW_REEMBED_WINDOW documents in flight at a time: enough to keep the embedders
    # busy, few enough that uploads still get their turn on the same queues.
    budget = task.settings.reembed_window - jobs.in_flight(tenant)
    taken = 0  # documents looked at (sent, or skipped as no longer completed)
    if budget > 0 and fields.get("walked") != "1":
        taken += _walk(task, jobs, tenant, fields, target, budget)
    if budget - taken > 0:
        taken += _redo(task, jobs, tenant, target, budget - taken)
    if taken:
        return "sent"
    if jobs.switch(tenant):
        delay = max(task.settings.search_timeout_seconds, task.settings.index_time_limit) + 30
        # Searches that read the old generation before the switch, and index writes
        # into it, are over by then (each is bounded by its time limit).
        drop_generation.apply_async(args=[tenant, source], countdown=delay, ignore_result=True)
        log.info("re-embed switched", tenant=tenant, active=target, dropping=source, after_seconds=delay)
        return "switched"
    job = jobs.job(tenant)
    if job.failed and fields.get("walked") == "1" and jobs.in_flight(tenant) == 0 \
            and not jobs.redo_batch(tenant, 1):
        jobs.fail(tenant, f"{job.failed} document(s) could not be re-embedded; "
                          f"generation {source} stays active")
        return "failed"
    return "waiting"


def _walk(task: CoordinatorTask, jobs: Reembeds, tenant: str, fields: dict[str, str], target: int,
          budget: int) -> int:
    """Send the next completed documents in creation order after the saved cursor; save
    the cursor after sending (a crash between re-sends them, never skips them)."""
    key = task.status.documents_key(tenant)
    cursor_score, cursor_id = fields["cursor_score"], fields["cursor_id"]
    after = float(cursor_score)
    # Equal scores are ordered by id: read from the cursor's score on and skip what is not after it.
    rows = task.redis.zrangebyscore(key, cursor_score, "+inf", start=0, num=budget + 64, withscores=True)
    rows = [(document_id, score) for document_id, score in rows if (score, document_id) > (after, cursor_id)]
    page = rows[:budget]
    records = [task.status.get(document_id) for document_id, _ in page]
    chosen = [record for record in records
              if record is not None and record.tenant == tenant and record.status is DocumentStatus.COMPLETED]
    jobs.note_sent(tenant, [record.document_id for record in chosen])
    for record in chosen:
        send_reembed(tenant, record.document_id, record.version, target)
    if page:
        last_id, last_score = page[-1]
        cursor_score, cursor_id = repr(last_score), last_id
    walked = len(rows) <= budget
    remaining = 0 if walked else task.redis.zcount(key, f"({cursor_score}", "+inf")
    jobs.update(tenant, cursor_score=cursor_score, cursor_id=cursor_id, walked=int(walked),
                remaining=remaining)
    # Skipped documents (not completed) come back as redos if they complete during the job.
    return len(page)


def _redo(task: CoordinatorTask, jobs: Reembeds, tenant: str, target: int, budget: int) -> int:
    """Documents the ordinary pipeline completed into the old generation meanwhile."""
    document_ids = jobs.redo_batch(tenant, budget)
    records = [task.status.get(document_id) for document_id in document_ids]
    chosen = [record for record in records
              if record is not None and record.tenant == tenant and record.status is DocumentStatus.COMPLETED]
    jobs.note_sent(tenant, [record.document_id for record in chosen])
    for record in chosen:
        send_reembed(tenant, record.document_id, record.version, target)
    jobs.forget_redo(tenant, document_ids)
    return len(document_ids)


@app.task(base=ReembedDocumentTask, name=Task.REEMBED_INDEX.value, bind=True)
def reembed_document(self: ReembedDocumentTask, message: dict) -> dict:
    """Index a document's re-embedded vectors into the job's generation, unless it was
    deleted or reprocessed since (a reprocess comes back as a redo when it completes)."""
    msg = ReembedMessage.model_validate(message)
    jobs = reembeds(self)
    written = 0
    record = self.status.get(msg.document_id)
    if msg.embeddings_key is not None and _still_completed(record, msg):
        records = build_records(msg, load_chunks(self.storage.get(msg.chunks_key)),
                                load_embeddings(self.storage.get(msg.embeddings_key)),
                                DocumentAttributes.of(record))
        store = get_store()
        batch_size = self.settings.upsert_batch_size
        for start in range(0, len(records), batch_size):
            # Not `fresh`: a redelivered run, or the document sent twice, overwrites by id.
            written += store.upsert(msg.tenant, records[start:start + batch_size],
                                    embedding_model=msg.embedding_model, generation=msg.generation)
        # An earlier version re-embedded before a reprocess completed is replaced.
        store.delete_document(msg.tenant, msg.document_id, keep_version=msg.version,
                              generation=msg.generation)
        if not keeps_vectors(self.status.get(msg.document_id), msg.version):
            # Deleted or reprocessed while we wrote: leave nothing behind.
            store.delete_version(msg.tenant, msg.document_id, msg.version, generation=msg.generation)
        note_index_writes(self, msg.tenant)
    if jobs.counts(msg):
        jobs.note_done(msg.tenant, msg.document_id, msg.embedding_model if written else None)
    if msg.embeddings_key is not None:
        self.storage.delete_prefix(msg.embeddings_key)  # the transient artifact; its record is the table now
    return {"document_id": msg.document_id, "generation": msg.generation, "vectors": written}


def _still_completed(record: DocumentRecord | None, msg: ReembedMessage) -> bool:
    return (record is not None and record.tenant == msg.tenant and record.version == msg.version
            and record.status is DocumentStatus.COMPLETED)


@app.task(base=DocflowTask, name=Task.DROP_GENERATION.value, bind=True, dead_letter_on_failure=False,
          autoretry_for=(TransientError, SoftTimeLimitExceeded))
def drop_generation(self: DocflowTask, tenant: str, generation: int) -> bool:
    """Drop a generation searches and writes no longer use (never a live one)."""
    if generation in reembeds(self).live_generations(tenant):
        log.info("generation is live again; not dropped", tenant=tenant, generation=generation)
        return False
    dropped = get_store().drop(tenant, generation)
    log.info("old generation dropped", tenant=tenant, generation=generation, dropped=dropped)
    return dropped

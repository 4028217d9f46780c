"""Starting a version of a document: the one way an upload, a reprocess and a recovery
put a document into the pipeline.

A start is three writes: the task's owner (GET /v1/tasks), the status record (created
for an upload, restarted as a new version otherwise), and the first stage's message.
The failure policy is the same for all three: **a start whose message could not be
enqueued is undone** -- the upload's record and task owner are removed, a restarted
record is put back exactly as it was (`StatusStore.unrestart`) -- and the error goes
to the caller, who answers 503 (upload, reprocess) or tries again at its next sweep
(recovery). So no document is ever left `queued` with nothing queued for it, except
when the undo itself cannot reach Redis (the usual reason the enqueue failed): then
the recovery sweep finds the document, in flight with no message, after
DOCFLOW_RECOVERY_MIN_IDLE_SECONDS and starts it again.
"""

from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from docflow.gateway.dependencies import Services
from docflow.gateway.lanes import runs_in_bulk_lane
from docflow.gateway.pipeline import new_task_id
from docflow.gateway.task_registry import TaskOwner
from docflow.shared.messages import PipelineMessage
from docflow.shared.status import DocumentRecord

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Started:
    task_id: str
    version: int


def start_first_version(services: Services, record: DocumentRecord,
                        also: Callable[[redis.client.Pipeline], None] | None = None,
                        bulk: bool = False) -> Started:
    """Create the record and its task owner (one transaction, one round trip) and enqueue
    version 1; undone (and re-raised) if the enqueue fails. `also` queues the caller's
    own writes on that transaction (the upload's digest): they exist iff the record does.
    The tenant's documents in flight are counted in the same transaction, before the
    record joins them: they choose the version's lane (docflow.gateway.lanes), unless
    `bulk` (a file of a big batch) chose it already."""
    assert record.task_id, "an upload's record names its task"
    writes = services.redis.pipeline(transaction=True)
    counted = services.status.count_in_flight(record.tenant, writes)
    services.status.create(record, writes)
    services.tasks.remember(record.task_id, TaskOwner(tenant=record.tenant, document_id=record.document_id),
                            writes)
    if also is not None:
        also(writes)
    in_flight = sum(int(n) for n in writes.execute()[:counted])
    bulk = bulk or runs_in_bulk_lane(in_flight, services.settings.fair_share_interactive_limit)
    try:
        services.pipeline.enqueue_document(_message(record, record.version), record.task_id, bulk=bulk)
    except BaseException:
        _undo(services, record.task_id, lambda: services.status.delete(record.document_id, record.tenant))
        raise
    return Started(task_id=record.task_id, version=record.version)


def start_new_version(services: Services, record: DocumentRecord,
                      if_unchanged: tuple[str, str] | None = None, bulk: bool = False) -> Started | None:
    """Restart the document as a new version and enqueue it (reprocess, recovery).

    None when the document was deleted meanwhile or, with `if_unchanged` (the raw
    version and updated_at a recovery scan saw), moved since. If the enqueue fails the
    restart is undone and the error re-raised.
    """
    task_id = new_task_id()
    services.tasks.remember(task_id, TaskOwner(tenant=record.tenant, document_id=record.document_id))
    # Counted before the restart, which puts this document in flight (if it was not).
    in_flight = services.status.in_flight_of_tenant(record.tenant)
    restarted = services.status.start_again(record.document_id, task_id, if_unchanged)
    if restarted is None:
        services.tasks.forget(task_id)
        return None
    bulk = bulk or runs_in_bulk_lane(in_flight, services.settings.fair_share_interactive_limit)
    try:
        services.pipeline.enqueue_document(_message(record, restarted.version), task_id, bulk=bulk)
    except BaseException:
        _undo(services, task_id, lambda: _unrestart_or_say_why(services, restarted))
        raise
    return Started(task_id=task_id, version=restarted.version)


def _message(record: DocumentRecord, version: int) -> PipelineMessage:
    return PipelineMessage(document_id=record.document_id, tenant=record.tenant, version=version,
                           content_type=record.content_type, original_key=record.original_key)


def _unrestart_or_say_why(services: Services, restarted) -> None:
    if not services.status.unrestart(restarted):
        # Something already acted on the new version (or the document was deleted): the
        # message must have gone out after all, or the document is gone. Nothing to undo.
        log.warning("a version whose enqueue failed had moved on; left as it is",
                    document_id=restarted.document_id, version=restarted.version)


def _undo(services: Services, task_id: str, undo_record) -> None:
    """Best effort: the failure that got us here may stop these too (then recovery acts)."""
    for what, undo in (("status record", undo_record), ("task owner", lambda: services.tasks.forget(task_id))):
        try:
            undo()
        except Exception as exc:
            log.error("could not undo a start whose enqueue failed; the recovery sweep will restart it",
                      left_behind=what, error=str(exc), task_id=task_id)

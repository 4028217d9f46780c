"""Finding documents whose pipeline message was lost, and starting them again.

kombu's Redis transport takes a message off its queue with BRPOP and only then, in a
second command, records it in its `unacked` hash (from which a message a dead worker
held is redelivered). If Redis stops between the two -- a crash or a restart at the
wrong millisecond -- the message exists nowhere and its document would stay
`queued` or mid-stage forever. tests/e2e/test_faults_dependencies.py caught exactly
this: Redis's AOF ended with the RPOP of a just-accepted document's message and no
unacked write after it.

So the gateway sweeps: every DOCFLOW_RECOVERY_INTERVAL_SECONDS one replica (a Redis
lock) looks at the documents in flight (StatusStore.in_flight) that have not changed
for DOCFLOW_RECOVERY_MIN_IDLE_SECONDS. One that no message refers to -- none waiting
in a stage queue, none delivered to a worker (the unacked hash, which also holds
retries waiting out their backoff) -- in two scans in a row is started again as a new
version, exactly like a reprocess; a run of the old version that might still appear
stops itself, as after any reprocess. While its document is in flight a message is
always in one of those places, except for the instants it moves between them, which
the idle time and the second scan rule out.

The same sweep does two more things no single request can:

- **A delivery whose worker died is put back on its queue** once it is older than its
  task's hard time limit (plus a grace), instead of waiting for kombu's visibility
  timeout (an hour by default: a SIGKILLed embedder's document stayed `embedding` the
  whole 8.5 minutes watched). No run of it can be live by then: prefetch is off, so a
  worker starts what it was delivered at once (a retry at its ETA, counted from there),
  and the pool kills any run at its hard limit, after which the worker acks the
  message. A delivery still unacked after that belongs to a worker that is gone. The
  move is one compare-and-set against the entry as read, so an ack or kombu's own
  restore landing at the same moment wins and nothing is requeued twice.
- **A deleted document is swept once more** after every run that might still write for
  it has ended (the longest stage hard limit, plus the grace): its storage folder
  (a run that wrote between the delete and its own check, then died), its task ids'
  owners and Celery results (written by runs ending after the delete), and its dead
  letters. Dead letters are also trimmed by age and count (DOCFLOW_DEAD_LETTER_MAX_*).
"""

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool

from docflow.gateway.dependencies import Services
from docflow.gateway.pipeline import DOCUMENT_STAGES, stage_task_id
from docflow.gateway.versions import start_new_version
from docflow.shared import kombu_layout
from docflow.shared.celery_app import task_time_limits
from docflow.shared.messages import artifact_prefix
from docflow.shared.names import Queue, Stage
from docflow.shared.status import FINAL_STATUSES, utcnow

log = structlog.get_logger(__name__)

# kombu's own key for delivered, unacknowledged messages (docflow.shared.kombu_layout).
UNACKED_HASH = kombu_layout.UNACKED_KEY
# A message is between the queue and the unacked hash for a millisecond or so: never
# at both of two scans this far apart.
SECOND_SCAN_AFTER_SECONDS = 0.5
# Past a task's hard limit, the time a run may still take to be killed and acked, or a
# delivery to reach a pool process: a delivery unacked this much longer has no live run.
LOST_DELIVERY_GRACE_SECONDS = 30
_QUEUES = frozenset(queue.value for queue in Queue)


def _document_ids(value: Any, depth: int = 0) -> Iterator[str]:
    """Every `document_id` in a task's decoded arguments (a stage's message, a
    chained result, a fan-out range...)."""
    if depth > 4:
        return
    if isinstance(value, dict):
        if isinstance(value.get("document_id"), str):
            yield value["document_id"]
        for item in value.values():
            yield from _document_ids(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _document_ids(item, depth + 1)


def _refers_to(raw: str | bytes) -> tuple[set[str], str | None]:
    """(document ids in the arguments, root task id) of a kombu message as stored."""
    envelope = kombu_layout.decode(raw)
    if envelope is None:  # not ours to judge; an undecodable message refers to nothing
        return set(), None
    return set(_document_ids(envelope.body)), envelope.root_task_id


def referenced(services: Services) -> tuple[set[str], set[str]]:
    """(document ids, root task ids) that some message in Redis refers to."""
    documents: set[str] = set()
    tasks: set[str] = set()

    def add(raw: str | bytes) -> None:
        ids, task_id = _refers_to(raw)
        documents.update(ids)
        if task_id:
            tasks.add(task_id)

    client = services.redis
    for _, raw in kombu_layout.unacked(client):
        add(raw)
    for queue in Queue:
        for raw in kombu_layout.queued(client, queue.value):
            add(raw)
    return documents, tasks


def _idle_for(updated_at: str, now: datetime) -> float:
    try:
        return (now - datetime.fromisoformat(updated_at)).total_seconds()
    except ValueError:
        return 0.0


def stranded(services: Services, min_idle_seconds: float) -> dict[str, tuple[str, str]]:
    """{document id: (version, updated_at)} of in-flight documents no message refers to."""
    status = services.status
    ids = status.in_flight()
    activity = status.activity(ids)
    for gone in set(ids) - set(activity):  # deleted: nothing left to recover
        services.redis.zrem(status.in_flight_key, gone)
    now = utcnow()
    idle = {d: (version, updated_at, task_id) for d, (version, updated_at, state, task_id) in activity.items()
            if state not in FINAL_STATUSES and _idle_for(updated_at, now) >= min_idle_seconds}
    for scan in range(2):  # a message moving between lists during one scan is seen by the other
        if not idle:
            break
        if scan:
            time.sleep(SECOND_SCAN_AFTER_SECONDS)
        documents, tasks = referenced(services)
        idle = {d: a for d, a in idle.items() if d not in documents and a[2] not in tasks}
    return {d: (version, updated_at) for d, (version, updated_at, _) in idle.items()}


def recover(services: Services, min_idle_seconds: float) -> list[str]:
    """Start every stranded document again as a new version; returns their ids."""
    recovered = []
    for document_id, expected in stranded(services, min_idle_seconds).items():
        record = services.status.get(document_id)
        if record is None:
            continue
        # A failed enqueue undoes the restart (docflow.gateway.versions): the document
        # stays stranded, and the next sweep tries again.
        started = start_new_version(services, record, if_unchanged=expected)
        if started is None:  # it moved (or was deleted) since the scan: not stranded after all
            continue
        log.warning("recovered a document whose pipeline message was lost; started it again",
                    document_id=document_id, tenant=record.tenant, stranded_status=record.status.value,
                    stranded_version=record.version, version=started.version, task_id=started.task_id)
        recovered.append(document_id)
    return recovered


def restore_lost_deliveries(services: Services, now: float | None = None) -> list[str]:
    """Put back on their queues the unacked deliveries older than their task's hard time
    limit plus the grace (their worker is gone); returns the task ids restored."""
    client = services.redis
    hard_limits = {task: hard for task, (_, hard) in task_time_limits(services.settings).items()}
    now = time.time() if now is None else now
    restored = []
    for tag, delivered_at in kombu_layout.delivered_before(
            client, now - min(hard_limits.values()) - LOST_DELIVERY_GRACE_SECONDS):
        raw = client.hget(kombu_layout.UNACKED_KEY, tag)
        envelope = kombu_layout.decode(raw, with_body=False)
        if envelope is None or envelope.task not in hard_limits:
            continue  # acked meanwhile, or not ours: kombu's visibility timeout applies
        # A retry waits out its backoff in the worker that took it: it starts at its ETA.
        started_by = max(delivered_at, envelope.eta or 0.0)
        if now - started_by <= hard_limits[envelope.task] + LOST_DELIVERY_GRACE_SECONDS:
            continue
        if kombu_layout.restore(client, tag, raw, _QUEUES):
            log.warning("restored a delivery whose worker is gone (unacked past its hard time limit)",
                        task=envelope.task, task_id=envelope.task_id, queue=envelope.queue,
                        delivered_seconds_ago=round(now - delivered_at, 1))
            restored.append(envelope.task_id or tag)
    return restored


def sweep_deleted(services: Services, now: float | None = None) -> int:
    """Sweep the documents deleted before any run of them can still be going (see the
    module's docstring); returns how many were swept."""
    settings = services.settings
    longest = max(settings.time_limits(stage)[1] for stage in Stage)
    now = time.time() if now is None else now
    documents = services.status.deleted_before(now - longest - LOST_DELIVERY_GRACE_SECONDS)
    if not documents:
        return 0
    task_ids = services.status.deleted_task_ids(documents)
    for tenant, document_id in documents:
        if removed := services.storage.delete_prefix(artifact_prefix(tenant, document_id)):
            log.warning("removed what a run wrote for a deleted document after its delete",
                        document_id=document_id, tenant=tenant, objects=removed)
    services.tasks.forget_all(task_ids)
    backend = services.celery.backend
    result_keys = [backend.get_key_for_task(stage_task_id(task_id, stage))
                   for task_id in task_ids for stage, _ in DOCUMENT_STAGES]
    if result_keys:
        services.redis.delete(*result_keys)
    services.dead_letters.remove_for_documents({document_id for _, document_id in documents})
    services.status.forget_deleted(documents)
    return len(documents)


def sweep_once(services: Services) -> list[str] | None:
    """One sweep, by whichever replica takes the lock first; None if another has it."""
    settings = services.settings
    lock = f"{settings.redis_key_prefix}recovery:lock"
    if not services.redis.set(lock, "1", nx=True, ex=max(1, settings.recovery_interval_seconds)):
        return None
    # A deployment from before the per-status sets builds them once (then a no-op).
    if indexed := services.status.ensure_status_index():
        log.info("built the per-status listing sets", documents=indexed)
    restore_lost_deliveries(services)
    sweep_deleted(services)
    if trimmed := services.dead_letters.trim(settings.dead_letter_max_age_seconds, settings.dead_letter_max_count):
        log.info("trimmed dead letters", removed=trimmed)
    return recover(services, settings.recovery_min_idle_seconds)


async def sweep_forever(services: Services) -> None:
    interval = services.settings.recovery_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(sweep_once, services)
        except Exception as exc:  # Redis down, say: the next sweep tries again
            log.warning("recovery sweep failed", error=str(exc), error_type=type(exc).__name__)


def start_recovery(services: Services) -> asyncio.Task | None:
    if services.settings.recovery_interval_seconds <= 0:
        return None
    return asyncio.get_running_loop().create_task(sweep_forever(services), name="docflow-recovery")

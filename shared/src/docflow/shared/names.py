"""Queue and task names: the one place these strings are spelled.

The gateway builds chains from these names, each worker is started with its own
queue from here, and KEDA's `listName` and the dashboards use the same values.
kombu keeps a queue's pending messages in a Redis list named exactly like the queue,
so `LLEN <queue>` is the backlog KEDA scales on.

Searches have queues of their own on the embedder and the indexer, consumed by the
same workers ahead of their document queues: kombu's Redis channel takes the first
non-empty list of those it waits on, then moves that one to the back, so a search
waits for at most one document task per worker process, never for a whole backlog.
"""

from enum import StrEnum

# What every Redis key docflow writes begins with (DOCFLOW_REDIS_KEY_PREFIX's default):
# status records, dead letters, task owners, rate limits. kombu's own keys (queues, the
# unacked hash) are not under it.
KEY_PREFIX = "docflow:"


class Stage(StrEnum):
    EXTRACT = "extract"
    EMBED = "embed"
    INDEX = "index"


class Queue(StrEnum):
    """`docflow.<stage>` for a stage's documents, `docflow.<kind>.<stage>` for its other
    work (query, maintenance): a queue says whose backlog it is, the thing KEDA scales.
    So the query embedding runs as task `docflow.embed.query` on queue
    `docflow.query.embed`: two rules, not a typo (see Task)."""

    EXTRACT = "docflow.extract"
    EMBED = "docflow.embed"
    INDEX = "docflow.index"
    QUERY_EMBED = "docflow.query.embed"
    QUERY_INDEX = "docflow.query.index"
    # Index upkeep (compaction, version cleanup, vector/full-text index builds): its own
    # queue and worker, so a long maintenance run never sits in front of a document or a
    # search (`celery -A docflow.indexer.worker worker -Q docflow.maintenance.index`).
    MAINTENANCE = "docflow.maintenance.index"
    # Webhook deliveries (one task per event and webhook, retried with backoff): a worker
    # of their own (the indexer's `notify` role), so a slow or dead receiver never holds
    # up a document, a search or maintenance.
    WEBHOOKS = "docflow.webhooks"
    # Fair sharing: the documents of a tenant with many already in flight (a bulk import)
    # go through these lanes instead of the stage's document queue, which the same
    # workers consume turn about with it (docs/architecture.md, "Fair sharing").
    BULK_EXTRACT = "docflow.bulk.extract"
    BULK_EMBED = "docflow.bulk.embed"
    BULK_INDEX = "docflow.bulk.index"


SERVICE_OF_STAGE: dict[Stage, str] = {
    Stage.EXTRACT: "extractor",
    Stage.EMBED: "embedder",
    Stage.INDEX: "indexer",
}

# A stage's document queue (what KEDA mainly scales it on).
QUEUE_OF_STAGE: dict[Stage, Queue] = {
    Stage.EXTRACT: Queue.EXTRACT,
    Stage.EMBED: Queue.EMBED,
    Stage.INDEX: Queue.INDEX,
}
# A stage's bulk lane: its document queue's twin for a tenant's bulk import, chosen per
# version by the gateway (docflow.gateway.lanes) and carried by the chain to every stage.
BULK_QUEUE_OF_STAGE: dict[Stage, Queue] = {
    Stage.EXTRACT: Queue.BULK_EXTRACT,
    Stage.EMBED: Queue.BULK_EMBED,
    Stage.INDEX: Queue.BULK_INDEX,
}
# The stage's queue for query-time work, where it has any.
QUERY_QUEUE_OF_STAGE: dict[Stage, Queue] = {
    Stage.EMBED: Queue.QUERY_EMBED,
    Stage.INDEX: Queue.QUERY_INDEX,
}
# The stage's queue for background upkeep, where it has any: consumed by a worker of
# its own, never by the stage's document/query worker (not in `queues_of_stage`).
MAINTENANCE_QUEUE_OF_STAGE: dict[Stage, Queue] = {
    Stage.INDEX: Queue.MAINTENANCE,
}
# The stage whose service sends webhook deliveries (its `notify` worker role): the
# indexer, which already runs the background roles, so no image of its own.
NOTIFY_QUEUE_OF_STAGE: dict[Stage, Queue] = {
    Stage.INDEX: Queue.WEBHOOKS,
}
STAGE_OF_QUEUE: dict[Queue, Stage] = {
    **{queue: stage for stage, queue in QUEUE_OF_STAGE.items()},
    **{queue: stage for stage, queue in BULK_QUEUE_OF_STAGE.items()},
    **{queue: stage for stage, queue in QUERY_QUEUE_OF_STAGE.items()},
    **{queue: stage for stage, queue in MAINTENANCE_QUEUE_OF_STAGE.items()},
    **{queue: stage for stage, queue in NOTIFY_QUEUE_OF_STAGE.items()},
}


def queues_of_stage(stage: Stage) -> list[Queue]:
    """What a stage's worker consumes (its -Q): the query queue first, then the document
    queue and the bulk lane. kombu takes the first non-empty list and rotates it to the
    back, so with both lanes full a worker takes them turn about: an interactive document
    waits for at most one bulk task per worker process, never for the whole import."""
    query = QUERY_QUEUE_OF_STAGE.get(stage)
    lanes = [QUEUE_OF_STAGE[stage], BULK_QUEUE_OF_STAGE[stage]]
    return [query, *lanes] if query else lanes


def is_bulk_queue(queue: str) -> bool:
    """Whether a queue (as a message or dead letter names it) is a stage's bulk lane."""
    return queue in {q.value for q in BULK_QUEUE_OF_STAGE.values()}


class WorkerRole(StrEnum):
    """The kinds of worker a stage runs (each its own Deployment, `make run` process)."""

    # Documents (the stage's document queue), and its query queue as a fallback.
    DOCUMENT = "document"
    # Query-time work only: a search never waits for a document task.
    QUERY = "query"
    # Background upkeep only (one at a time, Queue.MAINTENANCE).
    MAINTENANCE = "maintenance"
    # Webhook deliveries only (Queue.WEBHOOKS), and the dispatcher that turns documents'
    # final events into them (docflow.indexer.webhooks).
    NOTIFY = "notify"


def queues_of_role(stage: Stage, role: WorkerRole) -> list[Queue]:
    """What a worker of this stage and role consumes (its -Q); empty: the stage has none.

    The document worker keeps the query queue first in its list (`queues_of_stage`):
    the query-only worker is one process per pod, so while it restarts or is rolled
    out a search is still served, waiting at most for one document task (prefetch is
    off: a busy document worker never holds a query another process could run).
    """
    if role is WorkerRole.DOCUMENT:
        return queues_of_stage(stage)
    queue = {WorkerRole.QUERY: QUERY_QUEUE_OF_STAGE, WorkerRole.MAINTENANCE: MAINTENANCE_QUEUE_OF_STAGE,
             WorkerRole.NOTIFY: NOTIFY_QUEUE_OF_STAGE}[role].get(stage)
    return [queue] if queue else []


def pool_of_role(stage: Stage, role: WorkerRole) -> str:
    """Celery's pool for a worker (its --pool). The indexer's document worker runs its
    tasks in threads, so the appends of documents indexed side by side share LanceDB
    commits (docflow.indexer.group_commit; docs/architecture.md, "Group commits"); its
    --concurrency is then threads, not processes. Every other worker forks processes."""
    return "threads" if (stage, role) == (Stage.INDEX, WorkerRole.DOCUMENT) else "prefork"


def roles_of_stage(stage: Stage) -> list[WorkerRole]:
    """The worker roles a stage runs: the document worker, plus one per extra queue."""
    return [role for role in WorkerRole if queues_of_role(stage, role)]


class Task(StrEnum):
    """Stable Celery task names (never derived from module paths): `docflow.<stage>.<what
    it does or acts on>`, the stage being the worker that owns the libraries it needs.

    Stable means never renamed in place: messages already queued, results and dead
    letters carry these strings, and a worker that no longer registers one drops them.
    """

    EXTRACT = "docflow.extract.document"
    # A big PDF's extract fans out: page ranges in parallel, then one merge.
    EXTRACT_RANGE = "docflow.extract.range"
    EXTRACT_MERGE = "docflow.extract.merge"
    EMBED = "docflow.embed.document"
    INDEX = "docflow.index.document"
    # Query-time work, served by the same workers that own the libraries.
    EMBED_QUERY = "docflow.embed.query"
    SEARCH = "docflow.index.search"
    # Every version's vectors of a deleted document (the index's copy of the document).
    DELETE_DOCUMENT = "docflow.index.delete_document"
    # A document's metadata changed (PATCH): rewrite it on the document's indexed chunks.
    UPDATE_METADATA = "docflow.index.update_metadata"
    # Keep one tenant's index healthy (compact, clean old versions, build indexes).
    MAINTAIN = "docflow.index.maintain"
    # One webhook delivery (an event to one registered URL), with its retries.
    DELIVER_WEBHOOK = "docflow.index.deliver_webhook"
    # Re-embedding a tenant (docs/architecture.md, "Re-embedding"): the job's coordinator,
    # one step per message on the maintenance queue; each document's embedding with the
    # embedder's model and its indexing into the new generation; the old generation's
    # table dropped once searches no longer use it.
    REEMBED_TENANT = "docflow.index.reembed_tenant"
    REEMBED_EMBED = "docflow.embed.reembed_document"
    REEMBED_INDEX = "docflow.index.reembed_document"
    DROP_GENERATION = "docflow.index.drop_generation"


STAGE_OF_TASK: dict[Task, Stage] = {
    Task.EXTRACT: Stage.EXTRACT,
    Task.EXTRACT_RANGE: Stage.EXTRACT,
    Task.EXTRACT_MERGE: Stage.EXTRACT,
    Task.EMBED: Stage.EMBED,
    Task.INDEX: Stage.INDEX,
    Task.EMBED_QUERY: Stage.EMBED,
    Task.SEARCH: Stage.INDEX,
    Task.DELETE_DOCUMENT: Stage.INDEX,
    Task.UPDATE_METADATA: Stage.INDEX,
    Task.MAINTAIN: Stage.INDEX,
    Task.DELIVER_WEBHOOK: Stage.INDEX,
    Task.REEMBED_TENANT: Stage.INDEX,
    Task.REEMBED_EMBED: Stage.EMBED,
    Task.REEMBED_INDEX: Stage.INDEX,
    Task.DROP_GENERATION: Stage.INDEX,
}

# Every task runs on a queue of the stage whose libraries it needs: searches on its
# query queue, everything about a document (deletes included) on its document queue.
QUEUE_OF_TASK: dict[Task, Queue] = {
    **{task: QUEUE_OF_STAGE[stage] for task, stage in STAGE_OF_TASK.items()},
    Task.EMBED_QUERY: Queue.QUERY_EMBED,
    Task.SEARCH: Queue.QUERY_INDEX,
    Task.MAINTAIN: Queue.MAINTENANCE,
    Task.DELIVER_WEBHOOK: Queue.WEBHOOKS,
    Task.REEMBED_TENANT: Queue.MAINTENANCE,
    Task.DROP_GENERATION: Queue.MAINTENANCE,
}
TASK_ROUTES: dict[str, dict[str, str]] = {task.value: {"queue": queue.value} for task, queue in QUEUE_OF_TASK.items()}

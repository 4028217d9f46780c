"""/v1/admin: what operators of a Celery pipeline ask first — what is queued, what is
running, and who is consuming. Admin keys only (DOCFLOW_ADMIN_API_KEYS).

Queue numbers come from Redis as KEDA and kombu see them (docflow.shared.queue_stats);
workers answer a Celery broadcast (`inspect`), which waits a short, fixed time for
replies: a worker busy in a long task still answers (its main process does), one
that does not answer within the timeout is not listed. Embedder workers are also asked
what they embed with (their own remote-control command, answered from their settings by
the main process): one more broadcast, to them only, bounded by the same timeout.
"""

from datetime import UTC, datetime
from typing import Any

from celery import Celery
from fastapi import APIRouter
from pydantic import BaseModel, Field

from docflow.gateway.auth import AdminKey
from docflow.gateway.dependencies import Services, ServicesDep
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.embedding_models import EMBEDDER_INSPECT_COMMAND
from docflow.shared.names import STAGE_OF_QUEUE, Stage
from docflow.shared.queue_stats import read_queue_stats

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminKey])

# Long enough for workers on a busy node to answer, short enough for an operator's curl.
INSPECT_TIMEOUT_SECONDS = 1.0


class QueueState(BaseModel):
    name: str = Field(description="The Redis list / Celery queue (KEDA's listName)")
    stage: str
    backlog: int = Field(description="Messages waiting (LLEN), what KEDA scales on")
    in_flight: int = Field(description="Messages delivered to a worker and not yet acknowledged")
    consumers: int = Field(description="Workers that answered the broadcast and consume this queue")
    oldest_message_age_seconds: float | None = Field(
        description="Age of the oldest waiting message; 0 when empty, null when unknown")


class QueuesReport(BaseModel):
    queues: list[QueueState]
    dead_letters: int


class ActiveTask(BaseModel):
    id: str
    name: str | None
    worker_pid: int | None = None
    started_at: datetime | None = None


class EmbedderState(BaseModel):
    provider: str = Field(description="DOCFLOW_EMBEDDER: minilm, openai or hash")
    model: str = Field(description="The model's name, e.g. all-MiniLM-L6-v2")
    runtime: str = Field(description="What computes the vectors: torch, onnx, onnx-int8 (minilm), http, numpy")
    device: str | None = Field(default=None, description="cpu, or cuda for torch on a GPU; null for openai")
    dimensions: int | None = Field(default=None, description="Vector width; null for openai (known from its answers)")
    model_id: str | None = Field(
        default=None, description="The model's identity documents and tables record (provider:model:dimensions)")


class WorkerState(BaseModel):
    name: str
    queues: list[str]
    stages: list[str]
    pool: str | None = Field(default=None, description="Celery's pool: `prefork` (processes) or `threads` (the "
                                                        "indexer's document worker); None if the worker did not say")
    concurrency: int | None = Field(description="Pool processes or threads (None if the worker did not say)")
    active_tasks: int
    active: list[ActiveTask]
    embedder: EmbedderState | None = Field(
        default=None, description="An embedder worker's provider, model and runtime; null for other stages (or an "
                                  "embedder that did not answer in time)")


class WorkersReport(BaseModel):
    workers: list[WorkerState]


def _active_queues(celery: Celery) -> dict[str, list[str]]:
    """Worker name -> the queues it consumes, for every worker that answers in time."""
    replies = celery.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS).active_queues() or {}
    return {name: [queue.get("name") for queue in queues or []] for name, queues in replies.items()}


def _queues_report(services: Services) -> QueuesReport:
    stats = read_queue_stats(services.redis)
    dead_letters = DeadLetterStore(services.redis, services.settings.redis_key_prefix).count()
    consumed = _active_queues(services.celery)
    return QueuesReport(
        queues=[QueueState(name=q.queue, stage=q.stage.value, backlog=q.backlog, in_flight=q.in_flight,
                           consumers=sum(1 for queues in consumed.values() if q.queue in queues),
                           oldest_message_age_seconds=q.oldest_age_seconds)
                for q in stats],
        dead_letters=dead_letters,
    )


def _active_task(info: dict[str, Any]) -> ActiveTask:
    started = info.get("time_start")
    return ActiveTask(id=str(info.get("id")), name=info.get("name"), worker_pid=info.get("worker_pid"),
                      started_at=datetime.fromtimestamp(started, UTC) if started else None)


def _workers_report(services: Services) -> WorkersReport:
    consumed = _active_queues(services.celery)
    if not consumed:
        return WorkersReport(workers=[])
    # The workers are known now: ask them directly and stop waiting once all have answered.
    names = sorted(consumed)
    inspect = services.celery.control.inspect(destination=names, timeout=INSPECT_TIMEOUT_SECONDS,
                                              limit=len(names))
    stats = inspect.stats() or {}
    active = services.celery.control.inspect(destination=names, timeout=INSPECT_TIMEOUT_SECONDS,
                                             limit=len(names)).active() or {}
    embedders = _embedders(services.celery, [name for name in names if Stage.EMBED.value in _stages(consumed[name])])
    workers = []
    for name in names:
        pool = (stats.get(name) or {}).get("pool") or {}
        concurrency = pool.get("max-concurrency")
        running = [_active_task(info) for info in active.get(name) or []]
        workers.append(WorkerState(
            name=name, queues=consumed[name],
            stages=_stages(consumed[name]),
            pool=_pool_kind(pool.get("implementation")),
            concurrency=concurrency if isinstance(concurrency, int) else None,
            active_tasks=len(running), active=running, embedder=embedders.get(name),
        ))
    return WorkersReport(workers=workers)


# Celery's pool classes, by the name `--pool` takes (docflow.shared.names.pool_of_role).
_POOL_KINDS = {"celery.concurrency.prefork:TaskPool": "prefork", "celery.concurrency.thread:TaskPool": "threads"}


def _pool_kind(implementation: object) -> str | None:
    if not isinstance(implementation, str):
        return None
    return _POOL_KINDS.get(implementation, implementation)


def _stages(queues: list[str]) -> list[str]:
    return sorted({STAGE_OF_QUEUE[q].value for q in queues if q in STAGE_OF_QUEUE})


def _embedders(celery: Celery, names: list[str]) -> dict[str, EmbedderState]:
    """What each embedder worker embeds with. Only embedders are asked: another worker
    does not know the command (it would log an error for each call)."""
    if not names:
        return {}
    replies = celery.control.broadcast(EMBEDDER_INSPECT_COMMAND, destination=names, reply=True,
                                       timeout=INSPECT_TIMEOUT_SECONDS, limit=len(names)) or []
    found = {}
    for reply in replies:
        for name, answer in (reply or {}).items():
            try:
                found[name] = EmbedderState.model_validate(answer)
            except ValueError:  # an older worker without the command answers {"error": ...}
                pass
    return found


# Plain functions: FastAPI runs them in its thread pool, as the broadcasts block.
@router.get("/queues", response_model=QueuesReport)
def queues(services: ServicesDep) -> QueuesReport:
    """Per stage queue: backlog, in-flight messages, consumers, oldest message age."""
    return _queues_report(services)


@router.get("/workers", response_model=WorkersReport)
def workers(services: ServicesDep) -> WorkersReport:
    """Live workers: their queues, pool size and the tasks they are running."""
    return _workers_report(services)

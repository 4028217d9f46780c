"""Building and enqueuing Celery chains, by task *name* only.

The gateway never imports a stage's code: signatures are made from the names in
`docflow.shared.names`, and the shared `TASK_ROUTES` put each one on its stage's
queue. Each stage task gets an id derived from the pipeline's task id, so the
gateway can later report every stage's state without storing anything per stage.
"""

import time
import uuid
from typing import Any

import structlog
from celery import Celery, chain, states
from celery.result import AsyncResult
from redis.client import PubSub

from docflow.gateway.schemas import StageState
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import BULK_QUEUE_OF_STAGE, Stage, Task
from docflow.shared.pipeline_shape import DOCUMENT_PIPELINE
from docflow.shared.embedding_models import EmbeddingModelMismatch
from docflow.shared.search import SearchQuery, UnsupportedSearchMode

log = structlog.get_logger(__name__)

# The document pipeline's (stage, task) in order (docflow.shared.pipeline_shape); each
# stage returns the message for the next.
DOCUMENT_STAGES: tuple[tuple[Stage, Task], ...] = tuple((step.stage, step.task) for step in DOCUMENT_PIPELINE)
_FIRST_POLL_SECONDS = 0.02
_MAX_POLL_SECONDS = 0.25


class SearchTimedOut(Exception):
    """No search result within the configured time."""


class SearchFailed(Exception):
    """A query-time task failed on its worker; the message says which and why."""


class SearchModeUnsupported(SearchFailed):
    """The indexer's vector store cannot serve the requested mode (the caller's fault: 400)."""


class SearchModelMismatch(SearchFailed):
    """The query was embedded with another model than the tenant's index holds (409)."""


def new_task_id() -> str:
    return uuid.uuid4().hex


def stage_task_id(task_id: str, stage: Stage) -> str:
    return f"{task_id}.{stage.value}"


def _lane(stage: Stage, bulk: bool) -> dict[str, str]:
    """A stage message's queue option: the bulk lane's, or none (the task's route)."""
    return {"queue": BULK_QUEUE_OF_STAGE[stage].value} if bulk else {}


def overall_state(stage_states: list[str]) -> str:
    """The state of the first stage that has not succeeded (SUCCESS once all have).

    A chain stops at its first failure, so that stage is also where a failure shows.
    """
    return next((state for state in stage_states if state != states.SUCCESS), states.SUCCESS)


class Pipeline:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def enqueue_document(self, message: PipelineMessage, task_id: str, bulk: bool = False) -> None:
        # Not logged here: each caller's own line (document accepted, reprocessing,
        # recovered) already says it, with the task id; a second line per upload cost
        # as much CPU as the record's Redis write.
        self._send_document(message, task_id, Stage.EXTRACT, bulk)

    def resume_document(self, message: PipelineMessage, task_id: str, from_stage: Stage,
                        bulk: bool = False) -> None:
        """Enqueue the rest of a document's chain from `from_stage`, whose message already
        carries the keys of what the earlier stages stored."""
        self._send_document(message, task_id, from_stage, bulk)
        log.info("pipeline resumed", document_id=message.document_id, task_id=task_id,
                 version=message.version, stage=from_stage.value, bulk=bulk)

    def _send_document(self, message: PipelineMessage, task_id: str, from_stage: Stage, bulk: bool) -> None:
        """Publish the stages from `from_stage` on as one chain (a replay resumes where its
        run failed).

        This is the message `celery.chain(...).apply_async()` publishes -- the first
        stage, with the later ones in its `chain` option, last first, each worker
        sending the next -- built and sent with Celery's own `app.amqp` calls: the
        canvas route clones and freezes every signature, repr()s the arguments and goes
        through `send_task`'s generic option handling on every upload, which together
        cost more CPU than the rest of the upload. The arguments' repr (what monitoring
        tools show) is the claim check's identity, not the whole message.

        `bulk` puts every stage on its bulk lane: each later signature names its queue,
        which the worker that sends it uses over the task's route (docs/architecture.md,
        "Fair sharing"). The document lane's messages name none: its route is the queue.
        """
        first = [stage for stage, _ in DOCUMENT_STAGES].index(from_stage)
        (stage, task), *later = DOCUMENT_STAGES[first:]
        first_id = stage_task_id(task_id, stage)
        remaining = [self.celery.signature(later_task.value, task_id=stage_task_id(task_id, later_stage),
                                           **_lane(later_stage, bulk))
                     for later_stage, later_task in reversed(later)]
        amqp = self.celery.amqp
        task_message = amqp.create_task_message(
            first_id, task.value, [message.model_dump()], {}, chain=remaining,
            root_id=first_id, reply_to=self.celery.thread_oid, ignore_result=None,
            argsrepr=f"(document_id={message.document_id!r}, version={message.version})", kwargsrepr="{}",
        )
        # A producer from the app's pool keeps its Redis connection between uploads; the
        # route is the shared TASK_ROUTES entry (the stage's queue). A publish retries and
        # reconnects by the app's task_publish_retry_policy, then raises the connection
        # error, which the caller undoes the upload for and answers with a 503.
        #
        # declare=(): a Redis queue is its list, which LPUSH creates, and the anonymous
        # exchange Celery publishes to pushes straight onto it; kombu's per-publish
        # declare (cached after the first) still copied and re-bound the queue and its
        # exchange on every upload. Workers declare their own queues when they start.
        route = amqp.router.route(_lane(stage, bulk), task.value)
        with self.celery.producer_or_acquire() as producer:
            amqp.send_task_message(producer, task.value, task_message, declare=(), **route)

    def send(self, task_name: str, args: list[Any]) -> str:
        """Enqueue one task by name (routed to its stage's queue by TASK_ROUTES)."""
        return self.celery.signature(task_name, args=args).apply_async().id

    def enqueue_delete_document(self, tenant: str, document_id: str) -> str:
        result = self.celery.signature(Task.DELETE_DOCUMENT.value, args=[tenant, document_id]).apply_async()
        log.info("vector deletion enqueued", document_id=document_id, task_id=result.id)
        return result.id

    def stage_states(self, task_id: str) -> list[StageState]:
        return [
            StageState(stage=stage.value, task_id=stage_task_id(task_id, stage),
                       state=AsyncResult(stage_task_id(task_id, stage), app=self.celery).state)
            for stage, _ in DOCUMENT_STAGES
        ]

    def search(self, query: SearchQuery, timeout: float, model: str | None = None) -> Any:
        """Embed the query on the embedder (the modes that need a vector), search on the
        indexer, wait for the hits. `model`: the model of the tenant's active index, when
        known (docs/architecture.md, "Re-embedding"), for the embedder to embed with."""
        # Expiring the tasks at the deadline keeps workers from doing work whose caller
        # has already been told 504.
        search_task = self.celery.signature(Task.SEARCH.value, kwargs={"query": query.model_dump(mode="json")},
                                            ).set(expires=timeout, task_id=new_task_id())
        if query.mode.needs_vector:
            # The embedder's result (the vector) becomes the search task's first argument.
            embed_task = self.celery.signature(Task.EMBED_QUERY.value, args=[query.text],
                                               kwargs={"model": model} if model else {}).set(
                expires=timeout, task_id=new_task_id())
            canvas, ids = chain(embed_task, search_task), [embed_task.id, search_task.id]
        else:
            canvas, ids = search_task.clone(args=(None,)), [search_task.id]
        # Subscribed before the tasks are sent: the workers PUBLISH each result as they
        # store it, so the wait ends the moment one arrives instead of at the next poll.
        backend = self.celery.backend
        with backend.client.pubsub(ignore_subscribe_messages=True) as results:
            results.subscribe(*(backend.get_key_for_task(task_id) for task_id in ids))
            result = canvas.apply_async()
            steps = [(Task.EMBED_QUERY.value, result.parent)] if query.mode.needs_vector else []
            steps.append((Task.SEARCH.value, result))
            try:
                return _wait_for_chain(result, steps, timeout, results)
            finally:
                _forget_quietly(result)


def _wait_for_chain(result: AsyncResult, steps: list[tuple[str, AsyncResult]], timeout: float,
                    published: PubSub) -> Any:
    """Read the chain's steps (plain GETs) until the last succeeds, one fails, or time
    runs out; between reads, wait for a result to be published on `published`.

    The reads decide, the messages only wake the wait (not `result.get()`: it relies on
    a pub/sub consumer shared per thread that our producer backend never starts). The
    wait is bounded by a doubling pause too, so a message lost to a reconnect costs at
    most one pause.
    """
    deadline = time.monotonic() + timeout
    pause = _FIRST_POLL_SECONDS
    while True:
        for task_name, step in steps:
            state = step.state
            if state in states.PROPAGATE_STATES:
                if state == states.FAILURE and _failed_with(step.result, UnsupportedSearchMode):
                    raise SearchModeUnsupported(_reason(step.result))
                if state == states.FAILURE and _failed_with(step.result, EmbeddingModelMismatch):
                    raise SearchModelMismatch(_reason(step.result))
                raise SearchFailed(_describe_failure(task_name, step, state))
        if result.state == states.SUCCESS:
            return result.result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SearchTimedOut(f"no search result within {timeout:g} s")
        published.get_message(timeout=min(pause, remaining))
        pause = min(pause * 2, _MAX_POLL_SECONDS)


def _forget_quietly(result: AsyncResult) -> None:
    """Delete the search results now instead of keeping them for `result_expires`."""
    try:
        if result.ready() or (result.parent is not None and result.parent.ready()):
            result.forget()  # forgets the embed step too
    except Exception as exc:  # housekeeping must never change the answer
        log.debug("could not forget search results", error=str(exc))


def _failed_with(error: Any, kind: type[Exception]) -> bool:
    """By name: Celery rebuilds a worker's exception when it can, and otherwise hands back
    a wrapper that keeps the class's name."""
    return kind.__name__ in (type(error).__name__, getattr(error, "exc_cls_name", None))


def _reason(error: Any) -> str:
    """A pipeline error's message without its `code: ` prefix."""
    message = getattr(error, "message", None) or " ".join(map(str, getattr(error, "exc_args", ()) or (error,)))
    code, _, rest = message.partition(": ")
    return rest if rest and code.isidentifier() and code.islower() else message


def _describe_failure(task_name: str, step: AsyncResult, state: str) -> str:
    if state == states.REVOKED:
        return f"{task_name} was revoked or expired before it ran"
    error = step.result
    return f"{task_name} failed: {type(error).__name__}: {error}"

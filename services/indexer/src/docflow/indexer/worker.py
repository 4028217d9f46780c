"""The indexer's Celery worker:

    celery -A docflow.indexer.worker worker -Q docflow.query.index,docflow.index,docflow.bulk.index \
        --pool threads --concurrency 8                                             # documents
    celery -A docflow.indexer.worker worker -Q docflow.query.index                 # query-only
    celery -A docflow.indexer.worker worker -Q docflow.maintenance.index           # maintenance
    celery -A docflow.indexer.worker worker -Q docflow.webhooks                    # notify (webhooks)

The document worker takes the query queue first, as a fallback for the query-only one
(`docflow.shared.names.queues_of_role`, which `make run` and the chart start them with).

The vector store is opened once per worker process, after fork (`worker_process_init`),
never in the prefork parent: a LanceDB connection opened in the parent hung its
children forever (docs/architecture.md). The document worker's threads pool forks
nothing and sends no such signal: its threads share the store, opened by the first task
(their appends meet in its group commits). Code that runs outside a worker (tests)
opens it lazily on first use too.
"""

import os
import threading

import structlog
from celery import signals

from docflow.indexer.stores import VectorStore, open_vector_store
from docflow.shared.names import Queue, Stage, Task
from docflow.shared.settings import get_settings
from docflow.shared.worker import create_worker_app

log = structlog.get_logger(__name__)

_store: VectorStore | None = None
# The document worker's threads share one store (and its group commits): opened once.
_opening = threading.Lock()


def get_store() -> VectorStore:
    """This process's vector store, opened on first use."""
    global _store
    if _store is None:
        with _opening:
            if _store is None:
                settings = get_settings()
                _store = open_vector_store(settings)
                log.info("vector store opened", backend=settings.vector_store, pid=os.getpid())
    return _store


def reset_store() -> None:
    """Forget this process's store (tests change settings between cases)."""
    global _store
    _store = None


def open_store() -> None:
    """Open the store as a pool process starts, so the first task does not pay for it.

    A failure here must not kill the process (the pool would restart it in a loop):
    it is logged, and the first task opens the store again, where an unreachable
    store is a TransientError that the task retries with backoff.
    """
    try:
        get_store()
    except Exception as exc:
        log.warning("vector store not opened at process start; will retry on first task", error=str(exc))


app = create_worker_app(Stage.INDEX, include=["docflow.indexer.tasks", "docflow.indexer.webhooks",
                                                       "docflow.indexer.reembedding"],
                        on_process_start=open_store)
# Maintenance runs on its own queue and worker, with limits of its own: compacting or
# building a vector index over a big table takes minutes, not the index stage's seconds.
_settings = get_settings()
app.conf.task_annotations[Task.MAINTAIN.value] = {"soft_time_limit": _settings.maintain_soft_time_limit,
                                                  "time_limit": _settings.maintain_time_limit}


# The notify worker (-Q docflow.webhooks, WorkerRole.NOTIFY) also runs the webhook
# dispatcher, a thread of its main process started once the pool has forked (a thread
# running before a fork would leave the children its locks), stopped at shutdown.
_dispatcher_stop = None


def _consumes_webhooks(sender) -> bool:
    consumer_app = getattr(sender, "app", None)
    if consumer_app is not app:
        return False
    return Queue.WEBHOOKS.value in app.amqp.queues.consume_from


@signals.worker_ready.connect(weak=False)
def _start_dispatcher(sender=None, **_kwargs) -> None:
    global _dispatcher_stop
    if not _consumes_webhooks(sender) or _dispatcher_stop is not None:
        return
    from docflow.indexer import webhooks

    webhooks.zero_series()
    _, _dispatcher_stop = webhooks.start_dispatcher(app, get_settings())


@signals.worker_shutdown.connect(weak=False)
def _stop_dispatcher(**_kwargs) -> None:
    if _dispatcher_stop is not None:
        _dispatcher_stop.set()

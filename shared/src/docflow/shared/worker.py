"""Building a stage's Celery worker app: logging, context binding, metrics, per-process setup."""

import os
from collections.abc import Callable

import structlog
from celery import Celery, signals
from celery.app import trace

from docflow.shared import worker_metrics
from docflow.shared.celery_app import create_celery_app, worker_result_backend
from docflow.shared.logging import configure_logging
from docflow.shared.names import SERVICE_OF_STAGE, Stage
from docflow.shared.settings import get_settings
from docflow.shared.tracing import REQUEST_ID, header

SUCCESS_LOG_FORMAT = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"


def create_worker_app(stage: Stage, include: list[str],
                      on_process_start: Callable[[], None] | None = None) -> Celery:
    """The Celery app of one stage's worker.

    `on_process_start` runs in every pool process after fork: models and vector-store
    connections must be opened there, never in the parent (forking a multithreaded
    runtime deadlocks its children).
    """
    settings = get_settings()
    configure_logging(SERVICE_OF_STAGE[stage], settings.log_level)
    app = create_celery_app(SERVICE_OF_STAGE[stage], settings)
    app.conf.include = include
    app.conf.result_backend = worker_result_backend(settings)
    # Messages Celery refuses (not JSON, malformed, unknown task) become dead letters.
    app.conf.worker_consumer = "docflow.shared.delivery:DeadLetteringConsumer"

    # Celery's success line ends with the task's return value: every search's chunk texts
    # (indexer) and every query's vector (embedder), at INFO. Document contents must not
    # reach the logs, so the line keeps the name, id and run time only. The tracer reads
    # this module global each time it logs; set here, before the pool forks, every child
    # inherits it. (The "received" line carries no arguments in its format either.)
    trace.LOG_SUCCESS = SUCCESS_LOG_FORMAT

    @signals.setup_logging.connect(weak=False)
    def _keep_our_logging(**_kwargs) -> None:
        """Connected so Celery does not replace the structlog configuration."""

    @signals.task_prerun.connect(weak=False)
    def _bind_task(task_id=None, task=None, **_kwargs) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task_id=task_id, task_name=task.name if task else None)
        # The upload's correlation id (docflow.shared.tracing): on every line of this run.
        request_id = header(task.request, REQUEST_ID) if task else None
        if request_id:
            structlog.contextvars.bind_contextvars(request_id=request_id)

    @signals.task_postrun.connect(weak=False)
    def _unbind_task(**_kwargs) -> None:
        structlog.contextvars.clear_contextvars()

    @signals.worker_init.connect(weak=False)
    def _yield_cpu(**_kwargs) -> None:
        """In the main process before the pool forks, so every pool process inherits it
        (raising one's niceness needs no privilege, in a container too)."""
        if settings.worker_nice:
            os.nice(settings.worker_nice)

    worker_metrics.install(app, stage)
    if on_process_start is not None:
        signals.worker_process_init.connect(lambda **_: on_process_start(), weak=False)
    return app

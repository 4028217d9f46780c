"""Task metrics and the /metrics endpoint of a worker, wired once through Celery signals.

`install(app, stage)` is called by `create_worker_app`, so every stage's worker records
the same task metrics without a line of its own. Which process does what:

- main process, `worker_init` (before the pool forks): empty PROMETHEUS_MULTIPROC_DIR
  and start the HTTP server on DOCFLOW_METRICS_HOST:DOCFLOW_METRICS_PORT. Its thread
  only reads value files and answers sockets; it holds no lock a forked child needs
  (logging's locks are re-initialised after fork by Python itself).
- main process, `worker_ready`: `docflow_worker_up` = 1, and every task of this
  worker's stage gets its series at zero, so rates read 0 rather than nothing.
- pool children, `task_prerun`/`task_postrun`/`task_success`/`task_retry`/
  `task_failure`: the task counters, histograms and in-progress gauge. (A hard time
  limit kills the child; Celery then sends `task_failure` from the main process.)
- pool children, `worker_process_shutdown`: `mark_process_dead`, so a child's share of
  the live gauges leaves with it.
"""

import time
from datetime import datetime

import structlog
from celery import Celery, signals, states
from celery.exceptions import Ignore

from docflow.shared import metrics
from docflow.shared.delivery import is_redis_unreachable
from docflow.shared.errors import ErrorCode
from docflow.shared.names import QUEUE_OF_STAGE, Stage
from docflow.shared.settings import get_settings
from docflow.shared.stage_task import classify
from docflow.shared.tracing import ENQUEUED_AT, header

log = structlog.get_logger(__name__)

# The message of the Ignore that `Task.replace` raises (celery/app/task.py).
REPLACED = "Replaced by new task"


def _eta_timestamp(request) -> float | None:
    eta = getattr(request, "eta", None)
    if not eta:
        return None
    try:
        return eta.timestamp() if isinstance(eta, datetime) else datetime.fromisoformat(str(eta)).timestamp()
    except ValueError:
        return None


def queue_wait_seconds(request, now: float) -> float | None:
    """Seconds from publication — or from the ETA of a delayed retry — to start."""
    enqueued_at = header(request, ENQUEUED_AT)
    if enqueued_at is None:
        return None
    ready_at = max(float(enqueued_at), _eta_timestamp(request) or 0.0)
    return max(0.0, now - ready_at)


def start_metrics_server(host: str, port: int) -> bool:
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=metrics.serving_registry())
    except OSError as exc:
        # The worker still works; Kubernetes' probes on this port will say so loudly.
        log.error("metrics server not started", host=host, port=port, error=str(exc))
        return False
    log.info("serving metrics", host=host, port=port,
             multiprocess_dir=str(metrics.multiprocess_dir() or ""))
    return True


def install(app: Celery, stage: Stage) -> None:
    queue = QUEUE_OF_STAGE[stage].value
    worker_labels = (stage.value, queue)
    started_at: dict[str, float] = {}  # task id -> monotonic start, in the process running it

    def ours(sender) -> bool:
        """Signals are global: react only to the worker of this app (tests start others)."""
        return getattr(sender, "app", None) is app

    @signals.worker_init.connect(weak=False)
    def _serve_metrics(sender=None, **_kwargs) -> None:
        if not ours(sender):
            return
        if metrics.multiprocess_dir() is None:
            log.warning("PROMETHEUS_MULTIPROC_DIR is not set: /metrics shows the main process only, "
                        "not the tasks its pool children run")
        else:
            removed = metrics.clear_multiprocess_dir()
            log.info("metrics directory emptied", removed_files=removed)
        settings = get_settings()
        start_metrics_server(settings.metrics_host, settings.metrics_port)
        concurrency = getattr(sender, "concurrency", None)
        if isinstance(concurrency, int):
            metrics.WORKER_CONCURRENCY.labels(*worker_labels).set(concurrency)

    @signals.worker_ready.connect(weak=False)
    def _up(sender=None, **_kwargs) -> None:
        if not ours(sender):
            return
        metrics.WORKER_UP.labels(*worker_labels).set(1)
        for name in sorted(app.tasks):
            if name.startswith("docflow."):
                labels = (stage.value, name)
                for counter in (metrics.TASKS_STARTED, metrics.TASKS_SUCCEEDED, metrics.TASKS_RETRIED,
                                metrics.TASKS_SKIPPED, metrics.TASK_SECONDS, metrics.QUEUE_WAIT_SECONDS):
                    counter.labels(*labels)
                metrics.TASKS_IN_PROGRESS.labels(*labels).set(0)

    @signals.worker_shutdown.connect(weak=False)
    def _down(sender=None, **_kwargs) -> None:
        if ours(sender):
            metrics.WORKER_UP.labels(*worker_labels).set(0)

    @signals.worker_process_shutdown.connect(weak=False)
    def _child_exits(pid=None, **_kwargs) -> None:
        path = metrics.multiprocess_dir()
        if path is not None and pid is not None:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(pid, str(path))

    @signals.task_prerun.connect(weak=False)
    def _task_started(task_id=None, task=None, **_kwargs) -> None:
        if task is None or task.app is not app:
            return
        labels = (stage.value, task.name)
        now = time.time()
        started_at[task_id] = time.monotonic()
        metrics.TASKS_STARTED.labels(*labels).inc()
        metrics.TASKS_IN_PROGRESS.labels(*labels).inc()
        wait = queue_wait_seconds(task.request, now)
        if wait is not None:
            metrics.QUEUE_WAIT_SECONDS.labels(*labels).observe(wait)

    @signals.task_postrun.connect(weak=False)
    def _task_ended(task_id=None, task=None, state=None, retval=None, **_kwargs) -> None:
        if task is None or task.app is not app:
            return
        labels = (stage.value, task.name)
        metrics.TASKS_IN_PROGRESS.labels(*labels).dec()
        began = started_at.pop(task_id, None)
        if began is not None:
            metrics.TASK_SECONDS.labels(*labels).observe(time.monotonic() - began)
        if state == states.IGNORED:
            # `Task.replace` (a fan-out) also ends in Ignore, but its work goes on.
            replaced = isinstance(retval, Ignore) and str(retval) == REPLACED
            (metrics.TASKS_SUCCEEDED if replaced else metrics.TASKS_SKIPPED).labels(*labels).inc()

    @signals.task_success.connect(weak=False)
    def _task_succeeded(sender=None, **_kwargs) -> None:
        if sender is not None and sender.app is app:
            metrics.TASKS_SUCCEEDED.labels(stage.value, sender.name).inc()

    @signals.task_retry.connect(weak=False)
    def _task_retried(sender=None, **_kwargs) -> None:
        if sender is not None and sender.app is app:
            metrics.TASKS_RETRIED.labels(stage.value, sender.name).inc()

    @signals.task_failure.connect(weak=False)
    def _task_failed(sender=None, exception=None, **_kwargs) -> None:
        if sender is None or sender.app is not app:
            return
        if exception is not None and is_redis_unreachable(exception):
            # Not the task's failure: the message is requeued and the run repeated.
            metrics.TASKS_RETRIED.labels(stage.value, sender.name).inc()
            return
        code = classify(exception)[0] if exception is not None else ErrorCode.INTERNAL_ERROR
        metrics.TASKS_FAILED.labels(stage.value, sender.name, str(getattr(code, "value", code))).inc()

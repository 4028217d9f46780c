"""The workers' Prometheus metrics, and serving them from a prefork pool.

Every name starts with `docflow_`; labels are low-cardinality by construction — a
stage, a task name, an error code, a content type, a provider or store name, a
final status — never a document id or a tenant. docs/metrics.md lists them all.

Prefork workers run tasks in child processes, so these metrics use prometheus_client's
multiprocess mode (docs/architecture.md): `PROMETHEUS_MULTIPROC_DIR` is set before Python starts
(the Helm chart and the local stack set it), each process writes its values to files
there, and the worker's main process serves the sum over all of them. Two rules
follow from how that mode works:

- The directory is emptied when the worker starts (`clear_multiprocess_dir`), or a
  restarted container would add its predecessor's counts to its own.
- Every metric here has labels. prometheus_client opens a process's value file on
  the first value it creates; an unlabelled metric would create one at import,
  before the directory is emptied, and the main process would then write to a file
  that no longer exists. Labelled metrics create nothing until `.labels()` is called.

Gauges name their multiprocess mode: `livesum`/`livemax` count only live processes,
so a pool child's share disappears when it exits (`mark_process_dead`).
"""

import glob
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from docflow.shared.pipeline_shape import DocumentStatus

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The workers' metrics are kept out of prometheus_client's default registry, so a
# process that merely imports this module (the gateway, a test) exports none of them.
REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds. Tasks run from milliseconds (a text file) to the hard time limit (minutes).
TASK_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
WAIT_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DOCUMENT_SECONDS_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

# --- tasks (recorded by Celery signal handlers, docflow.shared.worker_metrics) ----------
TASK_LABELS = ("stage", "task")
TASKS_STARTED = Counter("docflow_tasks_started_total", "Tasks a worker started running",
                        TASK_LABELS, registry=REGISTRY)
TASKS_SUCCEEDED = Counter("docflow_tasks_succeeded_total", "Tasks that returned a result",
                          TASK_LABELS, registry=REGISTRY)
TASKS_FAILED = Counter("docflow_tasks_failed_total", "Tasks that failed for good, by error code",
                       (*TASK_LABELS, "error_code"), registry=REGISTRY)
TASKS_RETRIED = Counter("docflow_tasks_retried_total",
                        "Task runs that ended in a retry (or a requeue: Redis unreachable)",
                        TASK_LABELS, registry=REGISTRY)
TASKS_SKIPPED = Counter("docflow_tasks_skipped_total",
                        "Task runs that stopped because their document was deleted, reprocessed, "
                        "cancelled or already final", TASK_LABELS, registry=REGISTRY)
TASK_SECONDS = Histogram("docflow_task_duration_seconds", "Run time of a task, start to end",
                         TASK_LABELS, buckets=TASK_SECONDS_BUCKETS, registry=REGISTRY)
QUEUE_WAIT_SECONDS = Histogram("docflow_task_queue_wait_seconds",
                               "Time from publishing a task (or its ETA) to a worker starting it",
                               TASK_LABELS, buckets=WAIT_SECONDS_BUCKETS, registry=REGISTRY)
TASKS_IN_PROGRESS = Gauge("docflow_tasks_in_progress", "Tasks running right now",
                          TASK_LABELS, multiprocess_mode="livesum", registry=REGISTRY)

# --- the worker itself (its main process) -----------------------------------------------
WORKER_LABELS = ("stage", "queue")
WORKER_UP = Gauge("docflow_worker_up", "1 while the worker consumes its queue",
                  WORKER_LABELS, multiprocess_mode="livemax", registry=REGISTRY)
WORKER_CONCURRENCY = Gauge("docflow_worker_concurrency", "Pool processes of the worker",
                           WORKER_LABELS, multiprocess_mode="livemax", registry=REGISTRY)

# --- work done (one line each in the services' code) --------------------------------------
PAGES_EXTRACTED = Counter("docflow_pages_extracted_total",
                          "Pages read from documents (an image frame is a page; a text file is one)",
                          ["content_type"], registry=REGISTRY)
PAGES_OCR = Counter("docflow_pages_ocr_total",
                    "Pages read by OCR: PDF pages without a text layer and image frames",
                    ["reader"], registry=REGISTRY)
# A document by URL: every fetch attempt (a retried one counts again), by outcome: `ok`
# or its url_* error code; the seconds from the first request to the last byte.
URL_FETCHES = Counter("docflow_url_fetches_total", "Fetches of documents submitted by URL, by outcome",
                      ["outcome"], registry=REGISTRY)
URL_FETCH_SECONDS = Histogram("docflow_url_fetch_duration_seconds",
                              "Time to fetch a document submitted by URL (redirects included)",
                              ["outcome"], buckets=TASK_SECONDS_BUCKETS, registry=REGISTRY)
CHUNKS_PRODUCED = Counter("docflow_chunks_produced_total", "Chunks the extractor wrote",
                          ["content_type"], registry=REGISTRY)
EMBEDDINGS_COMPUTED = Counter("docflow_embeddings_computed_total", "Chunk embeddings computed",
                              ["provider", "runtime"], registry=REGISTRY)
VECTORS_UPSERTED = Counter("docflow_vectors_upserted_total", "Vectors written to the vector store",
                           ["store"], registry=REGISTRY)

# --- the pipeline: recorded where a document's status becomes final --------------------------
DOCUMENTS_FINISHED = Counter("docflow_documents_finished_total", "Documents that reached a final status",
                             ["status"], registry=REGISTRY)
DOCUMENT_SECONDS = Histogram("docflow_document_processing_seconds",
                             "End-to-end latency of a completed document: accepted to completed",
                             ["content_type"], buckets=DOCUMENT_SECONDS_BUCKETS, registry=REGISTRY)


def document_finished(status: str, content_type: str, accepted_at: float | None, now: float) -> None:
    """Count a document that became final; time it when it completed.

    Call it only when the status write was applied, so a redelivered twin of the
    same task does not count the document twice.
    """
    DOCUMENTS_FINISHED.labels(status).inc()
    if status == DocumentStatus.COMPLETED and accepted_at is not None:
        DOCUMENT_SECONDS.labels(content_type).observe(max(0.0, now - float(accepted_at)))


# --- multiprocess mode ------------------------------------------------------------------------
def multiprocess_dir() -> Path | None:
    path = os.environ.get(MULTIPROC_DIR_ENV)
    return Path(path) if path else None


def clear_multiprocess_dir() -> int:
    """Empty the directory of a previous run's value files (the worker's main process
    calls this at start, before any value is written). Returns how many were removed."""
    path = multiprocess_dir()
    if path is None:
        return 0
    path.mkdir(parents=True, exist_ok=True)
    removed = 0
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_processes(path: Path) -> list[int]:
    """`mark_process_dead` for pool children that died without saying so.

    A child killed by the hard time limit or the OOM killer never runs its exit hook,
    and its `livesum` share (a task in progress) would be reported forever.
    """
    dead = set()
    for file in glob.glob(str(path / "gauge_live*_*.db")):
        pid_text = Path(file).stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            dead.add(int(pid_text))
    for pid in dead:
        mark_process_dead(pid, str(path))
    return sorted(dead)


class LiveProcessesCollector(MultiProcessCollector):
    """The sum over every process's files, after forgetting processes that are gone."""

    def collect(self):
        forget_dead_processes(Path(self._path))
        return super().collect()


def serving_registry() -> CollectorRegistry:
    """What the worker's /metrics serves: every process's values in multiprocess mode,
    else (a worker started without PROMETHEUS_MULTIPROC_DIR) this process's own."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    LiveProcessesCollector(registry, str(path))
    return registry

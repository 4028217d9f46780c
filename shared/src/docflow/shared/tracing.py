"""What travels in every Celery message's headers besides the task: who asked, and when.

Three headers, stamped by one `before_task_publish` handler that every producer
installs (the gateway's producer and each worker, which publishes the next chain
step, retries and any sub-task; `create_celery_app` installs it):

- `request_id`: the correlation id of the upload — the gateway's `X-Request-ID` (taken
  from the caller or made up) — copied from the running task onto every message it
  publishes, so it reaches all three stages and is bound to every log line there.
- `accepted_at`: when the root message was published (epoch seconds), copied the
  same way: the indexer measures a document's end-to-end latency from it (it also
  covers reprocessing, whose record keeps the original `created_at`).
- `enqueued_at`: when *this* message was published, stamped afresh on every publish
  (a retry re-sends its old headers): the queue wait-time histogram and the age of
  the oldest waiting message are measured from it.

Celery keeps headers it does not know in `task.request` (and `task.request.headers`),
so a worker reads them back with `header()`.
"""

import time
import uuid
from typing import Any

import structlog
from celery import current_task, signals

REQUEST_ID = "request_id"
ACCEPTED_AT = "accepted_at"
ENQUEUED_AT = "enqueued_at"
# Copied from the running task onto whatever it publishes.
PROPAGATED = (REQUEST_ID, ACCEPTED_AT)


def header(request: Any, name: str) -> Any:
    """A docflow header of a task request (None if the message did not carry it)."""
    if request is None:
        return None
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def _running_request() -> Any:
    # `current_task` is a proxy: falsy when no task runs in this thread (the gateway).
    if not current_task or current_task.request.called_directly:
        return None
    return current_task.request


def stamp_headers(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    """The `before_task_publish` handler: fills the headers of the message in place."""
    if headers is None:
        return
    now = time.time()
    request = _running_request()
    for name in PROPAGATED:
        inherited = header(request, name)
        if inherited is not None:
            headers[name] = inherited
    if headers.get(REQUEST_ID) is None:
        # A root publish (the gateway): the HTTP request's id is bound to the log context.
        bound = structlog.contextvars.get_contextvars().get(REQUEST_ID)
        headers[REQUEST_ID] = bound or uuid.uuid4().hex
    headers.setdefault(ACCEPTED_AT, now)
    headers[ENQUEUED_AT] = now


def install_publish_hook() -> None:
    """Connect `stamp_headers` once per process (idempotent)."""
    signals.before_task_publish.connect(stamp_headers, weak=False, dispatch_uid="docflow.stamp_headers")

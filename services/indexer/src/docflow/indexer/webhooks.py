"""Webhook deliveries: the dispatcher and the delivery task of the indexer's `notify` worker.

    celery -A docflow.indexer.worker worker -Q docflow.webhooks     # WorkerRole.NOTIFY

**Dispatcher** (a thread of the notify worker's main process, started once the pool is
up): reads the global notifications stream (docflow.shared.webhooks.NOTIFICATIONS_KEY,
appended by the status store in the script that makes a document final) as a member of
the consumer group DISPATCH_GROUP, and turns each entry into one `Task.DELIVER_WEBHOOK`
per webhook of the tenant that asked for the event (and, when the document was the
last of its batch to become final, `batch.completed` ones). The entry is acknowledged
only after its deliveries are enqueued; an entry a dead dispatcher held is claimed by
another after DOCFLOW_WEBHOOK_DISPATCH_RECLAIM_SECONDS (XAUTOCLAIM). At least once: a
delivery's `webhook-id` is derived from the entry and the webhook, so one handled
twice reaches the receiver with the same id.

**Delivery** (`deliver_webhook`, on Queue.WEBHOOKS): one signed POST (Standard Webhooks:
`webhook-id`, `webhook-timestamp`, `webhook-signature`, signed by the `standardwebhooks`
library with the webhook's secret), bounded in time (DOCFLOW_WEBHOOK_CONNECT_TIMEOUT_SECONDS,
DOCFLOW_WEBHOOK_TIMEOUT_SECONDS), to an address checked by docflow.shared.url_safety
and pinned (the name is resolved once per try, the connection goes to the checked
address, `Host` and TLS's SNI keep the name). A redirect is followed with the same
POST, checked the same way, at most DOCFLOW_FETCH_MAX_REDIRECTS. A 2xx is delivered;
a connection error, timeout or any other status is retried with exponential backoff
and full jitter (Celery retry with a countdown), the same `webhook-id` each time, a
new timestamp and signature, up to DOCFLOW_WEBHOOK_MAX_ATTEMPTS tries; after the last
the delivery is dead-lettered (GET /v1/admin/dead-letters; replay re-sends it with its
id). A URL whose address is now refused is not retried (it will not change by waiting).
A webhook deleted meanwhile drops its pending deliveries.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpx
import redis
import structlog
from celery import Celery
from standardwebhooks import Webhook as Signer

from docflow.indexer.metrics import WEBHOOK_ATTEMPT_SECONDS as ATTEMPT_SECONDS
from docflow.indexer.metrics import WEBHOOK_DELIVERIES as DELIVERIES
from docflow.indexer.metrics import WEBHOOK_EVENTS_DISPATCHED as DISPATCHED
from docflow.indexer.metrics import WEBHOOK_OUTCOMES as OUTCOMES
from docflow.indexer.worker import app
from docflow.shared.errors import ErrorCode, PermanentError, TransientError
from docflow.shared.names import Queue, Task
from docflow.shared.pipeline_shape import FINAL_STATUSES, DocumentStatus
from docflow.shared.redis_connection import redis_client
from docflow.shared.settings import Settings
from docflow.shared.stage_task import DocflowTask
from docflow.shared.status import record_key
from docflow.shared.url_safety import (ResolutionFailed, Resolver, UrlRefused, parse_url, resolve_checked,
                                       system_resolver)
from docflow.shared.webhooks import (EVENT_OF_STATUS, WebhookEvent, WebhookStore, batch_key, batch_of_key,
                                     delivery_id, notifications_key, payload)

log = structlog.get_logger(__name__)

DISPATCH_GROUP = "webhook-dispatchers"
USER_AGENT = "docflow-webhooks/1.0"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# How a try's host is resolved (tests map names to addresses without DNS).
RESOLVER: Resolver = system_resolver
# httpx logs every request's full URL at INFO: a webhook URL's query often holds a token
# of the receiver's, which has no place in logs. Failures are logged without it.
logging.getLogger("httpx").setLevel(logging.WARNING)


def backoff_seconds(settings: Settings, retries: int) -> float:
    """How long try `retries + 2` waits: full jitter up to base * 2**retries, capped by
    the setting and by half the visibility timeout (a retry waits unacked in the worker
    that took it; were it held longer, the broker would deliver it again meanwhile)."""
    cap = min(settings.webhook_retry_backoff_max_seconds, settings.visibility_timeout / 2,
              settings.webhook_retry_backoff_seconds * 2 ** retries)
    return random.uniform(0, cap)


# --- sending ------------------------------------------------------------------------------
def sign(secret: str, message_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one try."""
    return {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Signer(secret).sign(message_id, now, body)}


def post(url: str, body: str, headers: dict[str, str], settings: Settings,
         resolver: Resolver | None = None) -> int:
    """POST `body` to `url` (and its redirects), each connection to a checked address;
    the final status code. UrlRefused, ResolutionFailed or httpx errors otherwise."""
    resolver = resolver or RESOLVER
    timeout = httpx.Timeout(settings.webhook_timeout_seconds,
                            connect=settings.webhook_connect_timeout_seconds)
    current = url
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout) as client:
        for _ in range(settings.fetch_max_redirects + 1):
            parsed = parse_url(current)
            addresses = resolve_checked(parsed, settings.allow_private_urls, resolver)
            pinned_tls = parsed.scheme == "https" and not parsed.host_is_ip
            extensions = {"sni_hostname": parsed.host} if pinned_tls else {}
            response = None
            failure: Exception | None = None
            for address in addresses:
                request = client.build_request(
                    "POST", parsed.with_address(address), content=body.encode(), extensions=extensions,
                    headers={**headers, "Host": parsed.host_header, "Content-Type": "application/json",
                             "User-Agent": USER_AGENT})
                try:
                    response = client.send(request, stream=True)
                    break
                except httpx.ConnectError as exc:
                    failure = exc
            if response is None:
                raise failure or httpx.ConnectError(f"could not connect to {parsed.host}")
            response.close()  # the answer's body is not read: only its status counts
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                current = urljoin(current, location.strip())
                continue
            return response.status_code
    raise httpx.TooManyRedirects(f"more than {settings.fetch_max_redirects} redirects")


class WebhookTask(DocflowTask):
    """Deliveries retry on their own schedule (`webhook_*` settings), not the stages'."""

    autoretry_for = ()

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        return self.settings.webhook_max_attempts - 1

    @property
    def webhooks(self) -> WebhookStore:
        return WebhookStore(self.redis, self.settings.redis_key_prefix)

    def dead_letter(self, task_id, args, code, message, attempts) -> None:
        delivery = args[0] if args and isinstance(args[0], dict) else {}
        self.dead_letters.add(
            task_name=self.name, task_id=task_id or "", queue=Queue.WEBHOOKS.value, args=list(args),
            stage=self.stage.value, error_code=code.value, error_message=message, attempts=attempts,
            document_id=(delivery.get("payload") or {}).get("data", {}).get("document_id"),
            tenant=delivery.get("tenant"))
        DELIVERIES.labels("dead_lettered").inc()


@app.task(name=Task.DELIVER_WEBHOOK.value, base=WebhookTask, bind=True)
def deliver_webhook(self: WebhookTask, delivery: dict[str, Any]) -> str:
    """One delivery: {id, tenant, webhook_id, payload}. Returns its outcome."""
    settings = self.settings
    structlog.contextvars.bind_contextvars(webhook_id=delivery["webhook_id"], delivery_id=delivery["id"])
    hook = self.webhooks.get(delivery["tenant"], delivery["webhook_id"])
    if hook is None:
        log.info("webhook deleted: delivery dropped")
        DELIVERIES.labels("dropped").inc()
        return "dropped"
    body = json.dumps(delivery["payload"], separators=(",", ":"))
    attempt = (self.request.retries or 0) + 1
    started = time.monotonic()
    try:
        code = post(hook.url, body, sign(hook.secret, delivery["id"], body, datetime.now(UTC)), settings)
        failure = None if 200 <= code < 300 else f"the receiver answered {code}"
        error_code = ErrorCode.URL_HTTP_ERROR
    except UrlRefused as exc:
        DELIVERIES.labels("refused").inc()
        raise PermanentError(ErrorCode.URL_REFUSED, str(exc)) from None
    except ResolutionFailed as exc:
        failure, error_code = str(exc), ErrorCode.URL_UNREACHABLE
    except httpx.TimeoutException as exc:
        failure, error_code = f"timed out: {type(exc).__name__}", ErrorCode.URL_TIMEOUT
    except (httpx.HTTPError, OSError) as exc:
        failure, error_code = f"{type(exc).__name__}: {exc}", ErrorCode.URL_UNREACHABLE
    ATTEMPT_SECONDS.labels("failed" if failure else "delivered").observe(time.monotonic() - started)
    if failure is None:
        log.info("webhook delivered", attempt=attempt, status_code=code)
        DELIVERIES.labels("delivered").inc()
        return "delivered"
    error = TransientError(error_code, f"try {attempt} of {settings.webhook_max_attempts}: {failure}")
    if attempt >= settings.webhook_max_attempts:
        raise error  # on_failure dead-letters it
    countdown = backoff_seconds(settings, attempt - 1)
    log.warning("webhook delivery failed; retrying", attempt=attempt, error=failure,
                countdown=round(countdown, 2))
    DELIVERIES.labels("retried").inc()
    raise self.retry(exc=error, countdown=countdown, max_retries=settings.webhook_max_attempts - 1)


# --- dispatching ----------------------------------------------------------------------------
class Dispatcher:
    """Final events -> deliveries (see the module). `run_once` is one read of the stream."""

    def __init__(self, client: redis.Redis, celery: Celery, settings: Settings, consumer: str) -> None:
        self.redis = client
        self.celery = celery
        self.settings = settings
        self.prefix = settings.redis_key_prefix
        self.stream = notifications_key(self.prefix)
        self.consumer = consumer
        self.webhooks = WebhookStore(client, self.prefix)
        self._group_ready = False

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:  # from the stream's start: events written before the first dispatcher count too
            self.redis.xgroup_create(self.stream, DISPATCH_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def run_once(self, block_ms: int = 1000, count: int = 100) -> int:
        """Handle what a dead dispatcher left, then new entries; returns entries handled."""
        self.ensure_group()
        handled = 0
        _, claimed, *deleted = self.redis.xautoclaim(
            self.stream, DISPATCH_GROUP, self.consumer,
            int(self.settings.webhook_dispatch_reclaim_seconds * 1000), start_id="0-0", count=count)
        if deleted and deleted[0]:  # trimmed away while pending: nothing left to send
            self.redis.xack(self.stream, DISPATCH_GROUP, *deleted[0])
        for entry_id, fields in claimed:
            if fields:
                self._handle_once(entry_id, fields)
            self.redis.xack(self.stream, DISPATCH_GROUP, entry_id)
            handled += 1
        reply = self.redis.xreadgroup(DISPATCH_GROUP, self.consumer, {self.stream: ">"}, count=count,
                                      block=block_ms)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self._handle_once(entry_id, fields)
                self.redis.xack(self.stream, DISPATCH_GROUP, entry_id)
                handled += 1
        return handled

    def _handle_once(self, entry_id: str, fields: dict[str, str]) -> None:
        """`handle`, except that an entry that cannot be read is logged and acknowledged
        (it would fail the same way each time it is claimed again). Redis and broker
        errors propagate: the entry stays pending and is handled again."""
        try:
            self.handle(entry_id, fields)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("webhook dispatcher: unreadable notification skipped", entry_id=entry_id, error=str(exc))

    def handle(self, entry_id: str, fields: dict[str, str]) -> int:
        """Enqueue the entry's deliveries; returns how many."""
        tenant, status = fields.get("tenant", ""), fields.get("status", "")
        event = EVENT_OF_STATUS.get(status)
        if event is None and tenant and fields.get("batch_id"):  # a batch's files all decided
            hooks = self.webhooks.list(tenant)
            if not any(WebhookEvent.BATCH_COMPLETED in hook.events for hook in hooks):
                return 0
            return self._batch_completed(entry_id, tenant, fields["batch_id"], hooks)
        hooks = self.webhooks.list(tenant) if tenant and event else []
        if not hooks:
            return 0
        document_id = fields["document_id"]
        batch_id = self.redis.get(batch_of_key(self.prefix, tenant, document_id))
        error = json.loads(fields["error"]) if fields.get("error") else None
        data = {"document_id": document_id, "status": status,
                "version": int(fields["version"]) if fields.get("version") else None,
                "error": error, "batch_id": batch_id}
        sent = 0
        body = payload(event, fields.get("timestamp") or datetime.now(UTC).isoformat(), data)
        for hook in hooks:
            if event in hook.events:
                self._enqueue(tenant, hook.id, delivery_id(entry_id, hook.id), body)
                sent += 1
        if sent:
            DISPATCHED.labels(event.value).inc()
        if batch_id and any(WebhookEvent.BATCH_COMPLETED in hook.events for hook in hooks):
            sent += self._batch_completed(entry_id, tenant, batch_id, hooks)
        return sent

    def _batch_completed(self, entry_id: str, tenant: str, batch_id: str, hooks: list) -> int:
        key = batch_key(self.prefix, tenant, batch_id)
        raw = self.redis.hgetall(key)
        if not raw or "files" not in raw:
            return 0
        entries = [json.loads(value) for name, value in raw.items() if name.startswith("entry:")]
        if len(entries) < int(raw["files"]):
            return 0  # the batch is still being accepted
        document_ids = list(dict.fromkeys(e["document_id"] for e in entries if e.get("document_id")))
        pipe = self.redis.pipeline(transaction=False)
        for document_id in document_ids:
            pipe.hmget(record_key(self.prefix, document_id), "tenant", "status")
        counts: dict[str, int] = {}
        for owner, state in pipe.execute():
            state = state if owner == tenant and state else "deleted"
            if state != "deleted" and DocumentStatus(state) not in FINAL_STATUSES:
                return 0
            counts[state] = counts.get(state, 0) + 1
        # Once per batch: the entry that found it finished claims it (a repeat of that
        # same entry, handled again after a crash, goes on).
        if not self.redis.hsetnx(key, "notified", entry_id) and self.redis.hget(key, "notified") != entry_id:
            return 0
        body = payload(WebhookEvent.BATCH_COMPLETED, datetime.now(UTC).isoformat(),
                       {"batch_id": batch_id, "files": len(entries), "documents": len(document_ids),
                        "rejected": sum(1 for e in entries if not e.get("document_id")), "counts": counts})
        sent = 0
        for hook in hooks:
            if WebhookEvent.BATCH_COMPLETED in hook.events:
                self._enqueue(tenant, hook.id, delivery_id("batch", tenant, batch_id, hook.id), body)
                sent += 1
        DISPATCHED.labels(WebhookEvent.BATCH_COMPLETED.value).inc()
        log.info("batch completed", batch_id=batch_id, webhooks=sent)
        return sent

    def _enqueue(self, tenant: str, webhook_id: str, message_id: str, body: dict[str, Any]) -> None:
        self.celery.send_task(Task.DELIVER_WEBHOOK.value,
                              args=[{"id": message_id, "tenant": tenant, "webhook_id": webhook_id,
                                     "payload": body}],
                              queue=Queue.WEBHOOKS.value)

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # Redis down, a broker hiccup: the entries stay pending
                log.warning("webhook dispatcher: read failed; retrying", error=str(exc))
                stop.wait(2.0)


def start_dispatcher(celery: Celery, settings: Settings) -> tuple[threading.Thread, threading.Event]:
    """The dispatcher's thread (daemon) and the event that stops it."""
    consumer = f"{socket.gethostname()}-{threading.get_native_id()}-{random.randrange(1 << 30)}"
    client = redis_client(settings, socket_timeout=30)
    dispatcher = Dispatcher(client, celery, settings, consumer)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), name="webhook-dispatcher",
                              daemon=True)
    thread.start()
    log.info("webhook dispatcher started", consumer=consumer)
    return thread, stop


def zero_series() -> None:
    for outcome in OUTCOMES:
        DELIVERIES.labels(outcome)
    for outcome in ("delivered", "failed"):
        ATTEMPT_SECONDS.labels(outcome)
    for event in WebhookEvent:
        DISPATCHED.labels(event.value)

"""Webhook deliveries: the dispatcher on a real Redis, and a real notify worker (a
subprocess, as `make run` starts it) POSTing to a receiver on 127.0.0.1 that is down,
fails, and comes back. Signatures are checked with standardwebhooks' own Webhook.verify."""

import json
import os
import subprocess
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from docflow.devstack.processes import free_port
from docflow.devstack.stack import worker_argv
from docflow.indexer.webhooks import DISPATCH_GROUP, Dispatcher, backoff_seconds, sign
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.names import KEY_PREFIX, Queue, Stage, Task, WorkerRole
from docflow.shared.settings import Settings
from docflow.shared.status import DocumentError, DocumentRecord, StatusStore, utcnow
from docflow.shared.webhooks import (WebhookEvent, WebhookStore, batch_key, batch_of_key, new_secret,
                                     notifications_key)

TENANT = "acme"


# --- a receiver on 127.0.0.1 -----------------------------------------------------------------
class Receiver:
    """Records every request (headers, body, whether its signature verified); answers
    `fail_first` failures (500) per webhook-id before a 200, or fails always."""

    def __init__(self, port: int, secret_of: dict[str, str]) -> None:
        self.port = port
        self.secret_of = secret_of  # path -> secret
        self.requests: list[dict] = []
        self.fail_first = 0
        self.always_fail = False
        self.server: ThreadingHTTPServer | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Verifier(receiver.secret_of[self.path]).verify(body, headers)
                    verified = True
                except Exception:
                    verified = False
                seen = sum(1 for r in receiver.requests if r["id"] == headers.get("webhook-id"))
                ok = not receiver.always_fail and seen >= receiver.fail_first
                receiver.requests.append({"id": headers.get("webhook-id"), "path": self.path, "ok": ok,
                                          "verified": verified, "body": json.loads(body), "at": time.time()})
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.handler = Handler

    def start(self) -> "Receiver":
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[dict]:
        return [r for r in self.requests if r["ok"]]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# --- fixtures -----------------------------------------------------------------------------------
WORKER_ENV = {
    "DOCFLOW_ALLOW_PRIVATE_URLS": "true",
    "DOCFLOW_WEBHOOK_MAX_ATTEMPTS": "4",
    "DOCFLOW_WEBHOOK_RETRY_BACKOFF_SECONDS": "0.3",
    "DOCFLOW_WEBHOOK_RETRY_BACKOFF_MAX_SECONDS": "1",
    "DOCFLOW_WEBHOOK_CONNECT_TIMEOUT_SECONDS": "1",
    "DOCFLOW_WEBHOOK_TIMEOUT_SECONDS": "2",
    "DOCFLOW_WEBHOOK_DISPATCH_RECLAIM_SECONDS": "1",
}


@pytest.fixture
def settings(redis_server, redis_client) -> Settings:
    return Settings(redis_url=redis_server.url, **{k[len("DOCFLOW_"):].lower(): v for k, v in WORKER_ENV.items()})


@pytest.fixture
def notify_worker(request, redis_server, redis_client, tmp_path):
    """The indexer's notify worker (-Q docflow.webhooks, and the dispatcher), as `make run` runs it;
    a test may override settings with `@pytest.mark.parametrize("notify_worker", [{...}], indirect=True)`."""
    metrics_port = free_port()
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    env = {**os.environ, **WORKER_ENV, **getattr(request, "param", {}),
           "DOCFLOW_REDIS_URL": redis_server.url, "DOCFLOW_METRICS_HOST": "127.0.0.1",
           "DOCFLOW_METRICS_PORT": str(metrics_port), "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
           "DOCFLOW_LANCEDB_URI": str(tmp_path / "lancedb"), "DOCFLOW_VECTOR_STORE": "lancedb"}
    log = open(tmp_path / "notify.log", "w")
    process = subprocess.Popen(worker_argv(Stage.INDEX, 1, node=f"notify-test-{metrics_port}@%h",
                                           role=WorkerRole.NOTIFY), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: redis_client.exists(notifications_key()) and redis_client.xinfo_groups(notifications_key()),
                 60, "the notify worker's dispatcher")
        yield f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def make_document(status: StatusStore, document_id: str) -> None:
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename=f"{document_id}.txt",
                                 content_type="text/plain", size_bytes=10, original_key=f"k/{document_id}",
                                 created_at=now, updated_at=now))


def register(redis_client, url: str, events=(WebhookEvent.DOCUMENT_COMPLETED,), max_per_tenant: int = 10):
    return WebhookStore(redis_client).create(TENANT, url, list(events), max_per_tenant, utcnow())


# --- the dispatcher alone ----------------------------------------------------------------------
class SentTasks:
    """A Celery stand-in recording what the dispatcher enqueues."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, str]] = []

    def send_task(self, name, args, queue):
        self.sent.append((name, args[0], queue))


def test_a_final_status_reaches_only_the_webhooks_that_asked_for_it(redis_client, settings):
    status = StatusStore(redis_client)
    make_document(status, "d0")
    status.complete("d0", 1, vectors=3)
    assert not redis_client.exists(notifications_key()), "a tenant without webhooks costs nothing"

    completed = register(redis_client, "http://127.0.0.1:1/a")
    failed = register(redis_client, "http://127.0.0.1:1/b", [WebhookEvent.DOCUMENT_FAILED])
    for name in ("d1", "d2"):
        make_document(status, name)
    status.complete("d1", 1, vectors=3)
    status.update("d2", 1, progress=50)  # not final: nothing to send
    celery = SentTasks()
    dispatcher = Dispatcher(redis_client, celery, settings, "c1")
    assert dispatcher.run_once(block_ms=10) == 1
    [(task, delivery, queue)] = celery.sent
    assert (task, queue) == (Task.DELIVER_WEBHOOK.value, Queue.WEBHOOKS.value)
    assert delivery["webhook_id"] == completed.id and delivery["tenant"] == TENANT
    assert delivery["id"].startswith("msg_")
    body = delivery["payload"]
    assert body["type"] == "document.completed"
    assert body["data"] == {"document_id": "d1", "status": "completed", "version": 1, "error": None,
                            "batch_id": None}
    assert failed.id not in {d["webhook_id"] for _, d, _ in celery.sent}
    assert redis_client.xpending(notifications_key(), DISPATCH_GROUP)["pending"] == 0


def test_an_entry_a_dead_dispatcher_held_is_handled_by_another_with_the_same_ids(redis_client, settings):
    status = StatusStore(redis_client)
    register(redis_client, "http://127.0.0.1:1/a", [WebhookEvent.DOCUMENT_FAILED, WebhookEvent.DOCUMENT_CANCELLED])
    make_document(status, "d1")
    status.cancel("d1")
    dead = Dispatcher(redis_client, SentTasks(), settings, "dead")
    dead.ensure_group()
    # It read the entry and died before acknowledging it.
    redis_client.xreadgroup(DISPATCH_GROUP, "dead", {notifications_key(): ">"}, count=10)
    first = SentTasks()
    dead.celery = first
    entry_id = redis_client.xrange(notifications_key())[0][0]
    dead.handle(entry_id, redis_client.xrange(notifications_key())[0][1])

    other = SentTasks()
    survivor = Dispatcher(redis_client, other, settings, "survivor")
    assert survivor.run_once(block_ms=10) == 0, "held entries are not taken before they are stale"
    time.sleep(1.1)
    assert survivor.run_once(block_ms=10) == 1
    assert [d["id"] for _, d, _ in other.sent] == [d["id"] for _, d, _ in first.sent]
    assert other.sent[0][1]["payload"]["type"] == "document.cancelled"
    assert redis_client.xpending(notifications_key(), DISPATCH_GROUP)["pending"] == 0


def test_the_last_document_of_a_batch_sends_batch_completed_once(redis_client, settings):
    status = StatusStore(redis_client)
    hook = register(redis_client, "http://127.0.0.1:1/a", [WebhookEvent.BATCH_COMPLETED])
    key = batch_key(KEY_PREFIX, TENANT, "b1")
    redis_client.hset(key, mapping={"created_at": "x", "files": 3})
    for index, name in enumerate(("d1", "d2")):
        make_document(status, name)
        redis_client.hset(key, f"entry:{index}", json.dumps({"filename": name, "document_id": name}))
        redis_client.set(batch_of_key(KEY_PREFIX, TENANT, name), "b1")
    redis_client.hset(key, "entry:2", json.dumps({"filename": "e", "document_id": None, "error": {}}))
    celery = SentTasks()
    dispatcher = Dispatcher(redis_client, celery, settings, "c1")
    status.complete("d1", 1, vectors=1)
    dispatcher.run_once(block_ms=10)
    assert celery.sent == [], "one document of the batch is still in flight"
    status.fail("d2", 1, error=DocumentError(code="internal_error", message="boom"))
    dispatcher.run_once(block_ms=10)
    [(_, delivery, _)] = celery.sent
    assert delivery["webhook_id"] == hook.id
    assert delivery["payload"]["type"] == "batch.completed"
    assert delivery["payload"]["data"] == {"batch_id": "b1", "files": 3, "documents": 2, "rejected": 1,
                                           "counts": {"completed": 1, "failed": 1}}
    # The same final event handled again (at least once) claims nothing new.
    entry_id, fields = redis_client.xrange(notifications_key())[-1]
    other_entry = redis_client.xrange(notifications_key())[0]
    assert dispatcher._batch_completed(other_entry[0], TENANT, "b1", [hook]) == 0
    assert dispatcher._batch_completed(entry_id, TENANT, "b1", [hook]) == 1  # its own repeat goes on


def test_a_batch_whose_documents_were_final_before_its_last_file_was_decided_completes_when_announced(
        redis_client, settings):
    """Its last file refused (or a duplicate of a finished document): no final event comes
    after the batch is whole, so the gateway's announcement is what finds it finished."""
    from docflow.shared.webhooks import announce_batch

    status = StatusStore(redis_client)
    assert not announce_batch(redis_client, KEY_PREFIX, TENANT, "b2", 1000), "no webhook, no entry"
    hook = register(redis_client, "http://127.0.0.1:1/a", [WebhookEvent.BATCH_COMPLETED])
    key = batch_key(KEY_PREFIX, TENANT, "b2")
    redis_client.hset(key, mapping={"created_at": "x", "files": 2})
    make_document(status, "d1")
    redis_client.hset(key, "entry:0", json.dumps({"filename": "d1", "document_id": "d1"}))
    redis_client.set(batch_of_key(KEY_PREFIX, TENANT, "d1"), "b2")
    status.complete("d1", 1, vectors=1)
    celery = SentTasks()
    dispatcher = Dispatcher(redis_client, celery, settings, "c1")
    dispatcher.run_once(block_ms=10)
    assert celery.sent == [], "the batch's second file was not decided yet"
    redis_client.hset(key, "entry:1", json.dumps({"filename": "empty.txt", "document_id": None, "error": {}}))
    assert announce_batch(redis_client, KEY_PREFIX, TENANT, "b2", 1000)
    dispatcher.run_once(block_ms=10)
    [(_, delivery, _)] = celery.sent
    assert delivery["webhook_id"] == hook.id and delivery["payload"]["type"] == "batch.completed"
    assert delivery["payload"]["data"]["counts"] == {"completed": 1} and delivery["payload"]["data"]["rejected"] == 1
    assert announce_batch(redis_client, KEY_PREFIX, TENANT, "b2", 1000)  # announced again: still once
    dispatcher.run_once(block_ms=10)
    assert len(celery.sent) == 1


def test_an_unreadable_notification_is_skipped_not_retried_for_ever(redis_client, settings):
    register(redis_client, "http://127.0.0.1:1/a")
    redis_client.xadd(notifications_key(), {"tenant": TENANT, "document_id": "x", "status": "completed",
                                            "version": "not a number", "error": "", "timestamp": ""})
    dispatcher = Dispatcher(redis_client, SentTasks(), settings, "c1")
    assert dispatcher.run_once(block_ms=10) == 1
    assert redis_client.xpending(notifications_key(), DISPATCH_GROUP)["pending"] == 0


def test_backoff_is_exponential_with_full_jitter_and_capped(settings):
    tries = [[backoff_seconds(settings, retries) for _ in range(200)] for retries in range(6)]
    for retries, waits in enumerate(tries):
        cap = min(settings.webhook_retry_backoff_max_seconds, settings.webhook_retry_backoff_seconds * 2 ** retries)
        assert all(0 <= w <= cap for w in waits) and max(waits) > cap * 0.8
        assert len(set(waits)) > 150  # jitter
    short = settings.model_copy(update={"visibility_timeout": 50, "webhook_retry_backoff_max_seconds": 900,
                                        "webhook_retry_backoff_seconds": 10})
    assert max(backoff_seconds(short, 10) for _ in range(200)) <= 25, "never past half the visibility timeout"


def test_the_signature_is_standard_webhooks():
    secret = new_secret()
    body = json.dumps({"type": "document.completed", "data": {"document_id": "d"}})
    headers = sign(secret, "msg_1", body, datetime.now(UTC))
    assert Verifier(secret).verify(body, headers)["data"] == {"document_id": "d"}
    with pytest.raises(Exception):
        Verifier(secret).verify(body.replace("d\"}", "e\"}"), headers)


# --- a real notify worker ---------------------------------------------------------------------
# Tries enough to outlast the receiver's downtime: with full jitter a retry may come at
# once, so 4 tries (the other tests') could all be spent while it is down (CI saw it).
@pytest.mark.parametrize("notify_worker", [{"DOCFLOW_WEBHOOK_MAX_ATTEMPTS": "30"}], indirect=True)
def test_a_receiver_down_for_a_while_then_back_gets_every_event_signed_with_one_id_per_delivery(
        redis_client, notify_worker):
    port = free_port()
    hook = register(redis_client, f"http://127.0.0.1:{port}/hook")
    receiver = Receiver(port, {"/hook": hook.secret})
    receiver.fail_first = 1  # once back, each delivery's first try there still fails
    status = StatusStore(redis_client)
    documents = [f"doc{i}" for i in range(5)]
    for name in documents:
        make_document(status, name)
        status.complete(name, 1, vectors=2)
    time.sleep(1.5)  # down: connections refused, tries retried
    receiver.start()
    try:
        wait_for(lambda: len(receiver.delivered()) >= len(documents), 60, "every event delivered")
        time.sleep(1.0)  # nothing more comes: each delivered once
        delivered = receiver.delivered()
        assert sorted(r["body"]["data"]["document_id"] for r in delivered) == documents
        assert all(r["body"]["type"] == "document.completed" for r in delivered)
        assert all(r["verified"] for r in receiver.requests), "every try's signature verifies"
        for r in delivered:
            tries = [t for t in receiver.requests if t["id"] == r["id"]]
            assert len(tries) >= 2 and not tries[0]["ok"], "retried, with the same webhook-id"
            assert {t["body"]["data"]["document_id"] for t in tries} == {r["body"]["data"]["document_id"]}
        assert len({r["id"] for r in delivered}) == len(documents)
        metrics = httpx.get(notify_worker).text
        assert 'docflow_webhook_deliveries_total{outcome="delivered"} 5.0' in metrics
        assert 'docflow_webhook_deliveries_total{outcome="retried"}' in metrics
        assert "docflow_webhook_attempt_duration_seconds_bucket" in metrics
    finally:
        receiver.stop()


def test_a_receiver_that_always_fails_gets_a_dead_letter_after_the_last_try_and_replay_sends_it_again(
        redis_client, redis_server, notify_worker, tmp_path):
    from fastapi.testclient import TestClient

    from docflow.gateway.main import create_app

    port = free_port()
    hook = register(redis_client, f"http://127.0.0.1:{port}/hook", [WebhookEvent.DOCUMENT_FAILED])
    receiver = Receiver(port, {"/hook": hook.secret}).start()
    receiver.always_fail = True
    try:
        status = StatusStore(redis_client)
        make_document(status, "doomed")
        status.fail("doomed", 1, DocumentError(code="unsupported_type", message="not a document", stage="extract"))
        letters = DeadLetterStore(redis_client)
        [letter] = wait_for(letters.list, 60, "the dead letter")
        assert letter.task_name == Task.DELIVER_WEBHOOK.value and letter.queue == Queue.WEBHOOKS.value
        assert letter.attempts == 4 and letter.tenant == TENANT and letter.document_id == "doomed"
        assert letter.error_code == "url_http_error" and "500" in letter.error_message
        assert len(receiver.requests) == 4 and len({r["id"] for r in receiver.requests}) == 1
        assert all(r["verified"] for r in receiver.requests)
        first_id = receiver.requests[0]["id"]
        assert receiver.requests[0]["body"]["data"]["error"]["code"] == "unsupported_type"
        assert 'docflow_webhook_deliveries_total{outcome="dead_lettered"} 1.0' in httpx.get(notify_worker).text

        receiver.always_fail = False
        gateway = Settings(redis_url=redis_server.url, storage_path=tmp_path / "storage",
                           api_keys="k=acme", admin_api_keys="admin-key")
        with TestClient(create_app(gateway)) as client:
            replayed = client.post(f"/v1/admin/dead-letters/{letter.id}/replay",
                                   headers={"Authorization": "Bearer admin-key"})
        assert replayed.status_code == 202, replayed.text
        wait_for(receiver.delivered, 30, "the replayed delivery")
        [done] = receiver.delivered()
        assert done["id"] == first_id and done["verified"]
        assert letters.list() == []
    finally:
        receiver.stop()


def test_a_deleted_webhook_drops_its_pending_deliveries(redis_client, notify_worker):
    port = free_port()
    hook = register(redis_client, f"http://127.0.0.1:{port}/hook")
    receiver = Receiver(port, {"/hook": hook.secret}).start()
    receiver.always_fail = True
    try:
        status = StatusStore(redis_client)
        make_document(status, "d1")
        status.complete("d1", 1, vectors=1)
        wait_for(lambda: receiver.requests, 30, "a first try")
        WebhookStore(redis_client).delete(TENANT, hook.id)
        time.sleep(3)
        tries = len(receiver.requests)
        assert tries < 4 and DeadLetterStore(redis_client).list() == []
        assert 'docflow_webhook_deliveries_total{outcome="dropped"} 1.0' in httpx.get(notify_worker).text
    finally:
        receiver.stop()


# --- redirects, each checked by the address rules ----------------------------------------------
def stub_resolver(host: str, port: int) -> list[str]:
    """No DNS: names map to what an attacker would aim a redirect at."""
    return {"metadata.example.com": ["169.254.169.254"], "intranet.example.com": ["10.0.0.8"],
            "receiver.example.com": ["127.0.0.1"]}[host]


@pytest.fixture
def only_loopback_sockets(monkeypatch):
    """Fail the test if anything opens a connection to a non-loopback address."""
    import ipaddress
    import socket

    real_connect = socket.socket.connect

    def guarded(self, address):
        if isinstance(address, tuple) and not ipaddress.ip_address(address[0].split("%")[0]).is_loopback:
            raise AssertionError(f"a test opened a socket to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def redirecting():
    """A receiver on 127.0.0.1: /go/<where> answers 307 to <where>, /hook records and answers 204."""
    from urllib.parse import unquote

    seen: list[tuple[str, dict, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if self.path.startswith("/go/"):
                self.send_response(307)
                self.send_header("Location", unquote(self.path[len("/go/"):]))
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_a_redirect_is_followed_with_the_same_signed_post_when_its_address_is_allowed(
        settings, redirecting, only_loopback_sockets):
    from urllib.parse import quote

    from docflow.indexer.webhooks import post

    port, seen = redirecting
    headers = sign(new_secret(), "msg_r", "{}", datetime.now(UTC))
    target = quote(f"http://receiver.example.com:{port}/hook", safe="")
    assert post(f"http://127.0.0.1:{port}/go/{target}", "{}", headers, settings, stub_resolver) == 204
    assert [path for path, _, _ in seen] == [f"/go/{target}", "/hook"]
    _, last_headers, last_body = seen[-1]
    assert last_body == "{}" and last_headers["webhook-id"] == "msg_r"
    assert last_headers["host"] == f"receiver.example.com:{port}"  # pinned to the checked address, name kept


@pytest.mark.parametrize("target, why", [
    ("http://metadata.example.com/latest/meta-data/", "metadata"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::ffff:169.254.169.254]/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("file:///etc/passwd", "only http and https"),
    ("http://user:pw@receiver.example.com/hook", "credentials"),
])
def test_a_redirect_to_a_refused_address_is_not_followed(settings, redirecting, only_loopback_sockets, target, why):
    """Even with DOCFLOW_ALLOW_PRIVATE_URLS=true (the receiver is on 127.0.0.1), every
    redirect is checked again: a metadata address, another scheme or credentials are not
    followed, and nothing is sent there."""
    from urllib.parse import quote

    from docflow.indexer.webhooks import post
    from docflow.shared.url_safety import UrlRefused

    port, seen = redirecting
    assert settings.allow_private_urls
    with pytest.raises(UrlRefused, match=why):
        post(f"http://127.0.0.1:{port}/go/{quote(target, safe='')}", "{}", {}, settings, stub_resolver)
    assert len(seen) == 1, "the redirect's target was never contacted"


def test_without_private_urls_a_name_resolving_to_loopback_is_refused_before_any_connection(
        settings, redirecting, only_loopback_sockets):
    from docflow.indexer.webhooks import post
    from docflow.shared.url_safety import UrlRefused

    port, seen = redirecting
    strict = settings.model_copy(update={"allow_private_urls": False})
    with pytest.raises(UrlRefused, match="loopback"):
        post(f"http://receiver.example.com:{port}/hook", "{}", {}, strict, stub_resolver)
    assert seen == []

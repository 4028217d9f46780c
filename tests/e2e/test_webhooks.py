"""Webhooks through the real stack: a tenant registers a receiver on 127.0.0.1
(DOCFLOW_ALLOW_PRIVATE_URLS=true on the e2e stack), uploads a document and a batch over
HTTP, and the indexer's notify worker POSTs document.completed and batch.completed,
signed per Standard Webhooks (checked with standardwebhooks' own Webhook.verify)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook


@pytest.fixture
def receiver():
    received: list[tuple[dict, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/docflow-hook", received
    server.shutdown()
    server.server_close()


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_registered_webhook_receives_signed_completions_of_a_document_and_a_batch(api_a, api_b, receiver):
    url, received = receiver
    created = api_a.http.post("/v1/webhooks", json={"url": url,
                                                    "events": ["document.completed", "batch.completed"]})
    assert created.status_code == 201, created.text
    hook = created.json()
    try:
        assert api_b.http.get(f"/v1/webhooks/{hook['id']}").status_code == 404
        document_id = api_a.upload("webhook-note.txt", b"Webhooks tell a client when its document is done.\n" * 5)
        assert api_a.wait_final(document_id)["status"] == "completed"

        def of(kind: str, key: str, value: str):
            return [(h, b) for h, b in received if json.loads(b)["type"] == kind and json.loads(b)["data"][key] == value]

        [(headers, body)] = wait_for(lambda: of("document.completed", "document_id", document_id), 60,
                                     "document.completed")
        event = Webhook(hook["secret"]).verify(body, headers)
        assert event["data"]["status"] == "completed" and event["data"]["batch_id"] is None
        assert headers["webhook-id"].startswith("msg_") and headers["content-type"] == "application/json"
        with pytest.raises(Exception):
            Webhook(hook["secret"]).verify(body.replace("completed", "failed", 1), headers)

        batch = api_a.http.post("/v1/batches", params={"on_duplicate": "new"}, files=[
            ("file", ("one.txt", b"The first file of a webhook batch.\n" * 4)),
            ("file", ("two.txt", b"The second file of a webhook batch.\n" * 4))])
        assert batch.status_code == 202, batch.text
        batch_id = batch.json()["batch_id"]
        [(headers, body)] = wait_for(lambda: of("batch.completed", "batch_id", batch_id), 180, "batch.completed")
        event = Webhook(hook["secret"]).verify(body, headers)
        assert event["data"]["counts"] == {"completed": 2} and event["data"]["files"] == 2
        # The batch's documents were announced too, each naming its batch.
        batch_docs = [json.loads(b)["data"] for _, b in received if json.loads(b)["type"] == "document.completed"
                      and json.loads(b)["data"]["batch_id"] == batch_id]
        assert len(batch_docs) == 2
    finally:
        assert api_a.http.delete(f"/v1/webhooks/{hook['id']}").status_code == 204

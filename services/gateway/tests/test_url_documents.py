"""POST /v1/documents with a JSON body {"url", "metadata"}: judged, recorded and queued,
never fetched by the gateway. Real Redis, the real app; the queue is the extract
queue's Redis list."""

import socket

import pytest

from docflow.gateway.idempotency import REPLAYED_HEADER
from docflow.shared.content_types import URL_PENDING
from docflow.shared.names import Queue


def submit(gateway, body, tenant: str = "tenant-a", idempotency_key: str | None = None, **kwargs):
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return gateway.client.post("/v1/documents", json=body, headers={**gateway.auth(tenant), **headers}, **kwargs)


@pytest.fixture(autouse=True)
def the_gateway_never_connects_outside(monkeypatch):
    """The gateway must not fetch, nor resolve the URL's host: fail the test if anything
    connects to or looks up an address other than 127.0.0.1 (Redis)."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address, *args):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] != "127.0.0.1":
            raise AssertionError(f"the gateway connected to {address!r}")
        return real_connect(sock, address, *args)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "testserver"):
            raise AssertionError(f"the gateway resolved {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_url_is_accepted_recorded_with_its_source_and_queued_without_fetching(gateway, broker):
    url = "https://docs.example.org/guides/Lighthouse%20keeping.pdf?lang=en"
    response = submit(gateway, {"url": url, "metadata": {"team": "ops", "year": 2026}})

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued" and accepted["duplicate"] is False
    document = gateway.get(f"/v1/documents/{accepted['document_id']}").json()
    assert document["source_url"] == url
    assert document["content_type"] == URL_PENDING, "the type is judged once fetched"
    assert document["size_bytes"] == 0
    assert document["filename"] == "Lighthouse keeping.pdf"
    assert document["metadata"] == {"team": "ops", "year": 2026}
    [message] = broker.messages(Queue.EXTRACT.value)
    assert message.task_id.startswith(accepted["task_id"])
    assert message.args[0]["content_type"] == URL_PENDING
    assert "http" not in message.raw.replace(message.args[0]["original_key"], ""), \
        "claim check: the message names the document, the URL stays on its record"
    stored = list(gateway.storage_root.rglob("*")) if gateway.storage_root.exists() else []
    assert not [path for path in stored if path.is_file()], "nothing is stored until fetched"


def test_an_upload_has_no_source_url(gateway):
    accepted = gateway.accepted()
    assert gateway.get(f"/v1/documents/{accepted['document_id']}").json()["source_url"] is None


def test_a_url_without_a_path_is_named_by_its_host(gateway):
    accepted = submit(gateway, {"url": "http://News.Example.com"}).json()
    document = gateway.get(f"/v1/documents/{accepted['document_id']}").json()
    assert document["filename"] == "news.example.com" and document["metadata"] == {}


@pytest.mark.parametrize("body, reason", [
    ({"url": "ftp://files.example.org/report.pdf"}, "only http and https"),
    ({"url": "file:///etc/passwd"}, "only http and https"),
    ({"url": "javascript:alert(1)"}, "only http and https"),
    ({"url": "https://admin:hunter2@docs.example.org/a.pdf"}, "credentials"),
    ({"url": "https://"}, "no host"),
    ({"url": "https://docs.example.org/" + "a" * 2100}, "longer than 2048"),
    ({"url": "https://docs.example.org/a b.pdf"}, "whitespace"),
    ({"url": "http://169.254.169.254/latest/meta-data/"}, "metadata"),
    ({"url": "http://127.0.0.1:6379/"}, "loopback"),
    ({"url": "http://[fd00:ec2::254]/"}, "metadata"),
    ({"url": "http://10.0.0.8/internal.pdf"}, "private"),
    ({"url": 42}, "url: Input should be a valid string"),
    ({"metadata": {"a": 1}}, "missing field 'url'"),
    ({}, "missing field 'url'"),
    ({"url": "https://docs.example.org/a.pdf", "callback": "x"}, "unknown field 'callback'"),
    ({"url": "https://docs.example.org/a.pdf", "metadata": ["a"]}, "metadata: Input should be a valid dictionary"),
    ({"url": "https://docs.example.org/a.pdf", "metadata": {"": 1}}, "non-empty strings"),
    ({"url": "https://docs.example.org/a.pdf", "metadata": {"k": "x" * 70_000}}, "at most 65536"),
    ({"url": "https://docs.example.org/a.pdf", "metadata": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {
        "i": {"j": {"k": 1}}}}}}}}}}}}, "deeper than 10"),
    (["https://docs.example.org/a.pdf"], "must be a JSON object"),
])
def test_a_bad_submission_is_422_with_its_reason_and_nothing_is_queued(gateway, broker, body, reason):
    response = submit(gateway, body)

    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]
    assert broker.length(Queue.EXTRACT.value) == 0
    assert gateway.get("/v1/documents").json()["total"] == 0


def test_credentials_are_not_echoed_back(gateway):
    detail = submit(gateway, {"url": "https://admin:hunter2@docs.example.org/"}).json()["detail"]
    assert "hunter2" not in str(detail)


@pytest.mark.parametrize("raw, reason", [
    (b'{"url": "https://a.example/x", "url": "https://b.example/y"}', "repeats the key 'url'"),
    (b'{"url": "https://a.example/x", "metadata": {"n": NaN}}', "NaN"),
    (b'{"url": ', "not valid JSON"),
    (b'{"url": "https://docs.example.org/\\ud800.pdf"}', "lone surrogate"),
    (b"\xff\xfe{", "not valid JSON"),
])
def test_malformed_json_is_422(gateway, broker, raw, reason):
    response = gateway.client.post("/v1/documents", content=raw, headers={**gateway.auth(), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]
    assert broker.length(Queue.EXTRACT.value) == 0


def test_a_json_body_over_the_bound_is_413(gateway):
    body = b'{"url": "https://a.example/x", "metadata": {"k": "' + b"x" * (1024 * 1024) + b'"}}'
    response = gateway.client.post("/v1/documents", content=body, headers={**gateway.auth(), "Content-Type": "application/json"})
    assert response.status_code == 413


def test_private_addresses_pass_the_gateway_when_allowed_but_metadata_never(make_gateway):
    gateway = make_gateway(allow_private_urls=True)
    assert submit(gateway, {"url": "http://127.0.0.1:8080/page.html"}).status_code == 202
    refused = submit(gateway, {"url": "http://169.254.169.254/latest/meta-data/"})
    assert refused.status_code == 422 and "metadata" in refused.json()["detail"]


def test_an_idempotency_key_answers_a_repeat_with_the_first_document(gateway, broker):
    body = {"url": "https://docs.example.org/a.pdf", "metadata": {"x": 1, "y": 2}}
    first = submit(gateway, body, idempotency_key="url-1")
    assert first.status_code == 202, first.text

    repeat = submit(gateway, {"url": body["url"], "metadata": {"y": 2, "x": 1}}, idempotency_key="url-1")

    assert (repeat.status_code, repeat.json()) == (202, first.json())
    assert repeat.headers[REPLAYED_HEADER] == "true"
    assert broker.length(Queue.EXTRACT.value) == 1
    other = submit(gateway, {"url": "https://docs.example.org/b.pdf"}, idempotency_key="url-1")
    assert other.status_code == 422
    assert broker.length(Queue.EXTRACT.value) == 1


def test_the_same_url_twice_without_a_key_is_two_documents(gateway, broker):
    """Duplicate recognition is by content, which is unknown until fetched: not applied."""
    body = {"url": "https://docs.example.org/a.pdf"}
    first = submit(gateway, body, params={"on_duplicate": "skip"}).json()
    second = submit(gateway, body, params={"on_duplicate": "skip"}).json()
    assert first["document_id"] != second["document_id"]
    assert broker.length(Queue.EXTRACT.value) == 2


def test_another_body_type_is_still_415(gateway):
    response = gateway.client.post("/v1/documents", content=b"url=https://a.example/",
                            headers={**gateway.auth(), "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415

"""Idempotency-Key on POST /v1/documents: a repeat gets the first answer and stores
nothing; another request under the key is a 422, a concurrent one a 409; a failed
request frees its key; a key held by a request that never finished frees itself after
its lease. Real Redis, the real app; the queue is the extract queue's Redis list."""

import threading
import time

import pytest
from kombu.exceptions import OperationalError
from prometheus_client import REGISTRY

from docflow.devstack.redis_server import RedisServer
from docflow.gateway.idempotency import MAX_KEY_CHARS, REPLAYED_HEADER
from docflow.shared.names import Queue


def stored_files(gateway) -> list:
    root = gateway.storage_root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def documents(gateway, tenant: str = "tenant-a") -> list[dict]:
    return gateway.get("/v1/documents", tenant=tenant).json()["documents"]


def services(gateway):
    return gateway.client.app.state.services


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("docflow_gateway_documents_rejected_total", {"reason": reason}) or 0.0


def test_a_repeat_gets_the_first_answer_and_stores_nothing_again(gateway, broker, redis_client):
    first = gateway.upload(idempotency_key="upload-1", metadata='{"source": "crm"}')
    assert first.status_code == 202, first.text
    assert REPLAYED_HEADER not in first.headers

    repeats = [gateway.upload(idempotency_key="upload-1", metadata='{"source": "crm"}') for _ in range(3)]

    for repeat in repeats:
        assert (repeat.status_code, repeat.json()) == (202, first.json())
        assert repeat.headers[REPLAYED_HEADER] == "true"
    assert [d["document_id"] for d in documents(gateway)] == [first.json()["document_id"]]
    assert len(stored_files(gateway)) == 1
    assert broker.length(Queue.EXTRACT.value) == 1
    ttl = redis_client.ttl("docflow:idempotency:tenant-a:upload-1")
    assert 86_000 < ttl <= 86_400, "kept DOCFLOW_IDEMPOTENCY_TTL_SECONDS (a day) by default"


def test_a_duplicate_answer_is_replayed_with_its_own_status_code(gateway):
    gateway.accepted(on_duplicate=None)
    first = gateway.upload(on_duplicate=None, idempotency_key="again")
    assert first.status_code == 200 and first.json()["duplicate"] is True
    replay = gateway.upload(on_duplicate=None, idempotency_key="again")
    assert (replay.status_code, replay.json()) == (200, first.json())


@pytest.mark.parametrize("change", [
    {"data": b"Another document altogether.\n" * 5},
    {"filename": "other.txt"},
    {"metadata": '{"source": "erp"}'},
    {"on_duplicate": "reprocess"},
])
def test_the_same_key_for_another_request_is_422_and_changes_nothing(gateway, broker, change):
    request = {"metadata": '{"source": "crm"}', "on_duplicate": "new", "idempotency_key": "k-422"}
    first = gateway.upload(**request)
    assert first.status_code == 202

    reused = gateway.upload(**{**request, **change})

    assert reused.status_code == 422
    assert "different request" in reused.json()["detail"]
    assert len(documents(gateway)) == 1 and len(stored_files(gateway)) == 1
    assert broker.length(Queue.EXTRACT.value) == 1
    assert gateway.upload(**request).json() == first.json(), "the key still answers its own request"


def test_metadata_in_another_key_order_is_the_same_request(gateway):
    first = gateway.upload(idempotency_key="order", metadata='{"a": 1, "b": 2}')
    again = gateway.upload(idempotency_key="order", metadata='{"b": 2, "a": 1}')
    assert (again.status_code, again.json()) == (202, first.json())


def test_a_repeat_while_the_first_is_still_being_processed_is_409(gateway, broker, monkeypatch):
    pipeline = services(gateway).pipeline
    entered, release = threading.Event(), threading.Event()
    real_enqueue = pipeline.enqueue_document

    def slow_enqueue(*args, **kwargs):
        entered.set()
        assert release.wait(10)
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(pipeline, "enqueue_document", slow_enqueue)
    refused_before = rejected("key_in_progress")
    answers = {}
    first = threading.Thread(target=lambda: answers.update(first=gateway.upload(idempotency_key="busy")))
    first.start()
    assert entered.wait(10)

    concurrent = gateway.upload(idempotency_key="busy")

    release.set()
    first.join(10)
    assert concurrent.status_code == 409, concurrent.text
    assert int(concurrent.headers["Retry-After"]) >= 1
    assert "still being processed" in concurrent.json()["detail"]
    assert rejected("key_in_progress") == refused_before + 1
    assert answers["first"].status_code == 202
    assert gateway.upload(idempotency_key="busy").json() == answers["first"].json()
    assert len(documents(gateway)) == 1 and broker.length(Queue.EXTRACT.value) == 1


def test_a_503_frees_the_key_and_the_retry_makes_exactly_one_document(gateway, broker, redis_client,
                                                                       monkeypatch):
    pipeline = services(gateway).pipeline
    real_enqueue = pipeline.enqueue_document
    failures = iter([OperationalError("Error 111 connecting to redis. Connection refused.")])

    def enqueue_once_down(*args, **kwargs):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(pipeline, "enqueue_document", enqueue_once_down)

    refused = gateway.upload(idempotency_key="retry-me")
    assert refused.status_code == 503
    assert redis_client.exists("docflow:idempotency:tenant-a:retry-me") == 0, "the failure released the key"

    retried = gateway.upload(idempotency_key="retry-me")

    assert retried.status_code == 202, retried.text
    assert [d["document_id"] for d in documents(gateway)] == [retried.json()["document_id"]]
    assert len(stored_files(gateway)) == 1
    assert broker.length(Queue.EXTRACT.value) == 1


def test_a_refused_upload_frees_its_key(gateway):
    refused = gateway.upload(data=bytes(range(256)) * 8, filename="blob.bin", idempotency_key="typo")
    assert refused.status_code == 415
    assert gateway.upload(idempotency_key="typo").status_code == 202, "not a 422: the 415 kept nothing"


def test_a_key_whose_request_never_answered_is_free_after_its_lease(make_gateway, broker, monkeypatch):
    """The gateway made the document and died before storing its answer: the key stays
    held for the lease (409), then the retry overtakes it and gets that same document."""
    gateway = make_gateway(idempotency_lease_seconds=1)
    store = services(gateway).idempotency
    monkeypatch.setattr(store, "complete", lambda *args: True)  # the answer is never stored

    lost = gateway.upload(idempotency_key="crashed")  # the client never sees this answer
    assert lost.status_code == 202
    assert gateway.upload(idempotency_key="crashed").status_code == 409
    time.sleep(1.1)

    retried = gateway.upload(idempotency_key="crashed")

    assert retried.status_code == 202, retried.text
    assert retried.json()["document_id"] == lost.json()["document_id"]
    assert retried.json()["duplicate"] is False, "on_duplicate=new: found by the key, not by the bytes"
    assert len(documents(gateway)) == 1 and len(stored_files(gateway)) == 1
    assert broker.length(Queue.EXTRACT.value) == 1


def test_after_the_ttl_the_key_is_forgotten(make_gateway):
    gateway = make_gateway(idempotency_ttl_seconds=1)
    first = gateway.accepted(idempotency_key="short-lived")
    time.sleep(1.2)

    later = gateway.upload(idempotency_key="short-lived")

    assert later.status_code == 202 and REPLAYED_HEADER not in later.headers
    assert later.json()["document_id"] != first["document_id"]
    assert len(documents(gateway)) == 2


def test_keys_are_per_tenant(gateway):
    mine = gateway.accepted(tenant="tenant-a", idempotency_key="shared-key")
    theirs = gateway.upload(tenant="tenant-b", idempotency_key="shared-key",
                            data=b"Tenant b's own file under the same key.\n")

    assert theirs.status_code == 202 and REPLAYED_HEADER not in theirs.headers
    assert theirs.json()["document_id"] != mine["document_id"]
    assert [d["document_id"] for d in documents(gateway, "tenant-b")] == [theirs.json()["document_id"]]
    assert [d["document_id"] for d in documents(gateway, "tenant-a")] == [mine["document_id"]]


@pytest.mark.parametrize("key", ["", "   ", "x" * (MAX_KEY_CHARS + 1), "tab\there", '""'])
def test_a_malformed_key_is_400_and_stores_nothing(gateway, key):
    response = gateway.client.post("/v1/documents", headers={**gateway.auth(), "Idempotency-Key": key},
                                   files={"file": ("notes.txt", gateway.TEXT)})
    assert response.status_code == 400, response.text
    assert "Idempotency-Key" in response.json()["detail"]
    assert documents(gateway) == [] and stored_files(gateway) == []


def test_a_non_ascii_key_is_400(gateway):
    response = gateway.client.post("/v1/documents", headers=[*gateway.auth().items(),
                                                              ("Idempotency-Key", "clé".encode("latin-1"))],
                                   files={"file": ("notes.txt", gateway.TEXT)})
    assert response.status_code == 400, response.text


def test_a_structured_field_string_is_the_same_key_as_its_token(gateway):
    quoted = gateway.upload(idempotency_key='"8e03978e-40d5-43e8"')
    bare = gateway.upload(idempotency_key="8e03978e-40d5-43e8")
    assert bare.headers[REPLAYED_HEADER] == "true" and bare.json() == quoted.json()
    longest = gateway.upload(idempotency_key="k" * MAX_KEY_CHARS, data=b"The longest key there may be.\n")
    assert longest.status_code == 202


def test_keys_and_digests_survive_a_redis_crash_with_aof(make_gateway, tmp_path):
    """Kept in Redis like the documents themselves: after a SIGKILLed redis-server comes
    back from its append-only file, a repeat is still a replay and the bytes still known."""
    own = RedisServer(tmp_path / "redis", appendfsync="always").start()
    try:
        gateway = make_gateway(redis_url=own.url)
        first = gateway.accepted(idempotency_key="durable")
        own.process.kill()
        own = RedisServer(own.data_dir, port=own.port, appendfsync="always").start()

        replay = gateway.upload(idempotency_key="durable")
        duplicate = gateway.upload(on_duplicate=None)

        assert (replay.status_code, replay.json(), replay.headers[REPLAYED_HEADER]) == (202, first, "true")
        assert (duplicate.status_code, duplicate.json()["document_id"]) == (200, first["document_id"])
        assert len(documents(gateway)) == 1
    finally:
        own.stop()

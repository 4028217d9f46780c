"""Batches (POST /v1/batches, GET /v1/batches/{id}): many files in one request, each judged
on its own, and their progress as one. Real Redis, the real app over HTTP (TestClient);
the queue is the extract queue's Redis list, documents move through the status store."""

import hashlib
import os
import threading
import time
from tempfile import SpooledTemporaryFile

import pytest

from docflow.gateway.batches import BatchFile, BatchStore, ReceivedBatch, batch_fingerprint
from docflow.gateway.duplicates import OnDuplicate
from docflow.gateway.idempotency import REPLAYED_HEADER, Outcome, fingerprint
from docflow.shared.errors import ErrorCode, TransientError
from docflow.shared.names import Queue
from docflow.shared.status import DocumentError, DocumentStatus, StatusStore

TEXT = b"The quick brown fox reads the docflow handbook.\n" * 20


def text(n: int) -> bytes:
    """Distinct text documents (distinct bytes: none is a duplicate of another)."""
    return f"Document number {n}: ".encode() + TEXT


def send(gateway, files, tenant="tenant-a", metadata=None, params=None, headers=None):
    """`files`: [(filename, bytes)], each sent as a `file` part."""
    parts = [("file", (name, data, "application/octet-stream")) for name, data in files]
    data = {"metadata": metadata} if metadata is not None else None
    return gateway.client.post("/v1/batches", headers={**gateway.auth(tenant), **(headers or {})},
                               files=parts, data=data, params=params)


def accepted(gateway, files, **kwargs) -> dict:
    response = send(gateway, files, **kwargs)
    assert response.status_code == 202, response.text
    return response.json()


def batch(gateway, batch_id, tenant="tenant-a") -> dict:
    response = gateway.get(f"/v1/batches/{batch_id}", tenant=tenant)
    assert response.status_code == 200, response.text
    return response.json()


def stored_files(gateway) -> list:
    root = gateway.storage_root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_each_file_is_judged_on_its_own(make_gateway, broker):
    gateway = make_gateway(max_upload_bytes=4096)
    answer = accepted(gateway, [("a.txt", text(1)), ("empty.txt", b""),
                                ("noise.pdf", os.urandom(2048) + b"\x00\x01"),
                                ("big.txt", b"x" * 5000), ("b.md", text(2))])

    entries = answer["documents"]
    assert [e["filename"] for e in entries] == ["a.txt", "empty.txt", "noise.pdf", "big.txt", "b.md"]
    good = [entries[0], entries[4]]
    for entry in good:
        assert entry["document_id"] and entry["status"] == "queued" and entry["duplicate"] is False
        assert "error" not in entry
    assert [(e["document_id"], e["error"]["code"]) for e in entries[1:4]] == [
        (None, "empty_file"), (None, "unsupported_type"), (None, "too_large")]
    assert all(e["error"]["detail"] for e in entries[1:4])
    # Only the good files were stored and enqueued, each as a document of its own.
    assert broker.length(Queue.EXTRACT.value) == 2
    assert len(stored_files(gateway)) == 2
    for entry, data in zip(good, (text(1), text(2))):
        record = gateway.get(f"/v1/documents/{entry['document_id']}").json()
        assert (record["filename"], record["size_bytes"]) == (entry["filename"], len(data))
    assert {m.args[0]["document_id"] for m in broker.messages(Queue.EXTRACT.value)} == \
        {e["document_id"] for e in good}


def test_the_bytes_of_each_file_are_stored_as_sent(gateway):
    """Files are slices of one spool: none bleeds into the next, a too-large one's bytes
    are given back."""
    files = [(f"{n}.txt", text(n) * (n + 1)) for n in range(4)]
    answer = accepted(gateway, files)
    for entry, (_, data) in zip(answer["documents"], files):
        original = next(p for p in stored_files(gateway) if entry["document_id"] in str(p))
        assert original.read_bytes() == data


def test_a_large_batch_spools_past_memory_and_keeps_every_file(make_gateway):
    gateway = make_gateway(max_upload_bytes=300_000)
    files = [(f"{n}.txt", text(n) * 250) for n in range(8)]  # ~2.2 MB in all: past the 1 MiB spool
    too_big = ("huge.txt", b"y" * 400_000)
    answer = accepted(gateway, files[:4] + [too_big] + files[4:])
    entries = answer["documents"]
    assert entries[4]["error"]["code"] == "too_large"
    kept = entries[:4] + entries[5:]
    for entry, (_, data) in zip(kept, files):
        original = next(p for p in stored_files(gateway) if entry["document_id"] in str(p))
        assert original.read_bytes() == data


def test_metadata_is_applied_to_each_file(gateway):
    answer = accepted(gateway, [("a.txt", text(1)), ("b.txt", text(2))],
                      metadata='{"project": "apollo", "year": 2024}')
    for entry in answer["documents"]:
        record = gateway.get(f"/v1/documents/{entry['document_id']}").json()
        assert record["metadata"] == {"project": "apollo", "year": 2024}


@pytest.mark.parametrize("metadata", ['["not", "an", "object"]', '{"a": 1, "a": 2}', "{broken"])
def test_bad_metadata_refuses_the_whole_batch(gateway, broker, metadata):
    response = send(gateway, [("a.txt", text(1))], metadata=metadata)
    assert response.status_code == 422, response.text
    assert broker.length(Queue.EXTRACT.value) == 0 and stored_files(gateway) == []


def test_get_counts_documents_by_status_as_they_move(gateway, redis_client):
    answer = accepted(gateway, [(f"{n}.txt", text(n)) for n in range(5)] + [("empty.txt", b"")])
    ids = [e["document_id"] for e in answer["documents"][:5]]
    batch_id = answer["batch_id"]

    start = batch(gateway, batch_id)
    assert (start["files"], start["total"], start["rejected"]) == (6, 5, 1)
    assert start["counts"]["queued"] == 5 and start["progress"] == 0 and start["finished"] is False
    assert start["documents"][5] == {"filename": "empty.txt", "document_id": None,
                                     "error": answer["documents"][5]["error"], "status": None,
                                     "progress": None, "duplicate": None}

    store = StatusStore(redis_client)
    assert store.update(ids[0], 1, DocumentStatus.EXTRACTING, 20)
    assert store.update(ids[1], 1, DocumentStatus.EMBEDDING, 60)
    assert store.complete(ids[2], 1, vectors=3)
    moving = batch(gateway, batch_id)
    assert {k: v for k, v in moving["counts"].items() if v} == {
        "queued": 2, "extracting": 1, "embedding": 1, "completed": 1}
    assert moving["progress"] == round((20 + 60 + 100 + 0 + 0) / 5)
    assert [d["status"] for d in moving["documents"][:5]] == [
        "extracting", "embedding", "completed", "queued", "queued"]
    assert moving["finished"] is False

    assert gateway.post(f"/v1/documents/{ids[3]}/cancel").status_code == 200
    assert gateway.delete(f"/v1/documents/{ids[4]}").status_code == 204
    later = batch(gateway, batch_id)
    assert {k: v for k, v in later["counts"].items() if v} == {
        "extracting": 1, "embedding": 1, "completed": 1, "cancelled": 1, "deleted": 1}
    assert later["progress"] == round((20 + 60 + 100 + 100 + 100) / 5) and later["finished"] is False

    assert store.fail(ids[0], 1, DocumentError(code=ErrorCode.CORRUPT_FILE, message="bad", stage="extract"))
    assert store.complete(ids[1], 1, vectors=1)
    done = batch(gateway, batch_id)
    assert {k: v for k, v in done["counts"].items() if v} == {
        "completed": 2, "failed": 1, "cancelled": 1, "deleted": 1}
    assert (done["progress"], done["finished"]) == (100, True)


def test_another_tenant_s_batch_is_not_found(gateway):
    batch_id = accepted(gateway, [("a.txt", text(1))])["batch_id"]
    assert gateway.get(f"/v1/batches/{batch_id}", tenant="tenant-b").status_code == 404
    assert gateway.get("/v1/batches/no-such-batch").status_code == 404
    assert gateway.get(f"/v1/batches/{batch_id}").status_code == 200


def test_the_batch_record_is_kept_per_tenant_for_the_results_lifetime(gateway, redis_client):
    batch_id = accepted(gateway, [("a.txt", text(1))])["batch_id"]
    key = f"docflow:tenant:tenant-a:batch:{batch_id}"
    assert redis_client.exists(key)
    assert 0 < redis_client.ttl(key) <= gateway.settings.result_expires_seconds


def test_too_many_files_is_413_and_nothing_is_stored(make_gateway, broker):
    gateway = make_gateway(batch_max_files=3)
    assert send(gateway, [(f"{n}.txt", text(n)) for n in range(3)]).status_code == 202
    before = broker.length(Queue.EXTRACT.value)

    response = send(gateway, [(f"{n}.txt", text(n + 10)) for n in range(4)])

    assert response.status_code == 413, response.text
    assert "at most 3" in response.json()["detail"]
    assert broker.length(Queue.EXTRACT.value) == before and len(stored_files(gateway)) == before


def test_a_body_over_the_batch_bound_is_413(make_gateway, broker):
    gateway = make_gateway(batch_max_bytes=20_000)
    response = send(gateway, [(f"{n}.txt", text(n) * 4) for n in range(10)])
    assert response.status_code == 413, response.text
    assert "DOCFLOW_BATCH_MAX_BYTES" in response.json()["detail"]
    assert broker.length(Queue.EXTRACT.value) == 0


def test_requests_that_are_bad_as_a_whole_are_refused(gateway, broker):
    auth = gateway.auth()
    no_files = gateway.client.post("/v1/batches", headers=auth, files={"metadata": (None, "{}")})
    assert no_files.status_code == 422 and "no 'file' parts" in no_files.json()["detail"]
    text_field = gateway.client.post("/v1/batches", headers=auth, files={"file": (None, "just text")})
    assert text_field.status_code == 422
    not_multipart = gateway.client.post("/v1/batches", headers=auth, json={"file": "x"})
    assert not_multipart.status_code == 415
    malformed = gateway.client.post(
        "/v1/batches", content=b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nab",
        headers={**auth, "Content-Type": "multipart/form-data; boundary=b"})
    assert malformed.status_code == 400
    assert gateway.post("/v1/batches", params={"on_duplicate": "sometimes"},
                        files=[("file", ("a.txt", text(1)))]).status_code == 422
    assert gateway.client.post("/v1/batches", files=[("file", ("a.txt", text(1)))]).status_code == 401
    assert broker.length(Queue.EXTRACT.value) == 0


def test_the_same_key_and_batch_replays_the_first_answer(gateway, broker):
    files = [("a.txt", text(1)), ("b.txt", text(2)), ("empty.txt", b"")]
    key = {"Idempotency-Key": "batch-1"}
    first = send(gateway, files, metadata='{"k": 1}', headers=key)
    assert first.status_code == 202 and REPLAYED_HEADER not in first.headers

    again = send(gateway, files, metadata='{"k": 1}', headers=key)

    assert again.status_code == 202
    assert again.json() == first.json() and again.headers[REPLAYED_HEADER] == "true"
    assert broker.length(Queue.EXTRACT.value) == 2 and len(stored_files(gateway)) == 2
    # The same key for another batch (another order, other metadata, another file) is a 422.
    for other in ([files[1], files[0], files[2]], files[:2]):
        assert send(gateway, other, metadata='{"k": 1}', headers=key).status_code == 422
    assert send(gateway, files, metadata='{"k": 2}', headers=key).status_code == 422
    # And an upload cannot reuse a batch's key.
    assert gateway.upload(data=text(1), filename="a.txt", idempotency_key="batch-1").status_code == 422
    assert broker.length(Queue.EXTRACT.value) == 2


def test_a_retry_that_overtakes_a_dead_request_continues_its_batch(gateway, broker):
    """A gateway that died mid-batch: its key's lease has run out, its batch record holds
    the files it had decided. The retry answers them as they were and does the rest."""
    services = gateway.client.app.state.services
    files = [("a.txt", text(1)), ("b.txt", text(2)), ("c.txt", text(3))]
    first = accepted(gateway, files[:1])  # what the dead request had done with file 0
    # The dead request's claim, with the batch it had begun.
    spool = SpooledTemporaryFile()
    received = ReceivedBatch(spool=spool)
    for name, data in files:
        offset = spool.tell()
        spool.write(data)
        received.files.append(BatchFile(raw_filename=name, file=spool, size=len(data), offset=offset,
                                        sha256=hashlib.sha256(data).hexdigest()))
    asked = fingerprint(*batch_fingerprint(received, OnDuplicate.NEW))
    dead = services.idempotency.claim("tenant-a", "dying", asked)
    assert dead.outcome is Outcome.ACQUIRED
    dead_batch = "deadbatch0"
    services.idempotency.attach(dead, dead_batch)
    store = BatchStore(services.redis, "docflow:", 3600)
    store.begin("tenant-a", dead_batch, 3)
    store.add_entry("tenant-a", dead_batch, 0, first["documents"][0])
    services.redis.hset(dead.redis_key, "lease_until", 0)  # the lease ran out

    retry = send(gateway, files, params={"on_duplicate": "new"}, headers={"Idempotency-Key": "dying"})

    assert retry.status_code == 202, retry.text
    body = retry.json()
    assert body["batch_id"] == dead_batch
    assert body["documents"][0] == first["documents"][0]
    assert all(e["document_id"] for e in body["documents"])
    assert len({e["document_id"] for e in body["documents"]}) == 3
    assert broker.length(Queue.EXTRACT.value) == 3, "file 0 was not made again"
    assert batch(gateway, dead_batch)["total"] == 3
    spool.close()


def test_duplicates_inside_a_batch_and_of_existing_documents(gateway, broker):
    existing = gateway.accepted(data=text(9), filename="old.txt")["document_id"]

    answer = accepted(gateway, [("a.txt", text(1)), ("a-again.txt", text(1)), ("old-again.txt", text(9))])

    first, again, old = answer["documents"]
    assert first["duplicate"] is False and first["status"] == "queued"
    assert (again["document_id"], again["duplicate"]) == (first["document_id"], True)
    assert (old["document_id"], old["duplicate"]) == (existing, True)
    assert broker.length(Queue.EXTRACT.value) == 2, "only the one new document was enqueued"
    progress = batch(gateway, answer["batch_id"])
    assert (progress["files"], progress["total"], progress["counts"]["queued"]) == (3, 2, 2)
    # on_duplicate=new applies per file too: every file its own document.
    fresh = accepted(gateway, [("a.txt", text(1)), ("a-again.txt", text(1))], params={"on_duplicate": "new"})
    ids = [e["document_id"] for e in fresh["documents"]]
    assert len(set(ids)) == 2 and first["document_id"] not in ids
    assert not any(e["duplicate"] for e in fresh["documents"])


def test_a_batch_costs_one_upload_per_file(make_gateway):
    gateway = make_gateway(upload_rate_limit_per_minute=6)
    assert send(gateway, [(f"{n}.txt", text(n)) for n in range(5)]).status_code == 202
    assert gateway.upload(data=text(100)).status_code == 202  # the sixth token
    refused = gateway.upload(data=text(101))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # A batch into debt is let in (its first file finds a token) but then the tenant waits.
    other = make_gateway(upload_rate_limit_per_minute=3)
    assert send(other, [(f"{n}.txt", text(n + 20)) for n in range(8)], tenant="tenant-b").status_code == 202
    waiting = other.upload(data=text(200), tenant="tenant-b")
    assert waiting.status_code == 429 and int(waiting.headers["Retry-After"]) >= 60


def test_storage_down_before_any_file_is_a_503_and_after_one_is_that_file_s_error(gateway, broker, monkeypatch):
    services = gateway.client.app.state.services
    real_put = services.storage.put
    calls = []

    def flaky_put(key, data):
        calls.append(key)
        if len(calls) in fail_on:
            raise TransientError(ErrorCode.STORAGE_UNAVAILABLE, "storage is down")
        return real_put(key, data)

    monkeypatch.setattr(services.storage, "put", flaky_put)
    fail_on = {1}
    first_down = send(gateway, [("a.txt", text(1)), ("b.txt", text(2))], headers={"Idempotency-Key": "k"})
    assert first_down.status_code == 503, first_down.text
    assert broker.length(Queue.EXTRACT.value) == 0

    calls.clear()
    fail_on = {2}
    answer = accepted(gateway, [("a.txt", text(1)), ("b.txt", text(2)), ("c.txt", text(3))],
                      headers={"Idempotency-Key": "k"})  # the 503 kept nothing under the key
    a, b, c = answer["documents"]
    assert a["document_id"] and c["document_id"]
    assert (b["document_id"], b["error"]["code"]) == (None, "unavailable")
    assert broker.length(Queue.EXTRACT.value) == 2


def test_a_batch_slower_than_its_lease_keeps_its_key(make_gateway, broker, monkeypatch):
    """The holder renews its key as it works: a retry meanwhile is a 409, never a second
    run of the same files."""
    gateway = make_gateway(idempotency_lease_seconds=1)
    services = gateway.client.app.state.services
    real_put = services.storage.put

    def slow_put(key, data):
        time.sleep(0.4)
        return real_put(key, data)

    monkeypatch.setattr(services.storage, "put", slow_put)
    files = [(f"{n}.txt", text(n)) for n in range(6)]  # ~2.4 s: past two leases
    key = {"Idempotency-Key": "slow-batch"}
    first = {}
    worker = threading.Thread(target=lambda: first.update(response=send(gateway, files, headers=key)))
    worker.start()
    time.sleep(1.6)
    retry = send(gateway, files, headers=key)
    worker.join(30)

    assert retry.status_code == 409, retry.text
    assert first["response"].status_code == 202
    assert broker.length(Queue.EXTRACT.value) == 6
    replay = send(gateway, files, headers=key)
    assert replay.json() == first["response"].json()

"""Duplicate uploads: the tenant's originals are known by SHA-256, and on_duplicate says
what an upload of bytes it already has does -- skip (200, the existing document), new
(another document) or reprocess (a new version, 202). Deleting a document forgets its
bytes. Real Redis, the real app; the queue is the extract queue's Redis list."""

import pytest
from kombu.exceptions import OperationalError

from docflow.shared.names import Queue


def stored_files(gateway) -> list:
    root = gateway.storage_root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def documents(gateway, tenant: str = "tenant-a") -> list[dict]:
    return gateway.get("/v1/documents", tenant=tenant).json()["documents"]


def upload(gateway, **kwargs):
    """An upload as a client sends it: no on_duplicate unless given (the default, skip)."""
    return gateway.upload(**{"on_duplicate": None, **kwargs})


def test_the_same_bytes_again_are_skipped_with_200_and_the_existing_document(gateway, broker):
    first = upload(gateway)
    assert first.status_code == 202 and first.json()["duplicate"] is False

    again = upload(gateway, filename="renamed.txt", metadata='{"source": "elsewhere"}')

    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    assert len(documents(gateway)) == 1 and len(stored_files(gateway)) == 1
    assert broker.length(Queue.EXTRACT.value) == 1, "nothing enqueued for the duplicate"


def test_a_skipped_duplicate_reports_the_document_s_current_status(gateway):
    document_id = upload(gateway).json()["document_id"]
    assert gateway.post(f"/v1/documents/{document_id}/cancel").status_code == 200

    again = upload(gateway, on_duplicate="skip")

    assert again.status_code == 200
    assert (again.json()["document_id"], again.json()["status"]) == (document_id, "cancelled")


def test_new_makes_another_document_and_the_bytes_then_name_the_newest(gateway, broker):
    first = upload(gateway).json()["document_id"]

    second = upload(gateway, on_duplicate="new")

    assert second.status_code == 202 and second.json()["duplicate"] is False
    assert second.json()["document_id"] != first
    assert len(documents(gateway)) == 2 and broker.length(Queue.EXTRACT.value) == 2
    assert upload(gateway).json()["document_id"] == second.json()["document_id"]


def test_reprocess_starts_a_new_version_of_the_existing_document(gateway, broker):
    first = upload(gateway).json()

    again = upload(gateway, on_duplicate="reprocess")

    assert again.status_code == 202, again.text
    body = again.json()
    assert (body["document_id"], body["duplicate"], body["status"]) == (first["document_id"], True, "queued")
    assert body["task_id"] != first["task_id"]
    record = gateway.get(f"/v1/documents/{first['document_id']}").json()
    assert (record["version"], record["task_id"]) == (2, body["task_id"])
    assert len(documents(gateway)) == 1 and len(stored_files(gateway)) == 1
    assert [m.args[0]["version"] for m in broker.messages(Queue.EXTRACT.value)] == [1, 2]


def test_deleting_a_document_forgets_its_bytes(gateway, redis_client):
    first = upload(gateway).json()["document_id"]
    assert gateway.delete(f"/v1/documents/{first}").status_code == 204
    assert redis_client.hlen("docflow:tenant:tenant-a:digests") == 0
    assert redis_client.hlen("docflow:tenant:tenant-a:digest_of") == 0

    again = upload(gateway)

    assert again.status_code == 202 and again.json()["duplicate"] is False
    assert again.json()["document_id"] != first


def test_deleting_an_older_copy_keeps_the_newer_one_known(gateway):
    older = upload(gateway).json()["document_id"]
    newer = upload(gateway, on_duplicate="new").json()["document_id"]
    assert gateway.delete(f"/v1/documents/{older}").status_code == 204

    again = upload(gateway)

    assert (again.status_code, again.json()["document_id"]) == (200, newer)


def test_bytes_naming_a_document_that_no_longer_exists_are_not_a_duplicate(gateway):
    gone = upload(gateway).json()["document_id"]
    gateway.client.app.state.services.status.delete(gone, "tenant-a")  # the record only, not the digest

    again = upload(gateway)

    assert again.status_code == 202 and again.json()["duplicate"] is False
    assert again.json()["document_id"] != gone


def test_reprocess_of_bytes_whose_document_is_gone_makes_a_new_document(gateway):
    gone = upload(gateway).json()["document_id"]
    gateway.client.app.state.services.status.delete(gone, "tenant-a")

    again = upload(gateway, on_duplicate="reprocess")

    assert again.status_code == 202 and again.json()["duplicate"] is False
    assert len(documents(gateway)) == 1


def test_duplicates_are_per_tenant(gateway):
    mine = upload(gateway, tenant="tenant-a").json()["document_id"]

    theirs = upload(gateway, tenant="tenant-b")

    assert theirs.status_code == 202 and theirs.json()["duplicate"] is False
    assert theirs.json()["document_id"] != mine


def test_an_upload_whose_enqueue_failed_leaves_no_duplicate_behind(gateway, redis_client, monkeypatch):
    pipeline = gateway.client.app.state.services.pipeline
    real_enqueue = pipeline.enqueue_document

    def broker_gone(*_args, **_kwargs):
        raise OperationalError("Error 111 connecting to redis. Connection refused.")

    monkeypatch.setattr(pipeline, "enqueue_document", broker_gone)
    assert upload(gateway).status_code == 503
    assert redis_client.hlen("docflow:tenant:tenant-a:digest_of") == 0
    monkeypatch.setattr(pipeline, "enqueue_document", real_enqueue)

    retried = upload(gateway)

    assert retried.status_code == 202 and retried.json()["duplicate"] is False


def test_different_bytes_are_not_duplicates(gateway):
    upload(gateway)
    other = upload(gateway, data=gateway.TEXT + b"One more line.\n")
    assert other.status_code == 202 and other.json()["duplicate"] is False
    assert len(documents(gateway)) == 2


@pytest.mark.parametrize("value", ["SKIP", "ignore", ""])
def test_an_unknown_on_duplicate_is_422(gateway, value):
    response = upload(gateway, on_duplicate=value)
    assert response.status_code == 422, response.text
    assert documents(gateway) == [] and stored_files(gateway) == []

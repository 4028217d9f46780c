"""Delete, reprocess and cancel."""

from docflow.shared.names import Queue, Task
from docflow.shared.status import DocumentError, StatusStore


def test_delete_removes_storage_and_record_and_enqueues_vector_deletion(gateway, broker):
    document_id = gateway.accepted()["document_id"]
    document_dir = gateway.storage_root / f"tenants/tenant-a/documents/{document_id}"
    (document_dir / "v1").mkdir()
    (document_dir / "v1" / "chunks.json").write_text("[]")  # an artifact a stage wrote

    response = gateway.delete(f"/v1/documents/{document_id}")

    assert response.status_code == 204
    assert response.content == b""
    assert not document_dir.exists()
    assert gateway.get(f"/v1/documents/{document_id}").status_code == 404
    assert gateway.get("/v1/documents").json()["total"] == 0
    [message] = broker.messages(Queue.INDEX.value)
    assert message.task == Task.DELETE_DOCUMENT.value
    assert message.args == ["tenant-a", document_id]
    assert gateway.delete(f"/v1/documents/{document_id}").status_code == 404


def test_reprocess_bumps_version_and_enqueues_a_new_chain(gateway, broker):
    first = gateway.accepted()
    document_id = first["document_id"]

    response = gateway.post(f"/v1/documents/{document_id}/reprocess")

    assert response.status_code == 202
    again = response.json()
    assert again["document_id"] == document_id and again["status"] == "queued"
    assert again["task_id"] != first["task_id"]
    record = gateway.get(f"/v1/documents/{document_id}").json()
    assert record["version"] == 2 and record["task_id"] == again["task_id"] and record["status"] == "queued"
    old, new = broker.messages(Queue.EXTRACT.value)
    assert old.args[0]["version"] == 1
    assert new.args[0]["version"] == 2
    assert new.task_id == f"{again['task_id']}.extract"
    assert gateway.get(f"/v1/tasks/{again['task_id']}").json()["document_id"] == document_id


def test_reprocess_restarts_a_failed_document(gateway, redis_client):
    document_id = gateway.accepted()["document_id"]
    store = StatusStore(redis_client)
    store.fail(document_id, 1, DocumentError(code="corrupt_file", message="bad xref", stage="extract"))
    assert gateway.get(f"/v1/documents/{document_id}").json()["error"]["code"] == "corrupt_file"

    assert gateway.post(f"/v1/documents/{document_id}/reprocess").status_code == 202
    record = gateway.get(f"/v1/documents/{document_id}").json()
    assert (record["status"], record["error"], record["progress"]) == ("queued", None, 0)


def test_cancel_returns_the_cancelled_record_once(gateway):
    document_id = gateway.accepted()["document_id"]

    response = gateway.post(f"/v1/documents/{document_id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["document_id"] == document_id
    again = gateway.post(f"/v1/documents/{document_id}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == f"document {document_id} is already cancelled; nothing to cancel"


def test_cancel_of_a_completed_document_is_409(gateway, redis_client):
    document_id = gateway.accepted()["document_id"]
    StatusStore(redis_client).complete(document_id, 1, pages=1, chunks=2, vectors=2)
    response = gateway.post(f"/v1/documents/{document_id}/cancel")
    assert response.status_code == 409
    assert "already completed" in response.json()["detail"]
    assert gateway.get(f"/v1/documents/{document_id}").json()["status"] == "completed"


def test_record_shows_what_the_stages_wrote(gateway, redis_client):
    document_id = gateway.accepted()["document_id"]
    before = gateway.get(f"/v1/documents/{document_id}").json()
    assert (before["embedding_model"], before["embedding_runtime"]) == (None, None)
    StatusStore(redis_client).complete(document_id, 1, pages=3, chunks=7, vectors=7,
                                       embedding_model="minilm:all-MiniLM-L6-v2:384", embedding_runtime="onnx-int8")
    record = gateway.get(f"/v1/documents/{document_id}").json()
    assert (record["status"], record["progress"]) == ("completed", 100)
    assert (record["pages"], record["chunks"], record["vectors"]) == (3, 7, 7)
    assert record["completed_at"] is not None
    # The model its vectors come from (a tenant's index holds one) and what computed them.
    assert (record["embedding_model"], record["embedding_runtime"]) == ("minilm:all-MiniLM-L6-v2:384", "onnx-int8")

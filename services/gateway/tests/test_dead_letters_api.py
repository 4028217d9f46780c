"""/v1/admin/dead-letters: list, inspect, replay and discard, for operators' keys only.

The letters here are written the way the workers write them (DeadLetterStore), and a
replay is checked on the real Redis queue it lands in; tests/e2e/test_faults_*.py
replay letters that real workers dead-lettered.
"""

import pytest
from pydantic import SecretStr

from docflow.gateway.pipeline import stage_task_id
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import ErrorCode
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Queue, Stage, Task
from docflow.shared.status import DocumentError, DocumentStatus, StatusStore

ADMIN_KEY = "admin-7d1f0c"


@pytest.fixture
def admin(make_gateway):
    return make_gateway(admin_api_keys=SecretStr(ADMIN_KEY))


def as_admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def failed_at_embed(admin, redis_client) -> tuple[dict, PipelineMessage]:
    """A document whose embed stage ran out of retries, as the embedder leaves it."""
    accepted = admin.accepted()
    status = StatusStore(redis_client)
    record = status.get(accepted["document_id"])
    message = PipelineMessage(document_id=record.document_id, tenant=record.tenant, version=1,
                              content_type=record.content_type, original_key=record.original_key)
    message = message.model_copy(update={"chunks_key": message.key("chunks.json")})
    assert status.begin_stage(record.document_id, 1, "embed", DocumentStatus.EMBEDDING, 40) == 1
    status.fail(record.document_id, 1, DocumentError(code=ErrorCode.EMBEDDER_UNAVAILABLE,
                                                     message="connection refused", stage="embed"))
    letter = DeadLetterStore(redis_client).add(
        task_name=Task.EMBED.value, task_id=stage_task_id(accepted["task_id"], Stage.EMBED),
        queue=Queue.EMBED.value, args=[message.model_dump()], stage="embed",
        error_code=ErrorCode.EMBEDDER_UNAVAILABLE.value, error_message="connection refused", attempts=4,
        document_id=record.document_id, tenant=record.tenant)
    return {**accepted, "letter_id": letter.id}, message


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/admin/dead-letters"),
    ("GET", "/v1/admin/dead-letters/x"),
    ("POST", "/v1/admin/dead-letters/x/replay"),
    ("DELETE", "/v1/admin/dead-letters/x"),
])
def test_dead_letters_are_for_admin_keys_only(admin, method, path):
    assert admin.client.request(method, path).status_code == 401
    assert admin.client.request(method, path, headers=admin.auth()).status_code == 403


def test_lists_newest_first_with_error_stage_and_attempts(admin, redis_client):
    first, _ = failed_at_embed(admin, redis_client)
    second, _ = failed_at_embed(admin, redis_client)
    body = admin.client.get("/v1/admin/dead-letters", headers=as_admin()).json()
    assert body["total"] == 2
    assert [d["id"] for d in body["dead_letters"]] == [second["letter_id"], first["letter_id"]]
    letter = body["dead_letters"][0]
    assert (letter["stage"], letter["error_code"], letter["attempts"]) == ("embed", "embedder_unavailable", 4)
    assert letter["document_id"] == second["document_id"] and letter["replayable"] is True
    page = admin.client.get("/v1/admin/dead-letters?limit=1&offset=1", headers=as_admin()).json()
    assert [d["id"] for d in page["dead_letters"]] == [first["letter_id"]]


def test_replay_reopens_the_document_and_resumes_the_chain_at_the_failed_stage(admin, redis_client, broker):
    accepted, message = failed_at_embed(admin, redis_client)
    broker.client.delete(Queue.EXTRACT.value)  # the original upload's extract message

    response = admin.client.post(f"/v1/admin/dead-letters/{accepted['letter_id']}/replay", headers=as_admin())

    assert response.status_code == 202, response.text
    assert response.json() == {"dead_letter_id": accepted["letter_id"], "task_name": Task.EMBED.value,
                               "task_id": accepted["task_id"], "document_id": accepted["document_id"],
                               "status": "replayed"}
    record = admin.get(f"/v1/documents/{accepted['document_id']}").json()
    assert (record["status"], record["error"], record["attempts"], record["version"]) == (
        "queued", None, 0, 1)
    assert broker.length(Queue.EXTRACT.value) == 0, "extraction is not redone"
    (queued,) = broker.messages(Queue.EMBED.value)
    assert queued.task == Task.EMBED.value and queued.args == [message.model_dump()]
    assert queued.task_id == stage_task_id(accepted["task_id"], Stage.EMBED)
    assert [step["task"] for step in queued.chain] == [Task.INDEX.value]
    assert admin.client.get("/v1/admin/dead-letters", headers=as_admin()).json()["total"] == 0
    again = admin.client.post(f"/v1/admin/dead-letters/{accepted['letter_id']}/replay", headers=as_admin())
    assert again.status_code == 404


def test_a_document_reprocessed_since_is_not_replayed(admin, redis_client, broker):
    accepted, _ = failed_at_embed(admin, redis_client)
    assert admin.post(f"/v1/documents/{accepted['document_id']}/reprocess").status_code == 202
    embed_backlog = broker.length(Queue.EMBED.value)
    response = admin.client.post(f"/v1/admin/dead-letters/{accepted['letter_id']}/replay", headers=as_admin())
    assert response.status_code == 409 and "reprocessed" in response.json()["detail"]
    assert broker.length(Queue.EMBED.value) == embed_backlog
    assert admin.client.get(f"/v1/admin/dead-letters/{accepted['letter_id']}",
                            headers=as_admin()).status_code == 200, "a refused replay keeps the letter"


def test_a_document_that_is_not_failed_is_not_replayed(admin, redis_client):
    accepted, _ = failed_at_embed(admin, redis_client)
    StatusStore(redis_client).reopen(accepted["document_id"], 1)  # e.g. replayed by other means
    response = admin.client.post(f"/v1/admin/dead-letters/{accepted['letter_id']}/replay", headers=as_admin())
    assert response.status_code == 409 and "not failed" in response.json()["detail"]


def test_an_undecodable_message_can_be_inspected_and_discarded_but_not_replayed(admin, redis_client):
    letter = DeadLetterStore(redis_client).add(
        task_name="docflow.extract.document", task_id="t1", queue=Queue.EXTRACT.value, args=[],
        stage="extract", error_code=ErrorCode.UNDECODABLE_MESSAGE.value,
        error_message="ContentDisallowed: Refusing to deserialize untrusted content of type pickle",
        attempts=1, replayable=False, content_type="application/x-python-serialize",
        body_excerpt="\\x80\\x04")
    response = admin.client.post(f"/v1/admin/dead-letters/{letter.id}/replay", headers=as_admin())
    assert response.status_code == 409 and "could not be decoded" in response.json()["detail"]
    shown = admin.client.get(f"/v1/admin/dead-letters/{letter.id}", headers=as_admin()).json()
    assert shown["content_type"] == "application/x-python-serialize" and shown["replayable"] is False
    assert admin.client.delete(f"/v1/admin/dead-letters/{letter.id}", headers=as_admin()).status_code == 204
    assert admin.client.get(f"/v1/admin/dead-letters/{letter.id}", headers=as_admin()).status_code == 404


def test_a_task_outside_the_document_chain_is_re_sent_as_it_was(admin, redis_client, broker):
    letter = DeadLetterStore(redis_client).add(
        task_name=Task.DELETE_DOCUMENT.value, task_id="d1", queue=Queue.INDEX.value, args=["tenant-a", "doc1"],
        stage="index", error_code="vector_store_unavailable", error_message="timeout", attempts=4)
    response = admin.client.post(f"/v1/admin/dead-letters/{letter.id}/replay", headers=as_admin())
    assert response.status_code == 202
    (queued,) = broker.messages(Queue.INDEX.value)
    assert (queued.task, queued.args, queued.task_id) == (Task.DELETE_DOCUMENT.value, ["tenant-a", "doc1"],
                                                          response.json()["task_id"])


def test_a_failed_replay_keeps_the_letter_and_leaves_the_document_failed(admin, redis_client, monkeypatch):
    accepted, _ = failed_at_embed(admin, redis_client)
    services = admin.client.app.state.services

    def broker_gone(*_args, **_kwargs):
        raise ConnectionError("broker gone")

    monkeypatch.setattr(services.pipeline, "resume_document", broker_gone)
    with pytest.raises(ConnectionError):
        admin.client.post(f"/v1/admin/dead-letters/{accepted['letter_id']}/replay", headers=as_admin())
    record = StatusStore(redis_client).get(accepted["document_id"])
    assert record.status == DocumentStatus.FAILED and record.error.code == ErrorCode.EMBEDDER_UNAVAILABLE
    assert DeadLetterStore(redis_client).get(accepted["letter_id"]) is not None


def test_an_offset_beyond_redis_range_is_a_422_not_a_500(admin):
    """Found by tests/e2e/test_fuzz_api.py: LRANGE cannot take an offset of 3.2e22."""
    response = admin.client.get("/v1/admin/dead-letters?offset=32126676963412458602496", headers=as_admin())
    assert response.status_code == 422

"""Fair sharing: the lane each version of a document runs in (docflow.gateway.lanes).

A tenant with DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT documents or more in flight gets its
next ones on the bulk lanes; everyone else stays on the document queues. Checked on the
real Redis queues the messages land in, with the chain each message carries; the
ordering this buys with real workers is tests/e2e/test_fair_share.py's.
"""

import pytest
from pydantic import SecretStr

from docflow.gateway.lanes import is_bulk_batch, runs_in_bulk_lane
from docflow.gateway.pipeline import stage_task_id
from docflow.gateway.recovery import recover, stranded
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import ErrorCode
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Queue, Stage, Task
from docflow.shared.status import DocumentError, DocumentStatus, StatusStore

TEXT = b"The quick brown fox reads the docflow handbook.\n" * 20
ADMIN_KEY = "admin-5e0b2a"


def text(n: int) -> bytes:
    return f"Document number {n}: ".encode() + TEXT


@pytest.mark.parametrize(("in_flight", "limit", "bulk"), [
    (0, 8, False), (7, 8, False), (8, 8, True), (500, 8, True),
    (0, 1, False), (1, 1, True),
    (10_000, 0, False),  # 0: fair sharing off
])
def test_a_tenant_goes_bulk_once_the_limit_is_in_flight(in_flight, limit, bulk):
    assert runs_in_bulk_lane(in_flight, limit) is bulk


@pytest.fixture
def gateway(make_gateway):
    return make_gateway(fair_share_interactive_limit=2, admin_api_keys=SecretStr(ADMIN_KEY))


def test_past_the_limit_a_tenants_uploads_take_the_bulk_lane_and_others_do_not(gateway, broker):
    first = [gateway.accepted(data=text(n))["document_id"] for n in range(4)]
    other = gateway.accepted(data=text(99), tenant="tenant-b")["document_id"]

    interactive = [m.args[0]["document_id"] for m in broker.messages(Queue.EXTRACT.value)]
    bulk = broker.messages(Queue.BULK_EXTRACT.value)
    assert interactive == [*first[:2], other]
    assert [m.args[0]["document_id"] for m in bulk] == first[2:]
    # The lane is carried by the chain: each later stage's signature names its bulk queue.
    for message in bulk:
        assert [(s["task"], s["options"]["queue"]) for s in reversed(message.chain)] == [
            (Task.EMBED.value, Queue.BULK_EMBED.value), (Task.INDEX.value, Queue.BULK_INDEX.value)]
    # ...and the document lane's chain names none (its route is the queue).
    assert all("queue" not in step["options"]
               for message in broker.messages(Queue.EXTRACT.value) for step in message.chain)


@pytest.mark.parametrize(("files", "limit", "bulk"), [
    (3, 2, True), (2, 2, False), (1, 1, False), (1000, 0, False)])
def test_a_batch_of_more_files_than_the_limit_is_bulk_whole(files, limit, bulk):
    assert is_bulk_batch(files, limit) is bulk


def test_a_big_batch_goes_bulk_from_its_first_file(gateway, broker):
    """By the count alone its first two files would take the document queues, ahead of
    any other tenant's upload sent just after it."""
    parts = [("file", (f"f{n}.txt", text(n), "text/plain")) for n in range(5)]
    response = gateway.client.post("/v1/batches", headers=gateway.auth(), files=parts)
    assert response.status_code == 202, response.text
    assert broker.length(Queue.EXTRACT.value) == 0 and broker.length(Queue.BULK_EXTRACT.value) == 5


def test_a_small_batch_is_judged_by_the_count_like_uploads(gateway, broker):
    gateway.accepted(data=text(50))
    parts = [("file", (f"f{n}.txt", text(n), "text/plain")) for n in range(2)]
    response = gateway.client.post("/v1/batches", headers=gateway.auth(), files=parts)
    assert response.status_code == 202, response.text
    # One in flight before it: its first file makes two, so the second goes bulk.
    assert broker.length(Queue.EXTRACT.value) == 2 and broker.length(Queue.BULK_EXTRACT.value) == 1


def test_only_documents_in_flight_count(gateway, broker, redis_client):
    status = StatusStore(redis_client)
    done = [gateway.accepted(data=text(n))["document_id"] for n in range(2)]
    for document_id in done:
        assert status.complete(document_id, 1, pages=1, chunks=1, vectors=1)
    assert status.in_flight_of_tenant("tenant-a") == 0

    gateway.accepted(data=text(10))
    assert status.in_flight_of_tenant("tenant-a") == 1
    assert broker.length(Queue.EXTRACT.value) == 3 and broker.length(Queue.BULK_EXTRACT.value) == 0


def test_a_reprocess_past_the_limit_goes_bulk(gateway, broker):
    document_ids = [gateway.accepted(data=text(n))["document_id"] for n in range(2)]
    response = gateway.post(f"/v1/documents/{document_ids[0]}/reprocess")
    assert response.status_code == 202, response.text
    (reprocessed,) = broker.messages(Queue.BULK_EXTRACT.value)
    assert (reprocessed.args[0]["document_id"], reprocessed.args[0]["version"]) == (document_ids[0], 2)


def test_fair_sharing_off_puts_everything_on_the_document_queues(make_gateway, broker):
    gateway = make_gateway(fair_share_interactive_limit=0)
    for n in range(5):
        gateway.accepted(data=text(n))
    assert broker.length(Queue.EXTRACT.value) == 5 and broker.length(Queue.BULK_EXTRACT.value) == 0


@pytest.mark.parametrize(("failed_on", "resumed_on"), [
    (Queue.BULK_EMBED, Queue.BULK_EMBED), (Queue.EMBED, Queue.EMBED)])
def test_a_replayed_dead_letter_resumes_in_the_lane_it_failed_in(gateway, broker, redis_client,
                                                                  failed_on, resumed_on):
    """The embedder records the queue its message came from (StageTask.delivered_from)."""
    accepted = gateway.accepted()
    status = StatusStore(redis_client)
    record = status.get(accepted["document_id"])
    message = PipelineMessage(document_id=record.document_id, tenant=record.tenant, version=1,
                              content_type=record.content_type, original_key=record.original_key)
    assert status.begin_stage(record.document_id, 1, "embed", DocumentStatus.EMBEDDING, 40) == 1
    status.fail(record.document_id, 1, DocumentError(code=ErrorCode.EMBEDDER_UNAVAILABLE,
                                                     message="connection refused", stage="embed"))
    letter = DeadLetterStore(redis_client).add(
        task_name=Task.EMBED.value, task_id=stage_task_id(accepted["task_id"], Stage.EMBED),
        queue=failed_on.value, args=[message.model_dump()], stage="embed",
        error_code=ErrorCode.EMBEDDER_UNAVAILABLE.value, error_message="connection refused", attempts=4,
        document_id=record.document_id, tenant=record.tenant)

    response = gateway.client.post(f"/v1/admin/dead-letters/{letter.id}/replay",
                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    assert response.status_code == 202, response.text
    (queued,) = broker.messages(resumed_on.value)
    assert queued.task == Task.EMBED.value and queued.args == [message.model_dump()]
    other = Queue.EMBED if resumed_on is Queue.BULK_EMBED else Queue.BULK_EMBED
    assert broker.length(other.value) == 0
    if resumed_on is Queue.BULK_EMBED:
        assert [s["options"]["queue"] for s in queued.chain] == [Queue.BULK_INDEX.value]


def test_a_document_waiting_in_the_bulk_lane_is_not_stranded(gateway, broker):
    """The recovery sweep looks for a document's message in every queue, bulk lanes included."""
    for n in range(3):
        gateway.accepted(data=text(n))
    assert broker.length(Queue.BULK_EXTRACT.value) == 1
    assert stranded(gateway.client.app.state.services, min_idle_seconds=0) == {}


def test_a_stranded_bulk_document_restarts_in_the_lane_its_tenant_is_due(gateway, broker, redis_client):
    """Recovery is a new version: its lane is chosen again, by the tenant's count."""
    document_ids = [gateway.accepted(data=text(n))["document_id"] for n in range(3)]
    redis_client.rpop(Queue.BULK_EXTRACT.value)  # the third's message lost between BRPOP and unacked

    assert recover(gateway.client.app.state.services, min_idle_seconds=0) == [document_ids[2]]
    (message,) = broker.messages(Queue.BULK_EXTRACT.value)  # two others in flight: still bulk
    assert (message.args[0]["document_id"], message.args[0]["version"]) == (document_ids[2], 2)

"""Starting a version (upload, reprocess, recovery) has one failure policy: a start
whose first message cannot be enqueued is undone, and the caller says so (503) or
tries again later (recovery). Nothing is ever left `queued` with nothing queued.

The enqueue really fails: the gateway's Celery producer is pointed at a port where
nothing listens, while the status store keeps its real Redis.
"""

import pytest

from docflow.devstack.processes import free_port
from docflow.gateway.recovery import recover
from docflow.shared.names import Queue
from docflow.shared.status import StatusStore


@pytest.fixture
def services(gateway):
    return gateway.client.app.state.services


def _point_the_producer_at(services, url: str) -> str:
    """Publish to `url` from now on (the producer pool reconnects); returns the old URL."""
    celery = services.celery
    previous = celery.conf.broker_url
    celery._after_fork()  # what Celery does to start its pools afresh
    celery.conf.broker_url = url
    return previous


def _break_the_broker(services) -> str:
    return _point_the_producer_at(services, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there


def _completed_document(gateway, redis_client) -> tuple[str, dict]:
    document_id = gateway.accepted()["document_id"]
    redis_client.delete(Queue.EXTRACT.value)  # as if the pipeline had run it
    StatusStore(redis_client).complete(document_id, 1, vectors=3, chunks=3, pages=1)
    return document_id, gateway.get(f"/v1/documents/{document_id}").json()


def test_a_reprocess_that_cannot_be_enqueued_is_503_and_leaves_the_document_as_it_was(
        gateway, broker, redis_client, services):
    document_id, before = _completed_document(gateway, redis_client)
    owners_before = set(redis_client.keys("docflow:task:*"))
    _break_the_broker(services)

    response = gateway.post(f"/v1/documents/{document_id}/reprocess")

    assert response.status_code == 503 and response.headers["Retry-After"]
    after = gateway.get(f"/v1/documents/{document_id}").json()
    assert after == before, "not left queued with nothing queued: exactly as before"
    assert broker.length(Queue.EXTRACT.value) == 0
    assert set(redis_client.keys("docflow:task:*")) == owners_before, "the new task's owner is gone too"
    assert gateway.get("/v1/documents", params={"status": "completed"}).json()["total"] == 1
    assert gateway.get("/v1/documents", params={"status": "queued"}).json()["total"] == 0
    assert document_id not in StatusStore(redis_client).in_flight()


def test_a_reprocess_once_the_broker_is_back_starts_the_next_version(gateway, broker, redis_client, services):
    document_id, _ = _completed_document(gateway, redis_client)
    working = _break_the_broker(services)
    assert gateway.post(f"/v1/documents/{document_id}/reprocess").status_code == 503
    _point_the_producer_at(services, working)

    assert gateway.post(f"/v1/documents/{document_id}/reprocess").status_code == 202
    record = gateway.get(f"/v1/documents/{document_id}").json()
    assert (record["version"], record["status"]) == (2, "queued"), "the failed start used no version"
    (message,) = broker.messages(Queue.EXTRACT.value)
    assert message.args[0]["version"] == 2


def test_a_recovery_that_cannot_be_enqueued_leaves_the_document_stranded_for_the_next_sweep(
        gateway, broker, redis_client, services):
    document_id = gateway.accepted()["document_id"]
    redis_client.rpop(Queue.EXTRACT.value)  # its message lost
    working = _break_the_broker(services)
    with pytest.raises(Exception):
        recover(services, min_idle_seconds=0)
    record = StatusStore(redis_client).get(document_id)
    assert (record.version, record.status.value) == (1, "queued"), "the restart was undone"
    _point_the_producer_at(services, working)

    assert recover(services, min_idle_seconds=0) == [document_id]
    (message,) = broker.messages(Queue.EXTRACT.value)
    assert message.args[0]["version"] == 2

"""The recovery sweep starts again only documents no message refers to any more.

A message lives in a stage's queue (a Redis list) until a worker takes it, then in
kombu's `unacked` hash until it is acknowledged; a document whose message is in
neither, and which has not moved for a while, was stranded by a lost message
(tests/e2e/test_faults_dependencies.py shows how a Redis crash does that).
"""

import json

import pytest

from docflow.gateway.recovery import UNACKED_HASH, recover, stranded, sweep_once
from docflow.shared.names import Queue
from docflow.shared.status import DocumentError, StatusStore


@pytest.fixture
def services(gateway):
    return gateway.client.app.state.services


def accepted(gateway, broker) -> dict:
    document = gateway.accepted()
    assert broker.length(Queue.EXTRACT.value) >= 1
    return document


def test_a_document_with_its_message_queued_is_not_stranded(gateway, broker, services):
    accepted(gateway, broker)
    assert stranded(services, min_idle_seconds=0) == {}


def test_a_document_whose_message_vanished_is_started_again_as_a_new_version(gateway, broker, services,
                                                                               redis_client):
    document = accepted(gateway, broker)
    redis_client.rpop(Queue.EXTRACT.value)  # taken by a BRPOP that was never recorded as unacked

    assert recover(services, min_idle_seconds=0) == [document["document_id"]]

    record = StatusStore(redis_client).get(document["document_id"])
    assert (record.version, record.status.value) == (2, "queued")
    (message,) = broker.messages(Queue.EXTRACT.value)
    assert message.args[0]["document_id"] == document["document_id"] and message.args[0]["version"] == 2
    assert gateway.get(f"/v1/tasks/{record.task_id}").status_code == 200, "the new run can be followed"
    assert recover(services, min_idle_seconds=0) == [], "its new message is found"


def test_a_message_delivered_to_a_worker_counts_as_present(gateway, broker, services, redis_client):
    document = accepted(gateway, broker)
    raw = redis_client.rpop(Queue.EXTRACT.value)
    # kombu's record of a delivered message: [message, exchange, routing key]
    redis_client.hset(UNACKED_HASH, "tag-1", json.dumps([json.loads(raw), "", Queue.EXTRACT.value]))
    assert stranded(services, min_idle_seconds=0) == {}
    assert document["document_id"] not in recover(services, min_idle_seconds=0)


def test_documents_are_left_alone_until_idle_long_enough(gateway, broker, services, redis_client):
    accepted(gateway, broker)
    redis_client.rpop(Queue.EXTRACT.value)
    assert recover(services, min_idle_seconds=3600) == []


def test_final_and_deleted_documents_are_not_in_flight(gateway, broker, services, redis_client):
    failed = accepted(gateway, broker)
    deleted = accepted(gateway, broker)
    status = StatusStore(redis_client)
    status.fail(failed["document_id"], 1, DocumentError(code="corrupt_file", message="x", stage="extract"))
    assert gateway.delete(f"/v1/documents/{deleted['document_id']}").status_code == 204
    assert status.in_flight() == []
    redis_client.delete(Queue.EXTRACT.value)
    assert recover(services, min_idle_seconds=0) == []


def test_one_replica_sweeps_at_a_time(gateway, broker, services, redis_client):
    accepted(gateway, broker)
    redis_client.rpop(Queue.EXTRACT.value)
    assert sweep_once(services) == []  # not idle for the default 120 s, but the lock is taken
    assert sweep_once(services) is None

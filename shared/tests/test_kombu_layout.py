"""kombu's Redis layout as docflow reads it, checked against messages kombu itself stored.

A real Celery app publishes a real task message to a real redis-server; a real kombu
channel then takes it as a worker does (basic_get without no_ack: kombu records it in
its unacked hash and index). If kombu renamed a key or changed its envelope, these
fail: the admin view and the gateway's recovery both read through this one module.
"""

import time

import pytest

from docflow.shared import kombu_layout
from docflow.shared.celery_app import create_celery_app
from docflow.shared.names import Queue, Task
from docflow.shared.settings import Settings

MESSAGE = {"document_id": "doc-1", "tenant": "acme", "version": 3, "content_type": "text/plain",
           "original_key": "k"}


@pytest.fixture
def app(redis_server, redis_client):
    celery = create_celery_app("layout-test", Settings(redis_url=redis_server.url))
    yield celery
    celery.close()


def _publish(app, eta_seconds: float | None = None) -> str:
    options = {"countdown": eta_seconds} if eta_seconds else {}
    return app.signature(Task.EMBED.value, args=[MESSAGE]).apply_async(task_id="root-1.embed", **options).id


def test_a_queued_message_decodes_to_its_task_arguments_and_enqueue_time(app, redis_client):
    before = time.time()
    _publish(app)
    (raw,) = list(kombu_layout.queued(redis_client, Queue.EMBED.value))
    envelope = kombu_layout.decode(raw)
    assert (envelope.task, envelope.task_id, envelope.root_task_id) == (Task.EMBED.value, "root-1.embed", "root-1")
    assert envelope.body[0] == [MESSAGE], "Celery protocol 2: [args, kwargs, embed]"
    assert before - 1 <= envelope.enqueued_at <= time.time() + 1
    assert envelope.eta is None and envelope.queue is None


def test_a_delivered_message_is_found_in_kombus_unacked_hash_and_index(app, redis_client):
    _publish(app, eta_seconds=30)
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        delivered_at = time.time()
        message = channel.basic_get(Queue.EMBED.value, no_ack=False)
        assert message is not None
        ((tag, raw),) = list(kombu_layout.unacked(redis_client))
        assert tag == message.delivery_tag
        envelope = kombu_layout.decode(raw)
        assert envelope.queue == Queue.EMBED.value, "the routing key is the queue"
        assert envelope.task == Task.EMBED.value and envelope.body[0] == [MESSAGE]
        assert delivered_at + 25 < envelope.eta < delivered_at + 35, "a countdown's ETA, as epoch seconds"
        ((indexed_tag, at),) = kombu_layout.delivered_before(redis_client, time.time() + 1)
        assert indexed_tag == tag and delivered_at - 1 <= at <= time.time()
        assert kombu_layout.delivered_before(redis_client, delivered_at - 5) == []
        channel.basic_ack(message.delivery_tag)
    assert list(kombu_layout.unacked(redis_client)) == []


def test_what_is_not_a_kombu_message_decodes_to_none():
    for raw in (None, "", "not json", "[1, 2]", '"text"', "[[], 1, 2]"):
        assert kombu_layout.decode(raw) is None
    assert kombu_layout.decode('{"headers": {"task": 5}, "body": "%%%"}').task is None

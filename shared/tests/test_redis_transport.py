"""The broker transport: kombu's Redis transport with one client per channel, against a real Redis."""

import pytest
import redis
from kombu.transport import redis as kombu_redis

from docflow.shared import redis_transport
from docflow.shared.celery_app import create_celery_app
from docflow.shared.settings import Settings


@pytest.fixture
def app(redis_server):
    app = create_celery_app("test-transport", Settings(redis_url=redis_server.url))
    yield app
    app.close()


def test_the_celery_app_uses_the_reusing_channel_for_redis_urls(app):
    with app.connection_for_write() as connection:
        assert type(connection.default_channel) is redis_transport.Channel


def test_a_url_kombu_reaches_otherwise_keeps_kombus_own_transport():
    app = create_celery_app("test-transport", Settings(redis_url="memory://"))
    assert app.conf.broker_transport is None


def test_publishes_share_one_client_and_arrive_in_order(app, redis_server, monkeypatch):
    clients = []
    make = kombu_redis.Channel._create_client
    monkeypatch.setattr(kombu_redis.Channel, "_create_client",
                        lambda self, asynchronous=False: clients.append(asynchronous) or make(self, asynchronous))
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue("transport-test")
        for number in range(5):
            queue.put({"n": number})
        received = []
        for _ in range(5):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        queue.close()
    assert received == [0, 1, 2, 3, 4]
    # kombu's own channel makes a client per publish, get and ack: 22 here.
    assert clients.count(False) == 1
    assert redis.Redis.from_url(redis_server.url).llen("transport-test") == 0


def test_a_replaced_connection_pool_gets_a_new_client(app):
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        channel._disconnect_pools()  # what kombu does when the connection is reset
        second = channel._create_client()
        assert second is not first
        assert second.connection_pool is channel.pool
        assert second.ping()

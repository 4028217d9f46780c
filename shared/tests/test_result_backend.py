"""The workers' result backend: Celery's semantics, one round trip per stored state."""

import pytest
import redis
from celery import Celery, states

from docflow.shared.celery_app import WorkerResultBackend, worker_result_backend
from docflow.shared.settings import Settings


@pytest.fixture
def app(redis_server, redis_client) -> Celery:
    settings = Settings(redis_url=redis_server.url)
    app = Celery("test-backend", broker=settings.redis_url, backend=worker_result_backend(settings))
    app.conf.result_expires = 3600
    yield app
    app.close()


def test_the_worker_backend_setting_names_the_one_round_trip_backend(app):
    assert type(app.backend) is WorkerResultBackend


def test_a_task_state_is_stored_published_and_kept_for_result_expires(app, redis_server):
    listener = redis.Redis.from_url(redis_server.url).pubsub()
    key = app.backend.get_key_for_task("t1")
    listener.subscribe(key)
    listener.get_message(timeout=1)  # the subscription's confirmation

    app.backend.store_result("t1", {"pid": 1}, states.STARTED)
    app.backend.store_result("t1", {"document_id": "d1"}, states.SUCCESS)

    result = app.AsyncResult("t1")
    assert (result.state, result.result) == (states.SUCCESS, {"document_id": "d1"})
    published = [listener.get_message(timeout=1) for _ in range(2)]
    assert [app.backend.decode(m["data"])["status"] for m in published] == [states.STARTED, states.SUCCESS]
    assert 0 < app.backend.client.ttl(key) <= 3600


def test_a_success_is_never_overwritten(app):
    """A lost twin of a finished task (redelivered, or a late failure) must not undo it."""
    app.backend.store_result("t2", 42, states.SUCCESS)
    app.backend.store_result("t2", None, states.STARTED)
    app.backend.mark_as_failure("t2", RuntimeError("late twin"))
    result = app.AsyncResult("t2")
    assert (result.state, result.result) == (states.SUCCESS, 42)

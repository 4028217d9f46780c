"""Redis unreachable: 503 with Retry-After, never a 500, and nothing half-accepted."""

import pytest
from kombu.exceptions import OperationalError
from prometheus_client import REGISTRY

from docflow.devstack.processes import free_port
from docflow.shared.names import Queue


@pytest.fixture
def gateway_without_redis(make_gateway):
    return make_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")


def stored_files(gateway) -> list:
    root = gateway.storage_root
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_upload_is_503_with_retry_after_and_leaves_no_original(gateway_without_redis):
    response = gateway_without_redis.upload()
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "Redis" in response.json()["detail"]
    assert stored_files(gateway_without_redis) == []


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/documents", None),
    ("GET", "/v1/documents/0123456789abcdef0123456789abcdef", None),
    ("DELETE", "/v1/documents/0123456789abcdef0123456789abcdef", None),
    ("POST", "/v1/documents/0123456789abcdef0123456789abcdef/reprocess", None),
    ("POST", "/v1/documents/0123456789abcdef0123456789abcdef/cancel", None),
    ("GET", "/v1/tasks/0123456789abcdef", None),
    ("POST", "/v1/search", {"query": "fox"}),
])
def test_every_route_is_503_not_500(gateway_without_redis, method, path, body):
    gateway = gateway_without_redis
    response = gateway.client.request(method, path, json=body, headers=gateway.auth())
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_failed_enqueue_undoes_the_record_the_mapping_and_the_original(gateway, broker, redis_client,
                                                                         monkeypatch):
    # Redis answered for the record but the publish failed (e.g. Redis went away in between).
    def broker_gone(*_args, **_kwargs):
        raise OperationalError("Error 111 connecting to redis. Connection refused.")

    monkeypatch.setattr(gateway.client.app.state.services.pipeline, "enqueue_document", broker_gone)

    response = gateway.upload()

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert gateway.get("/v1/documents").json()["total"] == 0
    assert redis_client.keys("docflow:doc:*") == [] and redis_client.keys("docflow:task:*") == []
    assert stored_files(gateway) == []
    assert broker.length(Queue.EXTRACT.value) == 0


def test_a_publish_that_cannot_reach_the_broker_is_undone_and_503(gateway, broker, redis_client):
    """The rate limit and the record reach Redis, the publish does not (its broker
    connection refused): after the publish retries, the upload is undone, not lost."""
    celery = gateway.client.app.state.services.celery
    celery.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    def unavailable() -> float:
        return REGISTRY.get_sample_value("docflow_gateway_documents_rejected_total",
                                         {"reason": "unavailable"})

    before = unavailable()

    response = gateway.upload()

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert unavailable() == before + 1
    assert gateway.get("/v1/documents").json()["total"] == 0
    assert redis_client.keys("docflow:doc:*") == [] and redis_client.keys("docflow:task:*") == []
    assert stored_files(gateway) == []
    assert broker.length(Queue.EXTRACT.value) == 0

"""/v1/admin/queues and /v1/admin/workers: for operators' keys only.

No worker runs in these tests, so the workers list is empty and every queue has no
consumer; tests/e2e/test_tracing_and_admin.py asks the same routes about real workers.
"""

import json

import pytest
from pydantic import SecretStr

from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.queue_stats import UNACKED_KEY

ADMIN_KEY = "ops-key-5be0"


@pytest.fixture
def admin_gateway(make_gateway):
    return make_gateway(admin_api_keys=SecretStr(ADMIN_KEY))


def as_admin(gateway, path: str):
    return gateway.client.get(path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})


@pytest.mark.parametrize("path", ["/v1/admin/queues", "/v1/admin/workers"])
def test_admin_routes_need_an_admin_key(admin_gateway, path):
    assert admin_gateway.client.get(path).status_code == 401
    assert admin_gateway.get(path).status_code == 403  # a tenant's key is not enough
    assert admin_gateway.client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert as_admin(admin_gateway, path).status_code == 200


def test_queues_report_backlog_in_flight_consumers_and_dead_letters(admin_gateway, redis_client):
    admin_gateway.accepted()
    admin_gateway.accepted()
    redis_client.hset(UNACKED_KEY, "tag-1", json.dumps([{"headers": {}}, "docflow.embed", "docflow.embed"]))
    DeadLetterStore(redis_client, admin_gateway.settings.redis_key_prefix).add(
        task_name="docflow.index.document", task_id="t", queue="docflow.index", args=[], stage="index",
        error_code="vector_store_unavailable", error_message="down", attempts=4)

    report = as_admin(admin_gateway, "/v1/admin/queues").json()

    queues = {queue["name"]: queue for queue in report["queues"]}
    assert [(name, queue["stage"]) for name, queue in queues.items()] == [
        ("docflow.extract", "extract"), ("docflow.embed", "embed"), ("docflow.index", "index"),
        ("docflow.query.embed", "embed"), ("docflow.query.index", "index"), ("docflow.maintenance.index", "index")]
    assert queues["docflow.extract"]["backlog"] == 2
    assert 0 <= queues["docflow.extract"]["oldest_message_age_seconds"] < 30
    assert queues["docflow.embed"] == {"name": "docflow.embed", "stage": "embed", "backlog": 0, "in_flight": 1,
                                       "consumers": 0, "oldest_message_age_seconds": 0.0}
    assert queues["docflow.query.embed"]["in_flight"] == 0, "counted on the queue it was taken from"
    assert all(queue["consumers"] == 0 for queue in report["queues"])
    assert report["dead_letters"] == 1


def test_workers_report_is_empty_when_no_worker_answers(admin_gateway):
    assert as_admin(admin_gateway, "/v1/admin/workers").json() == {"workers": []}


def test_admin_routes_answer_503_when_redis_is_down(make_gateway):
    gateway = make_gateway(admin_api_keys=SecretStr(ADMIN_KEY), redis_url="redis://127.0.0.1:1/0")
    response = as_admin(gateway, "/v1/admin/queues")
    assert response.status_code == 503
    assert response.headers["Retry-After"]

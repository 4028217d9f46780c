import pytest
from pydantic import ValidationError

from docflow.shared.names import (
    BULK_QUEUE_OF_STAGE,
    QUEUE_OF_STAGE,
    STAGE_OF_QUEUE,
    STAGE_OF_TASK,
    TASK_ROUTES,
    Queue,
    Stage,
    Task,
    WorkerRole,
    queues_of_role,
    is_bulk_queue,
    queues_of_stage,
    roles_of_stage,
)
from docflow.shared.settings import Settings, parse_api_keys


def test_api_keys_parse_into_tenants():
    assert parse_api_keys("k1=acme, k2=globex,") == {"k1": "acme", "k2": "globex"}


@pytest.mark.parametrize("raw", ["k1", "=acme", "k1=", "k1=Bad Tenant"])
def test_malformed_api_keys_are_rejected(raw):
    with pytest.raises(ValidationError):
        Settings(api_keys=raw)


def test_visibility_timeout_must_exceed_hard_time_limits():
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(visibility_timeout=100, extract_time_limit=200)


def test_every_task_routes_to_a_queue_its_stage_consumes():
    for task, stage in STAGE_OF_TASK.items():
        consumed = [queue for role in WorkerRole for queue in queues_of_role(stage, role)]
        assert TASK_ROUTES[task]["queue"] in consumed, task
    assert TASK_ROUTES[Task.EXTRACT]["queue"] == QUEUE_OF_STAGE[Stage.EXTRACT]
    assert TASK_ROUTES[Task.DELETE_DOCUMENT]["queue"] == QUEUE_OF_STAGE[Stage.INDEX]
    assert len(set(QUEUE_OF_STAGE.values())) == len(Stage)


def test_searches_have_queues_of_their_own_consumed_first():
    assert TASK_ROUTES[Task.EMBED_QUERY]["queue"] == Queue.QUERY_EMBED
    assert TASK_ROUTES[Task.SEARCH]["queue"] == Queue.QUERY_INDEX
    assert queues_of_stage(Stage.EMBED) == [Queue.QUERY_EMBED, Queue.EMBED, Queue.BULK_EMBED]
    assert queues_of_stage(Stage.INDEX) == [Queue.QUERY_INDEX, Queue.INDEX, Queue.BULK_INDEX]
    assert queues_of_stage(Stage.EXTRACT) == [Queue.EXTRACT, Queue.BULK_EXTRACT]
    assert set(STAGE_OF_QUEUE) == set(Queue)


def test_index_maintenance_has_a_queue_of_its_own_that_no_document_worker_takes():
    assert TASK_ROUTES[Task.MAINTAIN]["queue"] == Queue.MAINTENANCE
    assert TASK_ROUTES[Task.UPDATE_METADATA]["queue"] == Queue.INDEX
    assert all(Queue.MAINTENANCE not in queues_of_stage(stage) for stage in Stage)
    assert STAGE_OF_QUEUE[Queue.MAINTENANCE] is Stage.INDEX


def test_webhook_deliveries_have_a_queue_and_worker_role_of_their_own():
    assert TASK_ROUTES[Task.DELIVER_WEBHOOK]["queue"] == Queue.WEBHOOKS
    assert queues_of_role(Stage.INDEX, WorkerRole.NOTIFY) == [Queue.WEBHOOKS]
    assert WorkerRole.NOTIFY in roles_of_stage(Stage.INDEX)
    assert all(WorkerRole.NOTIFY not in roles_of_stage(stage) for stage in Stage if stage is not Stage.INDEX)
    assert all(Queue.WEBHOOKS not in queues_of_stage(stage) for stage in Stage)


def test_each_stage_has_a_bulk_lane_its_document_worker_takes_after_the_document_queue():
    """docflow.<kind>.<stage>: the bulk lane is the stage's other document backlog, taken
    by the same worker turn about with the document queue (fair sharing)."""
    for stage in Stage:
        bulk = BULK_QUEUE_OF_STAGE[stage]
        assert bulk.value == f"docflow.bulk.{stage.value}" and STAGE_OF_QUEUE[bulk] is stage
        consumed = queues_of_role(stage, WorkerRole.DOCUMENT)
        assert consumed[-2:] == [QUEUE_OF_STAGE[stage], bulk]
        assert is_bulk_queue(bulk.value) and not is_bulk_queue(QUEUE_OF_STAGE[stage].value)
    routed = {route["queue"] for route in TASK_ROUTES.values()}
    assert not routed & {q.value for q in BULK_QUEUE_OF_STAGE.values()}, "the gateway chooses the lane"

import pytest
from pydantic import ValidationError

from docflow.shared.names import QUEUE_OF_STAGE, TASK_ROUTES, Stage, Task
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


def test_every_task_routes_to_its_stage_queue():
    assert TASK_ROUTES[Task.EXTRACT]["queue"] == QUEUE_OF_STAGE[Stage.EXTRACT]
    assert TASK_ROUTES[Task.SEARCH]["queue"] == QUEUE_OF_STAGE[Stage.INDEX]
    assert len(set(QUEUE_OF_STAGE.values())) == len(Stage)

"""Secrets stay out of the logs; workers accept JSON task messages only, and every
message they refuse is kept as a dead letter instead of vanishing.

Runs against the session stack. The refused messages are published straight to the
extract queue in Redis, as anything with access to the broker could: a pickle that
would run code if it were ever unpickled, a body that is not JSON, a task name no
worker knows.
"""

import base64
import json
import time
import uuid
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Producer

from docflow.devstack import samples
from docflow.devstack.faults import wait_for
from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.names import Queue, Stage, Task

from .conftest import KEY_A, KEY_B

WRONG_KEY = f"wrong-{uuid.uuid4().hex}"


def test_api_keys_never_reach_any_log(stack, api_a, api_b):
    api_a.upload("logged.txt", samples.text(["Keys must never be logged."]))
    api_b.search("keys never logged")
    wrong = api_a.http.get("/v1/documents", headers={"Authorization": f"Bearer {WRONG_KEY}"})
    assert wrong.status_code == 401
    time.sleep(0.5)  # the last lines reach the files
    logs = {path.name: path.read_text(errors="replace") for path in stack.logs_dir.glob("*.log")}
    assert logs["gateway.log"].count('"event": "request"') > 3, "the requests were logged, keys aside"
    for name, text in logs.items():
        for secret in (KEY_A, KEY_B, WRONG_KEY):
            assert secret not in text, f"an API key is in {name}"
        assert "Bearer " not in text, f"an Authorization header is in {name}"


class RunsCode:
    """Unpickling this creates a file: proof the payload was never unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture
def refused(stack):
    """Publish `(body, content_type, task name)` to the extract queue; the dead letter it leaves."""
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    letters = DeadLetterStore(client, stack.settings().redis_key_prefix)

    def publish(body: bytes, content_type: str, task: str) -> dict:
        task_id = uuid.uuid4().hex
        with Connection(stack.redis_url) as connection:
            Producer(connection).publish(
                body, routing_key=Queue.EXTRACT.value, exchange=Exchange(Queue.EXTRACT.value, type="direct"),
                content_type=content_type, content_encoding="binary", serializer=None,
                headers={"task": task, "id": task_id, "lang": "py"}, declare=[])
        letter = wait_for(lambda: next((d for d in letters.list(1000) if d.task_id == task_id), None), 120,
                          f"a dead letter for {task_id}")
        return letter.model_dump()

    return publish


def test_a_pickle_message_is_refused_unread_and_dead_lettered(stack, refused, tmp_path):
    import pickle

    marker = tmp_path / "pickle-was-loaded"
    letter = refused(pickle.dumps([[{"document_id": "x"}, RunsCode(marker)], {}, {}]),
                     "application/x-python-serialize", Task.EXTRACT.value)
    assert not marker.exists(), "the worker unpickled an untrusted message"
    assert letter["error_code"] == "undecodable_message" and letter["stage"] == "extract"
    assert "pickle" in letter["error_message"] and letter["replayable"] is False
    assert letter["content_type"] == "application/x-python-serialize" and letter["attempts"] == 1


def test_a_message_that_is_not_json_is_dead_lettered(refused):
    letter = refused(b'{"args": [not json', "application/json", Task.EXTRACT.value)
    assert letter["error_code"] == "undecodable_message" and "not json" in letter["body_excerpt"]


def test_a_message_for_an_unknown_task_is_dead_lettered(refused):
    body = json.dumps([[{"document_id": "x"}], {}, {}]).encode()
    letter = refused(body, "application/json", "docflow.no.such.task")
    assert letter["task_name"] == "docflow.no.such.task" and "no such task" in letter["error_message"]


def test_the_extractor_keeps_serving_after_refusing_messages(stack, api_a):
    assert stack.workers[Stage.EXTRACT].alive()
    document_id = api_a.upload("after-refusals.txt", samples.text(["Refused messages stop nothing."]))
    assert api_a.wait_final(document_id)["status"] == "completed"


def test_the_body_excerpt_is_bounded(refused):
    letter = refused(base64.b64encode(b"\x00" * 100_000), "application/x-unknown", Task.EXTRACT.value)
    assert len(letter["body_excerpt"]) <= 2048

"""A gateway killed between storing a document and answering, and the client retrying
with its Idempotency-Key: one document, and it completes.

A second gateway process joins the session stack (same Redis, storage and workers, a
port of its own: a replica). Its upload path is the real one, except that right after
the document is stored, recorded and enqueued the process SIGKILLs itself, so the
client gets no answer. The client retries with the same key on the stack's own
gateway: while the dead replica's lease lasts the key is in progress (409); then the
retry overtakes it and is answered with the document the dead replica made -- with
on_duplicate=new, so it is the key, not duplicate detection, that keeps it to one.
"""

import signal
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from docflow.devstack import samples
from docflow.devstack.processes import Process, free_port, wait_until

from .conftest import KEY_A

LEASE_SECONDS = 5
# The gateway's own entry point, with one change: the process dies once the upload's
# start (record, digest, task owner, queue message) has happened, before any answer.
DIES_AFTER_STORING = """
import os, signal
from docflow.gateway import intake

start_first_version = intake.start_first_version

def start_then_die(*args, **kwargs):
    start_first_version(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

intake.start_first_version = start_then_die
from docflow.gateway.main import run
run()
"""


@pytest.fixture
def dying_gateway(stack) -> Iterator[tuple[Process, str]]:
    port = free_port()
    env = {**stack.process_env(), "DOCFLOW_GATEWAY_PORT": str(port),
           "DOCFLOW_IDEMPOTENCY_LEASE_SECONDS": str(LEASE_SECONDS), "DOCFLOW_RECOVERY_INTERVAL_SECONDS": "0"}
    process = Process("gateway-dies", [sys.executable, "-c", DIES_AFTER_STORING], env,
                      stack.logs_dir / "gateway-dies.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 60, "dying gateway",
                   process.popen)
        yield process, url
    finally:
        process.kill()


def test_a_retry_after_the_gateway_died_between_storing_and_answering_makes_one_document(api_a, dying_gateway):
    process, dying_url = dying_gateway
    key = f"upload-{uuid.uuid4().hex}"
    filename = f"heron-{key}.txt"
    data = samples.text([f"Upload {key}: the heron waits at the weir until the tide turns."])

    def send(http: httpx.Client) -> httpx.Response:
        return http.post("/v1/documents", files={"file": (filename, data)}, params={"on_duplicate": "new"},
                         headers={"Idempotency-Key": key})

    def made() -> list[str]:
        documents = api_a.http.get("/v1/documents", params={"limit": 100}).json()["documents"]
        return [d["document_id"] for d in documents if d["filename"] == filename]

    with httpx.Client(base_url=dying_url, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30) as http:
        with pytest.raises(httpx.TransportError):
            send(http)
    assert process.popen.wait(10) == -signal.SIGKILL
    [document_id] = made()  # stored and recorded, never answered

    held = send(api_a.http)
    assert held.status_code == 409, held.text  # the dead replica's lease still holds the key
    deadline = time.monotonic() + LEASE_SECONDS + 30
    while held.status_code == 409 and time.monotonic() < deadline:
        time.sleep(0.5)
        held = send(api_a.http)

    assert held.status_code == 202, held.text
    assert held.json()["document_id"] == document_id
    replay = send(api_a.http)
    assert (replay.status_code, replay.json(), replay.headers["Idempotent-Replayed"]) == (202, held.json(), "true")
    assert made() == [document_id]
    assert api_a.wait_final(document_id)["status"] == "completed"
    assert made() == [document_id]

"""Server-Sent Events on the real pipeline: a client that disconnects mid-document and
resumes with Last-Event-ID sees every later event of its document exactly once, in
the order the workers made them, up to completion."""

import time

import httpx
import redis

from docflow.cli.events import ServerEvent, parse
from docflow.devstack import samples
from docflow.shared.events import events_key
from docflow.shared.names import KEY_PREFIX

from .conftest import KEY_A, TENANT_A


def page_text(number: int) -> str:
    return (f"Page {number} of the events handbook: stages report progress as they go, "
            "and every change of a document is pushed to whoever follows it. ") * 4


def open_stream(base_url: str, document_id: str, last_event_id: str | None = None):
    headers = {"Authorization": f"Bearer {KEY_A}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(60, connect=5))
    request = client.build_request("GET", f"/v1/documents/{document_id}/events", headers=headers)
    response = client.send(request, stream=True)
    assert response.status_code == 200, response.read()
    return client, response


def test_a_client_disconnected_mid_document_resumes_and_sees_every_later_event(stack, api_a):
    document_id = api_a.upload("events.pdf", samples.pdf([page_text(n) for n in range(1, 41)]))

    client, response = open_stream(stack.gateway_url, document_id)
    seen: list[ServerEvent] = []
    events = parse(response.iter_lines())
    seen.append(next(events))  # the state it was in
    seen.append(next(events))  # and the first change after it
    response.close()  # the connection drops
    client.close()
    assert seen[0].event == "state" and seen[1].event not in ("completed", "failed", "cancelled")

    time.sleep(1.0)  # the workers go on meanwhile
    client, response = open_stream(stack.gateway_url, document_id, seen[-1].id)
    try:
        later = list(parse(response.iter_lines()))  # until the server ends it, after completion
    finally:
        response.close()
        client.close()

    assert later and later[-1].event == "completed", [e.event for e in later]
    assert later[-1].data["vectors"] > 0 and later[-1].data["pages"] == 40
    # Exactly what the stream holds for the document after the last event seen: none
    # lost, none repeated, in order.
    rdb = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    stored = [(entry_id, fields["type"]) for entry_id, fields in
              rdb.xrange(events_key(KEY_PREFIX, TENANT_A), min=f"({seen[-1].id}")
              if fields["document_id"] == document_id]
    assert [(e.id, e.event) for e in later] == stored
    stages = [e.data["stage"] for e in seen[1:] + later if e.event == "stage"]
    assert stages == sorted(stages, key=["extract", "embed", "index"].index) and "index" in stages
    progress = [e.data["progress"] for e in seen[1:] + later]
    assert progress == sorted(progress)

"""The gateway's /metrics: its own HTTP and upload metrics, and the queue metrics it
alone exports, read from Redis at scrape time."""

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.names import Queue
from docflow.shared.queue_stats import UNACKED_KEY


def scrape(gateway) -> dict[tuple[str, tuple], float]:
    response = gateway.client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def queue_labels(queue: Queue) -> dict[str, str]:
    return {"queue": queue.value, "stage": queue.value.removeprefix("docflow.")}


def test_queue_metrics_show_what_waits_in_redis_as_keda_sees_it(gateway, broker, redis_client):
    gateway.accepted()
    gateway.accepted()  # no workers run here: both wait in the extract queue
    samples = scrape(gateway)
    assert value(samples, "docflow_queue_redis_up") == 1
    assert broker.length("docflow.extract") == 2
    assert value(samples, "docflow_queue_backlog", **queue_labels(Queue.EXTRACT)) == 2
    assert value(samples, "docflow_queue_backlog", **queue_labels(Queue.EMBED)) == 0
    age = value(samples, "docflow_queue_oldest_message_age_seconds", **queue_labels(Queue.EXTRACT))
    assert 0 <= age < 30
    assert value(samples, "docflow_queue_oldest_message_age_seconds", **queue_labels(Queue.INDEX)) == 0


def test_the_oldest_message_age_comes_from_the_message_at_the_consuming_end(gateway, broker, redis_client):
    gateway.accepted()
    oldest = broker.messages("docflow.extract")[0]
    envelope = oldest.envelope
    envelope["headers"]["enqueued_at"] = time.time() - 600  # as if it had waited ten minutes
    redis_client.lset("docflow.extract", -1, json.dumps(envelope))
    gateway.accepted()  # a newer message does not make the queue look younger
    age = value(scrape(gateway), "docflow_queue_oldest_message_age_seconds", **queue_labels(Queue.EXTRACT))
    assert 595 < age < 660


def test_in_flight_counts_kombus_unacked_messages_per_queue(gateway, redis_client):
    # kombu's redis transport: delivery tag -> JSON [message, exchange, routing_key].
    redis_client.hset(UNACKED_KEY, mapping={
        "tag-1": json.dumps([{"headers": {}}, "docflow.embed", "docflow.embed"]),
        "tag-2": json.dumps([{"headers": {}}, "docflow.embed", "docflow.embed"]),
        "tag-3": json.dumps([{"headers": {}}, "docflow.index", "docflow.index"]),
    })
    samples = scrape(gateway)
    assert value(samples, "docflow_queue_in_flight", **queue_labels(Queue.EMBED)) == 2
    assert value(samples, "docflow_queue_in_flight", **queue_labels(Queue.INDEX)) == 1
    assert value(samples, "docflow_queue_in_flight", **queue_labels(Queue.EXTRACT)) == 0


def test_dead_letters_are_counted(gateway, redis_client):
    store = DeadLetterStore(redis_client, gateway.settings.redis_key_prefix)
    for attempt in range(3):
        store.add(task_name="docflow.embed.document", task_id=f"t{attempt}", queue="docflow.embed", args=[],
                  stage="embed", error_code="timeout", error_message="slow", attempts=4)
    assert value(scrape(gateway), "docflow_dead_letters") == 3


def test_queue_metrics_report_redis_down_instead_of_failing_the_scrape(make_gateway):
    gateway = make_gateway(redis_url="redis://127.0.0.1:1/0")
    samples = scrape(gateway)
    assert value(samples, "docflow_queue_redis_up") == 0
    assert not [name for name, _ in samples if name == "docflow_queue_backlog"]


def test_accepted_documents_count_their_bytes(gateway):
    before = scrape(gateway)
    gateway.accepted()
    after = scrape(gateway)
    labels = {"content_type": "text/plain"}
    assert value(after, "docflow_gateway_documents_accepted_total", **labels) == \
        value(before, "docflow_gateway_documents_accepted_total", **labels) + 1
    assert value(after, "docflow_gateway_uploaded_bytes_total", **labels) == \
        value(before, "docflow_gateway_uploaded_bytes_total", **labels) + len(gateway.TEXT)


@pytest.mark.parametrize(("upload", "status", "reason"), [
    ({"data": b""}, 400, "empty_file"),
    ({"data": b"\x00\x01\x02 not a document \xff" * 10, "filename": "blob.bin"}, 415, "unsupported_type"),
    ({"metadata": "[1, 2]"}, 422, "invalid_form"),
])
def test_rejected_uploads_are_counted_by_reason(gateway, upload, status, reason):
    before = value(scrape(gateway), "docflow_gateway_documents_rejected_total", reason=reason)
    assert gateway.upload(**upload).status_code == status
    after = value(scrape(gateway), "docflow_gateway_documents_rejected_total", reason=reason)
    assert after == before + 1


def test_requests_are_labelled_by_route_template_never_by_id(gateway):
    document_id = gateway.accepted()["document_id"]
    assert gateway.get(f"/v1/documents/{document_id}").status_code == 200
    samples = scrape(gateway)
    routes = {dict(labels).get("route") for name, labels in samples
              if name == "docflow_gateway_requests_total"}
    assert "/v1/documents/{document_id}" in routes
    assert not any(document_id in str(labels) for _, labels in samples)

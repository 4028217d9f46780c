"""Prometheus metrics of the gateway, served at /metrics, and the queue metrics it exports.

Routes are labelled by their template (`/v1/documents/{document_id}`), never the
raw path, so label cardinality stays bounded. The gateway is one uvicorn process,
so the default (single-process) registry is right here.

The queues' metrics (backlog, in flight, oldest message age, dead letters) are
computed from Redis at scrape time by `QueueCollector`, here and nowhere else: the
workers are scaled to zero by KEDA exactly when a queue is idle — or broken — and
could not report it, while the gateway runs as long as anyone can upload. Every
gateway replica reads the same Redis, so each reports the same numbers; dashboards
and alerts take `max by (queue)` (docs/metrics.md).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import redis
import structlog
from fastapi import HTTPException
from kombu.exceptions import OperationalError
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response

from docflow.shared.deadletters import DeadLetterStore
from docflow.shared.errors import TransientError
from docflow.shared.queue_stats import read_queue_stats

log = structlog.get_logger(__name__)

# `*_created` samples would double the series count for a timestamp nobody charts.
disable_created_metrics()

REQUESTS = Counter("docflow_gateway_requests_total", "HTTP requests handled",
                   ["method", "route", "status"])
REQUEST_SECONDS = Histogram("docflow_gateway_request_duration_seconds", "HTTP request latency",
                            ["method", "route"])
DOCUMENTS_ACCEPTED = Counter("docflow_gateway_documents_accepted_total",
                             "Documents accepted and enqueued", ["content_type"])
UPLOADED_BYTES = Counter("docflow_gateway_uploaded_bytes_total", "Bytes of accepted documents",
                         ["content_type"])
DOCUMENTS_REJECTED = Counter("docflow_gateway_documents_rejected_total",
                             "Uploads refused, by reason", ["reason"])
SEARCHES = Counter("docflow_gateway_searches_total", "Searches by outcome", ["outcome"])
# Against DOCFLOW_EVENTS_MAX_STREAMS: at the bound, new streams get 503.
EVENT_STREAMS_OPEN = Gauge("docflow_gateway_event_streams_open", "Server-Sent Event streams open in this process")

# Why an upload was refused: the HTTP status says it (uploads.py, intake.py).
REJECTION_BY_STATUS = {
    400: "malformed",         # a broken multipart body, a client that went away, a bad Idempotency-Key
    409: "key_in_progress",   # a request with the same Idempotency-Key is still being processed
    413: "too_large",
    415: "unsupported_type",
    422: "invalid_form",      # no file field, or metadata that is not a JSON object
    429: "rate_limited",
}
EMPTY_FILE = "empty_file"
UNAVAILABLE = "unavailable"   # Redis or storage down: 503, the client retries
OTHER = "error"
REJECTION_REASONS = (*REJECTION_BY_STATUS.values(), EMPTY_FILE, UNAVAILABLE, OTHER)
EMPTY_FILE_DETAIL = "the file is empty"

for _reason in REJECTION_REASONS:  # every reason has a series from the start, at 0
    DOCUMENTS_REJECTED.labels(_reason)


def rejection_reason(exc: Exception) -> str:
    if isinstance(exc, HTTPException):
        if exc.detail == EMPTY_FILE_DETAIL:
            return EMPTY_FILE
        return REJECTION_BY_STATUS.get(exc.status_code, UNAVAILABLE if exc.status_code == 503 else OTHER)
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        OperationalError, TransientError)):
        return UNAVAILABLE
    return OTHER


@contextmanager
def counting_rejections() -> Iterator[None]:
    """Count an upload that ends in an error, by reason, and let the error through."""
    try:
        yield
    except Exception as exc:
        DOCUMENTS_REJECTED.labels(rejection_reason(exc)).inc()
        raise


class QueueCollector(Collector):
    """Each stage queue's backlog, in-flight count and oldest message age, and the dead
    letters, read from Redis when Prometheus scrapes (docflow.shared.queue_stats)."""

    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self.client = client
        self.dead_letters = DeadLetterStore(client, key_prefix)

    def collect(self):
        up = GaugeMetricFamily("docflow_queue_redis_up",
                               "1 if the gateway could read the queues from Redis at this scrape")
        try:
            stats = read_queue_stats(self.client)
            dead_letters = self.dead_letters.count()
        except redis.exceptions.RedisError as exc:
            log.warning("queue metrics unavailable", error=str(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        labels = ["queue", "stage"]
        backlog = GaugeMetricFamily("docflow_queue_backlog",
                                    "Messages waiting in the queue (LLEN, what KEDA scales on)",
                                    labels=labels)
        in_flight = GaugeMetricFamily("docflow_queue_in_flight",
                                      "Messages delivered to a worker and not yet acknowledged",
                                      labels=labels)
        oldest = GaugeMetricFamily("docflow_queue_oldest_message_age_seconds",
                                   "Age of the oldest waiting message (0 when the queue is empty)",
                                   labels=labels)
        for queue in stats:
            values = [queue.queue, queue.stage.value]
            backlog.add_metric(values, queue.backlog)
            in_flight.add_metric(values, queue.in_flight)
            if queue.oldest_age_seconds is not None:
                oldest.add_metric(values, queue.oldest_age_seconds)
        yield backlog
        yield in_flight
        yield oldest
        yield GaugeMetricFamily("docflow_dead_letters", "Tasks in the dead-letter store, awaiting replay",
                                value=dead_letters)


class _Together:
    """Several collectors exposed as one registry."""

    def __init__(self, *collectors) -> None:
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


def metrics_response(*extra: Collector) -> Response:
    return Response(generate_latest(_Together(REGISTRY, *extra)), media_type=CONTENT_TYPE_LATEST)

"""Prometheus metrics of the gateway, served at /metrics.

Routes are labelled by their template (`/v1/documents/{document_id}`), never the
raw path, so label cardinality stays bounded. The gateway is one uvicorn process,
so the default (single-process) registry is right here.
"""

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response

REQUESTS = Counter("docflow_gateway_requests_total", "HTTP requests handled",
                   ["method", "route", "status"])
REQUEST_SECONDS = Histogram("docflow_gateway_request_duration_seconds", "HTTP request latency",
                            ["method", "route"])
DOCUMENTS_ACCEPTED = Counter("docflow_gateway_documents_accepted_total",
                             "Documents accepted and enqueued", ["content_type"])
SEARCHES = Counter("docflow_gateway_searches_total", "Searches by outcome", ["outcome"])


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

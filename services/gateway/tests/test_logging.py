"""Log lines about a document carry its id and the request's id."""

import structlog
from structlog.testing import capture_logs


def captured_logs():
    """Log events as emitted, with the bound context merged in as production does."""
    return capture_logs(processors=[structlog.contextvars.merge_contextvars])


def test_upload_logs_are_bound_to_document_and_request(gateway):
    with captured_logs() as logs:
        response = gateway.client.post("/v1/documents", headers={**gateway.auth(), "X-Request-ID": "trace-1"},
                                       files={"file": ("notes.txt", gateway.TEXT, "text/plain")})
    document_id = response.json()["document_id"]
    assert response.headers["X-Request-ID"] == "trace-1"

    accepted = next(line for line in logs if line["event"] == "document accepted")
    assert accepted["document_id"] == document_id
    assert accepted["request_id"] == "trace-1"
    assert accepted["tenant"] == "tenant-a"
    assert accepted["task_id"] == response.json()["task_id"]
    access = next(line for line in logs if line["event"] == "request")
    assert (access["status"], access["request_id"]) == (202, "trace-1")


def test_document_routes_bind_the_document_id(gateway):
    document_id = gateway.accepted()["document_id"]
    with captured_logs() as logs:
        gateway.delete(f"/v1/documents/{document_id}")
    deleted = next(line for line in logs if line["event"] == "document deleted")
    assert deleted["document_id"] == document_id

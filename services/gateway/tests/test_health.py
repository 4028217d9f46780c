"""Liveness, readiness, request ids, OpenAPI docs and metrics."""

from pathlib import Path

from docflow.devstack.processes import free_port


def test_healthz_needs_no_auth_and_no_dependencies(make_gateway):
    gateway = make_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = gateway.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_redis_and_storage_answer(gateway):
    response = gateway.client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"redis": "ok", "storage": "ok"}


def test_readyz_is_503_naming_redis_when_redis_is_down(make_gateway):
    gateway = make_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = gateway.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["detail"] == "not ready: redis failed"
    assert body["checks"]["redis"].startswith("failed: ConnectionError")
    assert body["checks"]["storage"] == "ok"
    assert response.headers["Retry-After"]


def test_readyz_is_503_naming_storage_when_it_is_not_writable(make_gateway, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("storage cannot live under a file")
    gateway = make_gateway(storage_path=blocker / "storage")
    response = gateway.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "not ready: storage failed"
    assert response.json()["checks"]["redis"] == "ok"


def test_readyz_can_require_a_live_indexer(gateway):
    # No worker runs in this test: asked for, the indexer check fails and says why.
    response = gateway.client.get("/readyz", params={"indexer": "true"})
    assert response.status_code == 503
    assert response.json()["checks"]["indexer"] == "failed: no live worker consumes docflow.index"


def test_request_id_is_echoed_or_generated(gateway):
    echoed = gateway.client.get("/healthz", headers={"X-Request-ID": "req-42.a:b"})
    assert echoed.headers["X-Request-ID"] == "req-42.a:b"
    generated = gateway.client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32
    unsafe = gateway.client.get("/healthz", headers={"X-Request-ID": "evil\tvalue with spaces"})
    assert unsafe.headers["X-Request-ID"] != "evil\tvalue with spaces"


def test_openapi_docs_describe_the_api(gateway):
    assert gateway.client.get("/docs").status_code == 200
    spec = gateway.client.get("/openapi.json").json()
    assert {"/v1/documents", "/v1/documents/{document_id}", "/v1/search", "/v1/tasks/{task_id}",
            "/healthz", "/readyz"} <= set(spec["paths"])
    upload = spec["paths"]["/v1/documents"]["post"]
    assert "file" in upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]


def test_unknown_routes_answer_json(gateway):
    response = gateway.client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_metrics_count_requests_by_route_template(gateway):
    document = gateway.accepted()
    gateway.get(f"/v1/documents/{document['document_id']}")
    metrics = gateway.client.get("/metrics").text
    labels = 'method="GET",route="/v1/documents/{document_id}",status="200"'
    assert f"docflow_gateway_requests_total{{{labels}}}" in metrics
    assert "docflow_gateway_documents_accepted_total" in metrics

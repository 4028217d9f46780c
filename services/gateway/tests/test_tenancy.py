"""A tenant never sees, changes or learns about another tenant's documents."""

from docflow.shared.names import Queue


def test_other_tenant_gets_404_on_every_document_route(gateway, broker):
    accepted = gateway.accepted(tenant="tenant-a")
    document_id, task_id = accepted["document_id"], accepted["task_id"]
    unknown_id = "f" * 32

    for method, path in [
        ("GET", f"/v1/documents/{document_id}"),
        ("DELETE", f"/v1/documents/{document_id}"),
        ("POST", f"/v1/documents/{document_id}/reprocess"),
        ("POST", f"/v1/documents/{document_id}/cancel"),
        ("GET", f"/v1/tasks/{task_id}"),
    ]:
        foreign = gateway.client.request(method, path, headers=gateway.auth("tenant-b"))
        missing_path = path.replace(document_id, unknown_id).replace(task_id, unknown_id)
        missing = gateway.client.request(method, missing_path, headers=gateway.auth("tenant-b"))
        assert foreign.status_code == 404, (method, path)
        # Indistinguishable from a document that does not exist, apart from the id echoed.
        assert foreign.json()["detail"].replace(document_id, "ID").replace(task_id, "ID") == \
            missing.json()["detail"].replace(unknown_id, "ID")

    # Nothing tenant B tried had any effect.
    record = gateway.get(f"/v1/documents/{document_id}", tenant="tenant-a").json()
    assert record["status"] == "queued" and record["version"] == 1
    assert broker.length(Queue.EXTRACT.value) == 1
    assert broker.length(Queue.INDEX.value) == 0
    assert (gateway.storage_root / f"tenants/tenant-a/documents/{document_id}/original").exists()


def test_lists_are_per_tenant(gateway):
    mine = gateway.accepted(tenant="tenant-a")["document_id"]
    theirs = gateway.accepted(tenant="tenant-b")["document_id"]

    listed_a = [d["document_id"] for d in gateway.get("/v1/documents", tenant="tenant-a").json()["documents"]]
    listed_b = [d["document_id"] for d in gateway.get("/v1/documents", tenant="tenant-b").json()["documents"]]
    assert listed_a == [mine]
    assert listed_b == [theirs]


def test_responses_do_not_expose_tenant_or_storage_keys(gateway):
    document_id = gateway.accepted()["document_id"]
    record = gateway.get(f"/v1/documents/{document_id}").json()
    assert "tenant" not in record and "original_key" not in record

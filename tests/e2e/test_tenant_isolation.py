"""Tenant isolation (OWASP API1, broken object-level authorization), on both backends.

Tenant B gets 404 -- exactly what a missing document gets -- on every route that
names one of tenant A's documents or tasks, and no search of B's ever returns A's
chunks. The routes are read from the gateway's own OpenAPI schema, so a route added
later is covered without touching this test. LanceDB runs in the session stack;
Pinecone in a stack of this module whose indexer talks HTTP to a local double of
Pinecone's data plane (docflow.devstack.pinecone_double: Pinecone's service cannot
be reached from here), one namespace per tenant as in production.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from docflow.devstack import samples
from docflow.devstack.pinecone_double import API_KEY, PineconeDouble, served
from docflow.devstack.stack import LocalStack
from docflow.indexer.stores import open_vector_store

from .conftest import KEY_A, KEY_B, TENANT_A, TENANT_B, Api, own_stack

SECRET = "The quarterly merger with Halvorsen Shipping closes on the ninth of March."
OWN = "Tenant B keeps its own notes about the lighthouse restoration budget."


@dataclass
class Tenants:
    stack: LocalStack
    a: Api
    b: Api
    double: PineconeDouble | None = None


@pytest.fixture(scope="module")
def pinecone_tenants(tmp_path_factory) -> Iterator[Tenants]:
    double = PineconeDouble()
    double.reset(dimension=384)  # the hashing embedder's default
    with served(double) as url:
        env = {"DOCFLOW_API_KEYS": f"{KEY_A}={TENANT_A},{KEY_B}={TENANT_B}", "DOCFLOW_EMBEDDER": "hash",
               "DOCFLOW_VECTOR_STORE": "pinecone", "DOCFLOW_PINECONE_API_KEY": API_KEY,
               "DOCFLOW_PINECONE_INDEX_HOST": url}
        with own_stack(tmp_path_factory, "isolation-pinecone", env) as local:
            yield Tenants(local, Api(local.gateway_url, KEY_A, TENANT_A),
                          Api(local.gateway_url, KEY_B, TENANT_B), double)


@pytest.fixture(scope="module", params=["lancedb", "pinecone"])
def tenants(request) -> Tenants:
    if request.param == "lancedb":
        stack = request.getfixturevalue("stack")
        return Tenants(stack, request.getfixturevalue("api_a"), request.getfixturevalue("api_b"))
    return request.getfixturevalue("pinecone_tenants")


@pytest.fixture(scope="module")
def a_document(tenants) -> dict:
    document_id = tenants.a.upload("merger.txt", samples.text([SECRET]))
    record = tenants.a.wait_final(document_id)
    assert record["status"] == "completed", record["error"]
    return record


def object_routes(api: Api) -> list[tuple[str, str]]:
    """(method, path template) of every route that names a document or a task."""
    schema = api.http.get("/openapi.json").json()
    return [(method.upper(), path) for path, operations in schema["paths"].items()
            if re.search(r"\{(document_id|task_id)\}", path) for method in operations]


VALID_BODIES = {"PATCH": {"metadata": {"owner": "tenant b"}}}


def test_every_route_naming_a_document_or_task_of_a_is_404_for_b(tenants, a_document):
    routes = object_routes(tenants.a)
    assert {path for _, path in routes} >= {
        "/v1/documents/{document_id}", "/v1/documents/{document_id}/reprocess",
        "/v1/documents/{document_id}/cancel", "/v1/tasks/{task_id}"}
    for method, template in routes:
        path = template.format(document_id=a_document["document_id"], task_id=a_document["task_id"])
        # A well-formed body where the route takes one: the 404 must come from the
        # document being A's, not from a body B left out.
        response = tenants.b.http.request(method, path, json=VALID_BODIES.get(method))
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert a_document["document_id"] not in response.text or "not found" in response.text
    listed = tenants.b.http.get("/v1/documents", params={"limit": 100}).json()["documents"]
    assert a_document["document_id"] not in {d["document_id"] for d in listed}
    # ...and nothing B tried (delete, reprocess, cancel) touched A's document.
    after = tenants.a.document(a_document["document_id"])
    assert (after["status"], after["version"]) == ("completed", a_document["version"])
    assert after["metadata"] == a_document["metadata"]


def test_b_never_sees_a_chunks_in_search(tenants, a_document):
    own_id = tenants.b.upload("lighthouse.txt", samples.text([OWN]))
    assert tenants.b.wait_final(own_id)["status"] == "completed"
    for query in (SECRET, "Halvorsen Shipping merger", OWN):
        hits = tenants.b.search(query, top_k=50)
        assert all(hit["document_id"] != a_document["document_id"] for hit in hits), query
        assert all("Halvorsen" not in hit["text"] for hit in hits), query
    assert tenants.b.search(OWN, top_k=1)[0]["document_id"] == own_id
    assert tenants.a.search(SECRET, top_k=1)[0]["document_id"] == a_document["document_id"]


def test_the_vector_store_keeps_each_tenant_apart(tenants, a_document):
    store = open_vector_store(tenants.stack.settings())
    assert store.count(TENANT_A, a_document["document_id"]) == a_document["chunks"]
    assert store.count(TENANT_B, a_document["document_id"]) == 0
    if tenants.double is not None:  # Pinecone: A's vectors live in A's namespace only
        holding = {namespace for namespace, vectors in tenants.double.namespaces.items()
                   if any(vector_id.startswith(a_document["document_id"]) for vector_id in vectors)}
        assert holding == {TENANT_A}

"""Every /v1 route needs a known API key; keys are never logged."""

import pytest
from structlog.testing import capture_logs

V1_ROUTES = [
    ("GET", "/v1/documents"),
    ("POST", "/v1/documents"),
    ("GET", "/v1/documents/0123456789abcdef0123456789abcdef"),
    ("DELETE", "/v1/documents/0123456789abcdef0123456789abcdef"),
    ("POST", "/v1/documents/0123456789abcdef0123456789abcdef/reprocess"),
    ("POST", "/v1/documents/0123456789abcdef0123456789abcdef/cancel"),
    ("POST", "/v1/search"),
    ("GET", "/v1/tasks/0123456789abcdef0123456789abcdef"),
]


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
def test_missing_key_is_401_with_bearer_challenge(gateway, method, path):
    response = gateway.client.request(method, path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "missing API key" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
def test_unknown_key_is_401(gateway, method, path):
    response = gateway.client.request(method, path, headers={"Authorization": "Bearer not-a-key"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "invalid API key"}


@pytest.mark.parametrize("header", [
    "Basic a2V5LWEtM2Y5YzFlOg==",      # another scheme
    "Bearer",                           # no credentials
    "Bearer key-a-3f9c1",               # a prefix of a real key
    "Bearer key-a-3f9c1eX",             # a real key plus one character
])
def test_near_misses_are_401(gateway, header):
    response = gateway.client.get("/v1/documents", headers={"Authorization": header})
    assert response.status_code == 401


def test_known_key_maps_to_its_tenant(gateway):
    document = gateway.accepted(tenant="tenant-b")
    assert gateway.get(f"/v1/documents/{document['document_id']}", tenant="tenant-b").status_code == 200


def test_api_keys_never_reach_the_logs(gateway):
    with capture_logs() as logs:
        gateway.accepted(tenant="tenant-a")
        gateway.client.get("/v1/documents", headers={"Authorization": "Bearer wrong-key-123"})
    text = repr(logs)
    assert "request" in text  # the access log did record these requests
    assert gateway.auth("tenant-a")["Authorization"].removeprefix("Bearer ") not in text
    assert "wrong-key-123" not in text

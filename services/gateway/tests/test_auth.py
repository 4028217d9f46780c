"""Every /v1 route needs a known API key; keys are never logged."""

import os
import subprocess
import sys

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


# --- DOCFLOW_API_KEYS: every key belongs to exactly one tenant; no key is ever printed ---

def _start_gateway(api_keys: str, admin_keys: str = "") -> "subprocess.CompletedProcess[str]":
    """The real entry point (`python -m docflow.gateway`), as a deployment starts it."""
    env = {**os.environ, "DOCFLOW_API_KEYS": api_keys, "DOCFLOW_ADMIN_API_KEYS": admin_keys,
           "DOCFLOW_GATEWAY_PORT": "1", "DOCFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    return subprocess.run([sys.executable, "-m", "docflow.gateway"], env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_key_given_twice_is_refused_at_start_without_printing_it():
    """`k=acme,k=globex` silently gave k to globex (the last pair won): a key meant for one
    tenant opened another's documents. The gateway must refuse to start."""
    done = _start_gateway("Zq9sekret-1=acme,Xw7other-2=initech,Zq9sekret-1=globex")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "given twice" in output or "gives one key twice" in output
    assert "pairs 1 and 3" in output
    assert "Zq9" not in output and "Xw7" not in output


def test_a_malformed_pair_is_refused_without_printing_any_of_its_key():
    """The error named a bad pair by its key's first 4 characters."""
    done = _start_gateway("Xw7good-1=acme,Zq9sekret-2=Not A Tenant")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "pair 2" in output
    assert "Zq9" not in output and "Xw7" not in output


def test_an_operator_key_that_is_also_a_tenant_key_is_refused():
    done = _start_gateway("Zq9both-1=acme", admin_keys="Zq9both-1")
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "DOCFLOW_ADMIN_API_KEYS" in output and "Zq9" not in output

"""POST/GET/DELETE /v1/webhooks on the real app and Redis: validation, the address rules
(names resolved by a stub: no DNS, and any socket to anything but loopback fails the
test), the per-tenant bound, the secret shown once, and tenant isolation."""

import ipaddress
import socket

import pytest

from docflow.gateway.routers.webhooks import get_resolver

# What the stub resolver answers: names mapped to the addresses an attacker would aim at.
NAMES = {
    "hooks.example.com": ["93.184.216.34"],
    "intranet.example.com": ["10.1.2.3"],
    "mixed.example.com": ["93.184.216.34", "192.168.1.9"],
    "metadata.example.com": ["169.254.169.254"],
    "v6-metadata.example.com": ["fd00:ec2::254"],
    "localhost.example.com": ["127.0.0.1"],
    "linklocal.example.com": ["169.254.10.10"],
    "mapped.example.com": ["::ffff:10.0.0.1"],
}


def stub_resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


@pytest.fixture(autouse=True)
def only_loopback_sockets(monkeypatch):
    """Fail the test if anything opens a connection to a non-loopback address."""
    real_connect = socket.socket.connect
    opened: list = []

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            opened.append(address)
            raise AssertionError(f"a test opened a socket to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):  # Redis on 127.0.0.1 resolves; no name may
        if host not in ("127.0.0.1", "::1", "localhost"):
            pytest.fail(f"DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield
    assert not opened


@pytest.fixture
def hooks(make_gateway):
    def make(**overrides):
        gw = make_gateway(**overrides)
        gw.client.app.dependency_overrides[get_resolver] = lambda: stub_resolver
        return gw
    return make


def register(gw, url="https://hooks.example.com/docflow", events=("document.completed",), tenant="tenant-a"):
    return gw.post("/v1/webhooks", tenant=tenant, json={"url": url, "events": list(events)})


def test_register_answers_id_and_secret_once_and_lists_without_it(hooks):
    gw = hooks()
    response = register(gw, events=["document.completed", "document.failed", "batch.completed"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert body["events"] == ["document.completed", "document.failed", "batch.completed"]
    listed = gw.get("/v1/webhooks").json()["webhooks"]
    assert [h["id"] for h in listed] == [body["id"]]
    assert "secret" not in listed[0]
    one = gw.get(f"/v1/webhooks/{body['id']}")
    assert one.status_code == 200 and "secret" not in one.json()
    assert one.json()["url"] == "https://hooks.example.com/docflow"
    assert gw.delete(f"/v1/webhooks/{body['id']}").status_code == 204
    assert gw.get(f"/v1/webhooks/{body['id']}").status_code == 404
    assert gw.delete(f"/v1/webhooks/{body['id']}").status_code == 404
    assert gw.get("/v1/webhooks").json()["webhooks"] == []


@pytest.mark.parametrize("events", [[], ["document.created"], ["document.completed", "nope"], "document.failed"])
def test_unknown_or_missing_events_are_refused(hooks, events):
    gw = hooks()
    response = gw.post("/v1/webhooks", json={"url": "https://hooks.example.com/", "events": events})
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("url, why", [
    ("ftp://hooks.example.com/x", "only http and https"),
    ("https://user:pw@hooks.example.com/x", "credentials"),
    ("not a url", ""),
    ("https://intranet.example.com/hook", "private"),
    ("https://mixed.example.com/hook", "private"),
    ("https://metadata.example.com/latest", "metadata"),
    ("https://v6-metadata.example.com/", "metadata"),
    ("http://localhost.example.com:8080/", "loopback"),
    ("http://linklocal.example.com/", "link-local"),
    ("http://mapped.example.com/", "private"),
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://no-such-host.example.com/", "could not be resolved"),
])
def test_refused_urls(hooks, url, why):
    gw = hooks()
    response = register(gw, url=url)
    assert response.status_code == 422, response.text
    assert why in response.json()["detail"]
    assert gw.get("/v1/webhooks").json()["webhooks"] == []


def test_private_addresses_allowed_by_the_setting_but_never_metadata(hooks):
    gw = hooks(allow_private_urls=True)
    assert register(gw, url="http://127.0.0.1:8080/hook").status_code == 201
    assert register(gw, url="https://intranet.example.com/hook").status_code == 201
    for url in ("https://metadata.example.com/", "http://169.254.169.254/", "http://[fd00:ec2::254]/"):
        response = register(gw, url=url)
        assert response.status_code == 422 and "metadata" in response.json()["detail"], url


def test_webhooks_per_tenant_are_bounded(hooks):
    gw = hooks(webhook_max_per_tenant=2)
    assert register(gw).status_code == 201
    assert register(gw).status_code == 201
    third = register(gw)
    assert third.status_code == 409 and "DOCFLOW_WEBHOOK_MAX_PER_TENANT" in third.json()["detail"]
    assert register(gw, tenant="tenant-b").status_code == 201  # another tenant's own bound


def test_tenants_never_see_each_others_webhooks(hooks):
    gw = hooks()
    mine = register(gw).json()["id"]
    assert gw.get(f"/v1/webhooks/{mine}", tenant="tenant-b").status_code == 404
    assert gw.delete(f"/v1/webhooks/{mine}", tenant="tenant-b").status_code == 404
    assert gw.get("/v1/webhooks", tenant="tenant-b").json()["webhooks"] == []
    assert gw.get(f"/v1/webhooks/{mine}").status_code == 200


def test_webhooks_need_a_key(hooks):
    gw = hooks()
    assert gw.client.get("/v1/webhooks").status_code == 401
    assert gw.client.post("/v1/webhooks", json={"url": "https://hooks.example.com/",
                                                "events": ["document.completed"]}).status_code == 401


def test_a_batch_maps_its_documents_to_it_and_is_announced_to_the_dispatcher_only_with_a_webhook(
        hooks, redis_client):
    from docflow.shared.names import KEY_PREFIX
    from docflow.shared.webhooks import batch_of_key, notifications_key

    gw = hooks()
    files = [("file", ("a.txt", b"first file of the batch\n" * 3)), ("file", ("b.txt", b"second file\n" * 3))]
    quiet = gw.post("/v1/batches", params={"on_duplicate": "new"}, files=files).json()
    assert not redis_client.exists(notifications_key(KEY_PREFIX)), "no webhook: nothing for the dispatcher"
    assert register(gw, events=["batch.completed"]).status_code == 201
    answer = gw.post("/v1/batches", params={"on_duplicate": "new"}, files=files).json()
    for batch in (quiet, answer):
        for entry in batch["documents"]:
            assert redis_client.get(batch_of_key(KEY_PREFIX, "tenant-a", entry["document_id"])) == batch["batch_id"]
    [(_, fields)] = redis_client.xrange(notifications_key(KEY_PREFIX))
    assert fields == {"tenant": "tenant-a", "batch_id": answer["batch_id"], "status": ""}

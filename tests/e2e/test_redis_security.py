"""The whole stack on a Redis that speaks only TLS and admits only an ACL user.

The redis-server here (Debian's, built with TLS) listens on a TLS port only, checks
client certificates (`tls-auth-clients yes`), has its default user switched off
and one ACL user, `docflow`, with a password and without the dangerous commands
(FLUSHALL, CONFIG, KEYS, ...). The certificates are made for the test with openssl.
The gateway, the three workers' Celery broker and result backend, the status store
and the dead letters all connect from configuration alone: a
`rediss://docflow:<password>@localhost` URL plus DOCFLOW_REDIS_TLS_* files.
"""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from docflow.devstack import samples
from docflow.devstack.processes import Process, free_port, wait_until
from docflow.gateway.main import create_app
from docflow.shared.redis_connection import redis_client
from docflow.shared.settings import Settings

from .conftest import Api, own_stack

PASSWORD = "s3cret-acl-password"
KEY, TENANT = "key-tls", "tls"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl is needed to make certificates")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for localhost / 127.0.0.1 and a client certificate."""
    folder = Path(tmp_path_factory.mktemp("pki"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=docflow test CA", cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, subject, extra in (("server", "/CN=localhost", ["-extfile", "server.ext"]),
                                 ("client", "/CN=docflow", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject, cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", *extra, cwd=folder)
    return folder


@pytest.fixture(scope="module")
def tls_redis(pki, tmp_path_factory) -> Iterator[int]:
    port = free_port()
    data = Path(tmp_path_factory.mktemp("tls-redis"))
    server = Process("redis-tls", [
        shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port),
        "--bind", "127.0.0.1", "--dir", str(data), "--appendonly", "yes", "--save", "",
        "--tls-cert-file", str(pki / "server.crt"), "--tls-key-file", str(pki / "server.key"),
        "--tls-ca-cert-file", str(pki / "ca.crt"), "--tls-auth-clients", "yes",
        "--user", "default", "off",
        "--user", "docflow", "on", f">{PASSWORD}", "~*", "&*", "+@all", "-@dangerous",
    ], log_path=data / "redis.log").start()
    probe = redis.Redis(host="localhost", port=port, username="docflow", password=PASSWORD, ssl=True,
                        ssl_ca_certs=str(pki / "ca.crt"), ssl_certfile=str(pki / "client.crt"),
                        ssl_keyfile=str(pki / "client.key"))
    try:
        wait_until(probe.ping, 20, "redis-server with TLS", server.popen)
        yield port
    finally:
        server.stop()


def tls_env(pki: Path) -> dict[str, str]:
    return {"DOCFLOW_REDIS_TLS_CA_FILE": str(pki / "ca.crt"),
            "DOCFLOW_REDIS_TLS_CERT_FILE": str(pki / "client.crt"),
            "DOCFLOW_REDIS_TLS_KEY_FILE": str(pki / "client.key")}


def url(port: int, password: str = PASSWORD, user: str = "docflow") -> str:
    return f"rediss://{user}:{password}@localhost:{port}/0"


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory, pki, tls_redis):
    env = {"DOCFLOW_API_KEYS": f"{KEY}={TENANT}", "DOCFLOW_EMBEDDER": "hash", **tls_env(pki)}
    with own_stack(tmp_path_factory, "tls-acl-stack", env, redis_url=url(tls_redis)) as local:
        yield local


def test_the_whole_pipeline_runs_over_tls_as_an_acl_user(tls_stack):
    api = Api(tls_stack.gateway_url, KEY, TENANT)
    document_id = api.upload("tls.txt", samples.text(["Every hop to Redis is encrypted and authenticated."]))
    record = api.wait_final(document_id, timeout=120)
    assert record["status"] == "completed", record["error"]
    assert api.search("encrypted and authenticated", top_k=1)[0]["document_id"] == document_id
    assert api.http.get(f"/v1/tasks/{record['task_id']}").json()["state"] == "SUCCESS", "results over TLS"
    for log in tls_stack.logs_dir.glob("*.log"):
        assert PASSWORD not in log.read_text(errors="replace"), f"the Redis password is in {log.name}"


def test_a_client_without_tls_or_credentials_gets_nothing(pki, tls_redis):
    plain = redis.Redis(host="127.0.0.1", port=tls_redis, socket_connect_timeout=2, socket_timeout=2)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    anonymous = redis_client(Settings(redis_url=f"rediss://localhost:{tls_redis}/0", **_tls_settings(pki)))
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    without_certificate = redis_client(Settings(redis_url=url(tls_redis), redis_tls_ca_file=pki / "ca.crt"))
    with pytest.raises(redis.exceptions.ConnectionError):
        without_certificate.ping()
    unverified_server = redis_client(Settings(redis_url=url(tls_redis), **{**_tls_settings(pki),
                                                                           "redis_tls_ca_file": None}))
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        unverified_server.ping()


def test_the_acl_user_cannot_run_dangerous_commands(pki, tls_redis):
    client = redis_client(Settings(redis_url=url(tls_redis), **_tls_settings(pki)))
    assert client.acl_whoami() == "docflow"
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()


def test_a_wrong_password_is_a_503_at_the_gateway_not_a_500(pki, tls_redis):
    settings = Settings(redis_url=url(tls_redis, password="wrong"), api_keys=f"{KEY}={TENANT}",
                        **_tls_settings(pki))
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/documents", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert "wrong" not in response.text and PASSWORD not in response.text


def _tls_settings(pki: Path) -> dict[str, Path]:
    return {"redis_tls_ca_file": pki / "ca.crt", "redis_tls_cert_file": pki / "client.crt",
            "redis_tls_key_file": pki / "client.key"}

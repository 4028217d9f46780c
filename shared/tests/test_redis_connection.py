"""Redis TLS options reach every client the same way; delivery settings stay coherent.

tests/e2e/test_redis_security.py runs the whole stack against a redis-server that
speaks only TLS and admits only an ACL user with a password.
"""

import ssl

import pytest

from docflow.shared.celery_app import create_celery_app
from docflow.shared.redis_connection import redis_client, tls_options
from docflow.shared.settings import Settings

TLS_URL = "rediss://docflow:s3cret@redis.example:6380/0"


def test_plain_redis_gets_no_tls_options():
    settings = Settings(redis_url="redis://:pw@127.0.0.1:6379/0", redis_tls_ca_file="/ca.pem")
    assert tls_options(settings) == {}
    app = create_celery_app("test", settings)
    assert not app.conf.broker_use_ssl and not app.conf.redis_backend_use_ssl


def test_rediss_verifies_the_server_by_default_with_the_configured_files():
    settings = Settings(redis_url=TLS_URL, redis_tls_ca_file="/etc/docflow/ca.pem",
                        redis_tls_cert_file="/etc/docflow/client.pem",
                        redis_tls_key_file="/etc/docflow/client.key")
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/docflow/ca.pem",
                "ssl_certfile": "/etc/docflow/client.pem", "ssl_keyfile": "/etc/docflow/client.key"}
    assert tls_options(settings) == expected
    app = create_celery_app("test", settings)
    assert app.conf.broker_use_ssl == expected and app.conf.redis_backend_use_ssl == expected


def test_the_redis_py_client_gets_credentials_from_the_url_and_tls_from_settings():
    client = redis_client(Settings(redis_url=TLS_URL, redis_tls_ca_file="/ca.pem"))
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("docflow", "s3cret")
    assert kwargs["ssl_ca_certs"] == "/ca.pem" and kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_verification_can_be_relaxed_explicitly():
    assert tls_options(Settings(redis_url=TLS_URL, redis_tls_verify="none"))["ssl_cert_reqs"] == ssl.CERT_NONE


def test_max_deliveries_must_exceed_max_retries():
    with pytest.raises(ValueError, match="DOCFLOW_MAX_DELIVERIES"):
        Settings(max_retries=5, max_deliveries=5)
    assert Settings(max_retries=5, max_deliveries=6).max_deliveries == 6

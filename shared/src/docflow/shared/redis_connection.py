"""Connecting to Redis the configured way: password, ACL user and TLS.

Credentials come with the URL (`redis://:password@host/0`, `redis://user:password@host/0`
for an ACL user), which redis-py and kombu both read. TLS is the `rediss://` scheme;
the CA bundle and an optional client certificate come from settings, and the same
options go to every client: the status store and dead letters (redis-py), Celery's
broker (`broker_use_ssl`) and its result backend (`redis_backend_use_ssl`), which
take redis-py's own `ssl_*` keyword arguments.
"""

import ssl
from typing import Any

import redis

from docflow.shared.settings import Settings

_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def uses_tls(settings: Settings) -> bool:
    return settings.redis_url.startswith("rediss://")


def tls_options(settings: Settings) -> dict[str, Any]:
    """redis-py's `ssl_*` arguments for a `rediss://` URL; empty for plain `redis://`.

    Celery refuses a `rediss://` broker without `ssl_cert_reqs`, so it is always set
    (CERT_REQUIRED unless DOCFLOW_REDIS_TLS_VERIFY says otherwise).
    """
    if not uses_tls(settings):
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[settings.redis_tls_verify]}
    for option, path in (("ssl_ca_certs", settings.redis_tls_ca_file),
                         ("ssl_certfile", settings.redis_tls_cert_file),
                         ("ssl_keyfile", settings.redis_tls_key_file)):
        if path is not None:
            options[option] = str(path)
    return options


def redis_client(settings: Settings, **kwargs: Any) -> redis.Redis:
    """A redis-py client (decoding responses to str) for the configured Redis."""
    return redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                **tls_options(settings), **kwargs)

"""Fuzzing the gateway from its own OpenAPI schema: no input gets a 5xx.

schemathesis generates requests for every operation in the gateway's OpenAPI
schema -- valid ones, and ones that bend every parameter, body, form field and
method -- and sends them over HTTP to real gateway processes on the session stack,
whose workers really run whatever is accepted. Every request carries a valid key
(the tenant's, or an operator's for /v1/admin, served by a second gateway process on
the same Redis that has admin keys configured), so the input reaches the handlers;
keys themselves are tested in services/gateway/tests/test_auth.py. The only check is
the one that matters here: the server never answers 5xx. Bounded by a fixed number
of examples per operation (DOCFLOW_FUZZ_EXAMPLES, 30 by default) and a fixed seed.
The schema is the one the gateway serves at /openapi.json (built here from the same
app factory; the first test checks they are equal). The probes (/healthz, /readyz)
are left out: a 503 is their documented answer while a dependency is down; so are
the event streams, which stay open by design, and the inputs that name a URL docflow
would connect to (see below).
"""

import copy
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from docflow.devstack.processes import Process, free_port, wait_until
from docflow.gateway.main import create_app
from docflow.shared.settings import Settings

from .conftest import ADMIN_KEY, KEY_A, write_figures

EXAMPLES = int(os.environ.get("DOCFLOW_FUZZ_EXAMPLES", "30"))
SPEC = create_app(Settings()).openapi()


def without_outbound_urls(spec: dict) -> dict:
    """The schema minus the inputs that make docflow connect to a URL the request names:
    a document by URL (the JSON form of POST /v1/documents) and webhook registration.
    The session stack allows private addresses (its test pages are on 127.0.0.1), so a
    fuzzed URL could send a worker to any address; tests only ever connect to
    127.0.0.1. Their validation is tested in services/gateway/tests (test_url_documents,
    test_webhooks) with a guard that fails on any other connection."""
    spec = copy.deepcopy(spec)
    upload = spec["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    for media_type in [m for m in upload if m != "multipart/form-data"]:
        del upload[media_type]
    spec["paths"].get("/v1/webhooks", {}).pop("post", None)
    return spec


# Event streams answer 200 and then stay open (the tenant's stream for good, heartbeats
# keep it alive): every accepted example would hold the fuzzer for its whole timeout.
# Their input (the path's id, Last-Event-ID) is tested in services/gateway/tests/test_events.py.
STREAMS = r"^/v1/(events|documents/\{document_id\}/events)$"
ALL = (schemathesis.openapi.from_dict(without_outbound_urls(SPEC))
       .exclude(path_regex=r"^/(healthz|readyz)$").exclude(path_regex=STREAMS))
# Operations that take no input and wait ~1 s for workers to answer a broadcast: a few
# examples (methods, headers) cover them.
INPUTLESS = r"^/v1/admin/(queues|workers)$"
schema = ALL.exclude(path_regex=INPUTLESS)
inputless = ALL.include(path_regex=INPUTLESS)
STATUSES: Counter = Counter()
OPERATIONS: set[str] = set()


@pytest.fixture(scope="module")
def admin_gateway(stack) -> Iterator[str]:
    """A second gateway process on the session stack's Redis, with an operator key."""
    port = free_port()
    env = {**stack.process_env(), "DOCFLOW_ADMIN_API_KEYS": ADMIN_KEY, "DOCFLOW_GATEWAY_PORT": str(port)}
    process = Process("gateway-admin", [sys.executable, "-m", "docflow.gateway"], env,
                      stack.logs_dir / "gateway-admin.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 60, "admin gateway",
                   process.popen)
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    if STATUSES:
        write_figures("fuzz", {"operations": len(OPERATIONS), "requests": sum(STATUSES.values()),
                               "statuses": dict(sorted(STATUSES.items())),
                               "server_errors": sum(n for s, n in STATUSES.items() if s >= 500)})


def differences(served, built, path: str = "") -> Iterator[str]:
    """The paths at which two JSON documents differ, with both values (a readable failure)."""
    if isinstance(served, dict) and isinstance(built, dict):
        for key in sorted(served.keys() | built.keys()):
            yield from differences(served.get(key), built.get(key), f"{path}/{key}")
    elif served != built:
        yield f"{path}: served {json.dumps(served)[:300]} != built {json.dumps(built)[:300]}"


def test_the_fuzzed_schema_is_the_one_the_gateway_serves(api_a):
    assert list(differences(api_a.http.get("/openapi.json").json(), SPEC)) == []


def call(case, stack, admin_gateway) -> None:
    admin = case.operation.path.startswith("/v1/admin")
    key, base_url = (ADMIN_KEY, admin_gateway) if admin else (KEY_A, stack.gateway_url)
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
    response = case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=60)
    STATUSES[response.status_code] += 1
    OPERATIONS.add(case.operation.label)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case, stack, admin_gateway):
    call(case, stack, admin_gateway)


@inputless.parametrize()
@settings(max_examples=3, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_request_to_an_inputless_operation_gets_a_server_error(case, stack, admin_gateway):
    call(case, stack, admin_gateway)

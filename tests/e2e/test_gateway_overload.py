"""The gateway stays responsive under a flood of searches, over real HTTP.

A real uvicorn gateway, the real query-only embedder and indexer workers on a real
redis-server (the document workers are not needed: nothing here is ingested). Found
before: 200 concurrent searches got 51-64 answers 503 "Redis unavailable" with Redis
healthy (a client pool of 10 connections, kombu's default, behind 40+ threads), and
with the indexer stopped 60 waiting searches made /healthz take 24.7 s, long enough
for a liveness probe to restart the gateway.
"""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docflow.devstack.redis_server import RedisServer
from docflow.devstack.stack import LocalStack
from docflow.shared.names import Stage, WorkerRole

from .conftest import KEY_A, STACK_ENV

THREADS, SEARCH_BOUND, SEARCH_TIMEOUT = 64, 32, 8
ENV = {
    "DOCFLOW_API_KEYS": STACK_ENV["DOCFLOW_API_KEYS"],
    "DOCFLOW_EMBEDDER": "hash",  # the model is not what is under test; the threads and pools are
    "DOCFLOW_GATEWAY_THREADS": str(THREADS),
    "DOCFLOW_SEARCH_MAX_CONCURRENT": str(SEARCH_BOUND),
    "DOCFLOW_SEARCH_TIMEOUT_SECONDS": str(SEARCH_TIMEOUT),
    "DOCFLOW_SEARCH_RATE_LIMIT_PER_MINUTE": "0",
    "DOCFLOW_UPLOAD_RATE_LIMIT_PER_MINUTE": "0",
}


@pytest.fixture(scope="module")
def search_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(data_dir=Path(tmp_path_factory.mktemp("overload")), env=ENV)
    try:
        local.redis = RedisServer(local.data_dir / "redis").start()
        local.redis_url = local.redis.url
        for stage in (Stage.EMBED, Stage.INDEX):
            local.start_side_worker(stage, WorkerRole.QUERY)
        local.start_gateway()
        for stage in (Stage.EMBED, Stage.INDEX):
            local.wait_for_worker(stage, WorkerRole.QUERY)
        yield local
    finally:
        local.stop()


async def _searches(base_url: str, count: int) -> list[tuple[int, str, str | None, float]]:
    """`count` searches at once: (status, detail, Retry-After, seconds) each."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {KEY_A}"},
                                 timeout=SEARCH_TIMEOUT + 30, limits=limits) as client:
        async def one(number: int) -> tuple[int, str, str | None, float]:
            started = time.monotonic()
            response = await client.post("/v1/search", json={"query": f"harbour report {number}"})
            detail = response.json().get("detail", "") if response.status_code != 200 else ""
            return response.status_code, str(detail), response.headers.get("Retry-After"), time.monotonic() - started

        return await asyncio.gather(*(one(n) for n in range(count)))


def _probe_seconds(base_url: str, path: str) -> float:
    started = time.monotonic()
    response = httpx.get(f"{base_url}{path}", timeout=60)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_200_concurrent_searches_get_answers_or_a_clear_overload_never_redis_unavailable(search_stack):
    answers = asyncio.run(_searches(search_stack.gateway_url, 200))

    codes = Counter(code for code, _, _, _ in answers)
    assert set(codes) <= {200, 503}, codes
    assert codes[200] >= SEARCH_BOUND, codes
    refused = [answer for answer in answers if answer[0] == 503]
    # Every 503 is the search bound, with Retry-After: never Redis, which was healthy.
    assert all("too many searches" in detail and retry_after == "1" for _, detail, retry_after, _ in refused), \
        Counter(detail for _, detail, _, _ in refused)


def test_with_the_indexer_stopped_waiting_searches_are_bounded_and_probes_and_uploads_answer(search_stack):
    indexer = search_stack.side_workers[(Stage.INDEX, WorkerRole.QUERY)]
    indexer.signal(signal.SIGSTOP)
    try:
        async def flood_and_probe() -> tuple[list, dict[str, float], float]:
            flood = asyncio.create_task(_searches(search_stack.gateway_url, 60))
            await asyncio.sleep(2)  # the first searches hold every slot, waiting on the indexer
            probes = {path: await asyncio.to_thread(_probe_seconds, search_stack.gateway_url, path)
                      for path in ("/healthz", "/readyz")}
            started = time.monotonic()
            upload = await asyncio.to_thread(
                httpx.post, f"{search_stack.gateway_url}/v1/documents", headers={"Authorization": f"Bearer {KEY_A}"},
                files={"file": ("note.txt", b"An upload while every search waits.\n", "text/plain")}, timeout=60)
            upload_seconds = time.monotonic() - started
            assert upload.status_code == 202, upload.text
            return await flood, probes, upload_seconds

        answers, probes, upload_seconds = asyncio.run(flood_and_probe())
    finally:
        indexer.signal(signal.SIGCONT)

    waited = [answer for answer in answers if answer[0] == 504]
    refused = [answer for answer in answers if answer[0] == 503]
    assert len(waited) == SEARCH_BOUND and len(refused) == 60 - SEARCH_BOUND, Counter(a[0] for a in answers)
    # Beyond the bound a search is told at once, with Retry-After, instead of queueing.
    assert all(seconds < 3 and retry_after == "1" for _, _, retry_after, seconds in refused), refused
    # The probes and an upload never wait behind the searches (24.7 s for /healthz before).
    assert all(seconds < 1.5 for seconds in probes.values()), probes
    assert upload_seconds < 3

"""Per-tenant rate limits: 429 with Retry-After, one budget shared by every replica."""

import asyncio

import pytest
import redis.asyncio
from prometheus_client import REGISTRY

from docflow.gateway.rate_limit import Action, RateLimiter

QUERY = {"query": "quick brown fox"}


def test_uploads_beyond_the_limit_get_429_with_retry_after(make_gateway):
    gateway = make_gateway(upload_rate_limit_per_minute=3)
    for _ in range(3):
        gateway.accepted()
    refused = gateway.upload()
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) in range(1, 21)  # one token refills in 60/3 s
    assert "3 per minute" in refused.json()["detail"]
    assert gateway.get("/v1/documents").json()["total"] == 3, "a refused upload leaves nothing behind"


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("docflow_gateway_documents_rejected_total", {"reason": reason}) or 0.0


def test_a_rate_limited_upload_counts_as_rejected_and_a_search_does_not(make_gateway):
    gateway = make_gateway(upload_rate_limit_per_minute=1, search_rate_limit_per_minute=1,
                           search_timeout_seconds=0.2)
    gateway.accepted()
    before = rejected("rate_limited")
    assert gateway.upload().status_code == 429
    assert rejected("rate_limited") == before + 1
    gateway.post("/v1/search", json=QUERY)
    assert gateway.post("/v1/search", json=QUERY).status_code == 429
    assert rejected("rate_limited") == before + 1, "a refused search is not a rejected upload"


def test_the_budget_is_shared_by_every_gateway_replica(make_gateway):
    """Two app instances (two replicas) on one Redis draw on one bucket per tenant."""
    replica_1 = make_gateway(upload_rate_limit_per_minute=4)
    replica_2 = make_gateway(upload_rate_limit_per_minute=4)
    statuses = [replica.upload().status_code for replica in (replica_1, replica_2) * 3]
    assert statuses == [202, 202, 202, 202, 429, 429]


def test_tenants_have_separate_budgets(make_gateway):
    gateway = make_gateway(upload_rate_limit_per_minute=1)
    gateway.accepted(tenant="tenant-a")
    assert gateway.upload(tenant="tenant-a").status_code == 429
    assert gateway.upload(tenant="tenant-b").status_code == 202


def test_searches_are_limited_separately_from_uploads(make_gateway):
    # No workers run here: an allowed search times out (504); a refused one is 429 at once.
    gateway = make_gateway(search_rate_limit_per_minute=1, upload_rate_limit_per_minute=1,
                           search_timeout_seconds=0.2)
    assert gateway.post("/v1/search", json=QUERY).status_code == 504
    refused = gateway.post("/v1/search", json=QUERY)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert gateway.upload().status_code == 202, "uploads have their own bucket"


def test_authentication_comes_before_the_limit(make_gateway):
    gateway = make_gateway(upload_rate_limit_per_minute=1)
    for _ in range(3):
        response = gateway.client.post("/v1/documents", headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401
    assert gateway.upload().status_code == 202, "unauthenticated requests use no tenant's budget"


def test_zero_turns_a_limit_off(make_gateway):
    gateway = make_gateway(upload_rate_limit_per_minute=0)
    assert all(gateway.upload().status_code == 202 for _ in range(5))


async def _with_limiter(redis_server, per_minute, scenario):
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        return await scenario(RateLimiter(client, "docflow:", per_minute))
    finally:
        await client.aclose()


def test_tokens_refill_continuously(redis_server, redis_client):
    async def scenario(limiter):
        assert all([(await limiter.take("t", Action.UPLOAD)).allowed for _ in range(60)])
        empty = await limiter.take("t", Action.UPLOAD)
        assert not empty.allowed and empty.retry_after_seconds == 1
        await asyncio.sleep(1.2)  # a little over one token back
        assert [(await limiter.take("t", Action.UPLOAD)).allowed for _ in range(2)] == [True, False]

    asyncio.run(_with_limiter(redis_server, {Action.UPLOAD: 60}, scenario))  # one token per second


@pytest.mark.parametrize("action", list(Action))
def test_an_idle_bucket_expires(redis_server, redis_client, action):
    async def scenario(limiter):
        await limiter.take("t", action)

    asyncio.run(_with_limiter(redis_server, {action: 60}, scenario))
    ttl = redis_client.pttl(f"docflow:ratelimit:{action.value}:t")
    assert 0 < ttl <= 61_000, "a full bucket is the same as no bucket: Redis forgets it"


def test_reprocesses_beyond_their_limit_get_429_with_retry_after_and_change_nothing(make_gateway, broker):
    """700 reprocess calls in 2.4 s were all accepted, each a whole pipeline run."""
    gateway = make_gateway(reprocess_rate_limit_per_minute=2, upload_rate_limit_per_minute=100)
    document_id = gateway.accepted()["document_id"]
    for _ in range(2):
        assert gateway.post(f"/v1/documents/{document_id}/reprocess").status_code == 202
    refused = gateway.post(f"/v1/documents/{document_id}/reprocess")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) in range(1, 31)  # one token refills in 60/2 s
    assert "reprocess" in refused.json()["detail"]
    assert gateway.get(f"/v1/documents/{document_id}").json()["version"] == 3, "the refused one started nothing"
    assert broker.length("docflow.extract") == 3
    assert gateway.accepted(), "uploads draw on their own budget"

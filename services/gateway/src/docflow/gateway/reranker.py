"""Optional reranking: the best candidates re-scored by a cross-encoder service.

`DOCFLOW_RERANKER=http` sends the query and the candidates' texts to a `/rerank`
endpoint. One request shape serves the three common kinds: Hugging Face's TEI reads
`query` and `texts`, Cohere and Jina read `query`, `documents`, `top_n` and `model`
(each ignores the others' fields). Their answers differ too: TEI returns a list of
`{index, score}`, Cohere and Jina `{"results": [{index, relevance_score}]}`.

Reranking is an improvement, never a dependency: past its timeout or on any error the
fused order stands, the response says `reranked: false`, and a metric counts it.
"""

from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from prometheus_client import Counter

from docflow.shared.search import IndexHit
from docflow.shared.settings import Settings

log = structlog.get_logger(__name__)
RERANKS = Counter("docflow_gateway_reranks_total",
                  "Reranking requests by outcome: ok, or fallback (timeout, error: the fused order was kept)",
                  ["outcome"])


class RerankFailed(Exception):
    """The service did not answer usefully in time; the message says how."""


@dataclass
class Reranker:
    url: str
    model: str
    api_key: str
    timeout: float
    candidates: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Reranker | None":
        if settings.reranker == "none":
            return None
        return cls(url=settings.reranker_url, model=settings.reranker_model,
                   api_key=settings.reranker_api_key.get_secret_value(),
                   timeout=settings.reranker_timeout_seconds, candidates=settings.reranker_candidates)

    def rerank(self, query: str, hits: list[IndexHit]) -> tuple[list[IndexHit], bool]:
        """The hits in the service's order with its scores, and whether it answered; on
        failure the hits unchanged and False."""
        if not hits:
            return hits, True
        try:
            scores = self._scores(query, [hit.text for hit in hits])
        except RerankFailed as exc:
            RERANKS.labels("fallback").inc()
            log.warning("reranking failed; keeping the fused order", error=str(exc))
            return hits, False
        RERANKS.labels("ok").inc()
        rescored = [hit.model_copy(update={"score": scores[i]}) for i, hit in enumerate(hits) if i in scores]
        return sorted(rescored, key=lambda hit: -hit.score), True

    def _scores(self, query: str, texts: list[str]) -> dict[int, float]:
        body: dict[str, Any] = {"query": query, "texts": texts, "documents": texts, "top_n": len(texts),
                                "raw_scores": False}
        if self.model:
            body["model"] = self.model
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.post(self.url, json=body, headers=headers, timeout=self.timeout)
            response.raise_for_status()
            answer = response.json()
        except httpx.TimeoutException:
            raise RerankFailed(f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPStatusError as exc:
            raise RerankFailed(f"HTTP {exc.response.status_code}") from None
        except (httpx.HTTPError, ValueError) as exc:
            raise RerankFailed(f"{type(exc).__name__}: {exc}") from None
        return _parse_scores(answer, len(texts))


def _parse_scores(answer: Any, count: int) -> dict[int, float]:
    """index -> score from a TEI list or a Cohere/Jina `results` object."""
    items = answer.get("results") if isinstance(answer, dict) else answer
    if not isinstance(items, list):
        raise RerankFailed("the answer is neither a list nor an object with `results`")
    scores: dict[int, float] = {}
    for item in items:
        if not isinstance(item, dict):
            raise RerankFailed("an answer item is not an object")
        index, score = item.get("index"), item.get("score", item.get("relevance_score"))
        if not isinstance(index, int) or not 0 <= index < count or not isinstance(score, int | float):
            raise RerankFailed(f"an answer item has no valid index and score: {str(item)[:100]}")
        scores[index] = float(score)
    if not scores:
        raise RerankFailed("the answer scored no candidate")
    return scores

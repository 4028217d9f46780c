"""Fusing a vector and a keyword result list into one ranking: reciprocal rank fusion.

One function for both backends, so hybrid search ranks the same way on LanceDB and
Pinecone (LanceDB's own RRFReranker exists, but Pinecone needs this anyway, and one
implementation keeps the two from drifting). RRF (Cormack et al., 2009) scores a hit
by sum(1 / (k + rank)) over the lists it is in: it needs no score calibration
between cosine similarities and BM25 scores, which live on unrelated scales.
"""

from collections.abc import Sequence
from dataclasses import replace

from docflow.indexer.stores.base import SearchHit

# The constant of the original paper (and LanceDB's RRFReranker default): it damps
# the weight of the very first ranks so one list cannot dominate.
RRF_K = 60
# Each list contributes at least this many candidates, so a chunk ranked well by one
# list and moderately by the other is still found when few results are asked for.
FUSION_CANDIDATES = 50


def reciprocal_rank_fusion(ranked_lists: Sequence[Sequence[SearchHit]], limit: int,
                           k: int = RRF_K) -> list[SearchHit]:
    scores: dict[str, float] = {}
    first_seen: dict[str, SearchHit] = {}
    for hits in ranked_lists:
        for rank, hit in enumerate(hits, start=1):
            key = hit.id or f"{hit.document_id}#{hit.chunk_index}"
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
            first_seen.setdefault(key, hit)
    # Ties (same fused score) keep the order of first appearance: deterministic.
    order = sorted(scores, key=lambda key: -scores[key])
    return [replace(first_seen[key], score=scores[key]) for key in order[:limit]]

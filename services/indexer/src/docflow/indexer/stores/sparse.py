"""Sparse (keyword) vectors for Pinecone: BM25's term weighting with no fitted parameters.

A chunk's vector holds one weight per term (terms as `docflow.shared.highlights`
makes them, the way LanceDB's BM25 index tokenises): BM25's saturated, length-
normalised term frequency tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len)). A query's
vector is 1 per distinct term, so the dot product Pinecone ranks by is BM25 without
the IDF factor. IDF would need corpus statistics, and pinecone-text's
`BM25Encoder.default()` downloads fitted ones at run time, which nothing here may do.
Terms map to uint32 dimensions by a stable hash (blake2b, the same in every process).
"""

import hashlib
from collections import Counter

from docflow.shared.highlights import terms

K1 = 1.2
B = 0.75
# A default chunk is 200 model tokens, about 120 terms once stop words are dropped.
AVERAGE_TERMS = 120.0
# Pinecone caps the non-zero values of a sparse vector; a chunk rarely has this many
# distinct terms, and the rarest-weighted are the ones dropped.
MAX_SPARSE_VALUES = 1000


def term_dimension(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little")


def _sparse(weights: dict[int, float]) -> dict[str, list] | None:
    if not weights:
        return None  # Pinecone refuses an empty sparse vector: the chunk has none
    kept = sorted(weights.items(), key=lambda item: -item[1])[:MAX_SPARSE_VALUES]
    kept.sort()
    return {"indices": [index for index, _ in kept], "values": [value for _, value in kept]}


def document_vector(text: str) -> dict[str, list] | None:
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVERAGE_TERMS)
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        dimension = term_dimension(term)  # two terms on one dimension share it
        weights[dimension] = weights.get(dimension, 0.0) + tf * (K1 + 1) / (tf + norm)
    return _sparse(weights)


def query_vector(text: str) -> dict[str, list] | None:
    return _sparse({term_dimension(term): 1.0 for term in set(terms(text))})

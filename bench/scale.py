"""1,000,000 384-d vectors in one tenant's table: ANN search p50/p99 and recall@10 against
exact search, the vector index's build time and the process's peak memory.

    .venv/bin/python -m bench.scale [--vectors 1000000] [--work .data/bench/scale]

The table is written and maintained by the indexer's own code (`LanceDBStore.upsert`
in commits of 100,000 chunks, then `LanceDBStore.maintain` with the product's
settings: compaction, the BM25 index, the vector index of `VectorIndexConfig`)
and searched by `LanceDBStore.search(mode=vector)` with the product's
`VectorSearchOptions` (nprobes, refine_factor from settings), as the query worker does.
A sweep of nprobes and refine_factor on the same index shows what each costs.

The vectors are synthetic but shaped like sentence embeddings: unit vectors in 384
dimensions that vary along a few dozen latent directions (a mixture of 1,000 topics
in a 32-d space, projected to 384-d, plus small isotropic noise), so neighbours are
meaningful. (Isotropic random vectors have no neighbours worth the name: every point
is nearly equidistant from every other, which no embedding model produces.) Queries
are new points from the same distribution; the truth is exact cosine top-10 by numpy.
Run in its own process (bench/run.py does), so peak memory is the build's own.
"""

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.loadgen import percentile

TENANT = "scale"
DIMENSIONS, LATENT, TOPICS = 384, 32, 1000
COMMIT_ROWS = 100_000
QUERIES = 200
K = 10


class Embeddings:
    """Deterministic sentence-embedding-like unit vectors (see the module's docstring)."""

    def __init__(self, seed: int = 10) -> None:
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((LATENT, DIMENSIONS)).astype(np.float32) / np.sqrt(LATENT)
        self.topics = rng.standard_normal((TOPICS, LATENT)).astype(np.float32)
        self.rng = rng

    def sample(self, count: int) -> np.ndarray:
        topic = self.rng.integers(0, TOPICS, size=count)
        latent = self.topics[topic] + 0.6 * self.rng.standard_normal((count, LATENT)).astype(np.float32)
        vectors = latent @ self.projection + 0.15 * self.rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS


def _row_of(hit_id: str) -> int:
    return int(hit_id.split("#", 1)[0][1:])


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    best = np.empty((len(queries), k), dtype=np.int64)
    scores = queries @ data.T  # unit vectors: cosine
    for i, row in enumerate(scores):
        top = np.argpartition(-row, k)[:k]
        best[i] = top[np.argsort(-row[top])]
    return best


def _measure(store, queries: np.ndarray, truth: np.ndarray, options=None) -> dict:
    from docflow.shared.search import SearchMode

    saved = store.vector_search_options
    if options is not None:
        store.vector_search_options = options
    try:
        for query in queries[:10]:  # warm-up: index files into the page cache
            store.search(TENANT, query.tolist(), K, mode=SearchMode.VECTOR)
        latencies, recalls = [], []
        for query, expected in zip(queries, truth):
            began = time.perf_counter()
            hits = store.search(TENANT, query.tolist(), K, mode=SearchMode.VECTOR)
            latencies.append((time.perf_counter() - began) * 1000)
            recalls.append(len({_row_of(hit.id) for hit in hits} & set(expected.tolist())) / K)
    finally:
        store.vector_search_options = saved
    return {"p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2),
            "recall_at_10": round(float(np.mean(recalls)), 4), "min_recall": round(float(np.min(recalls)), 2)}


def bench_scale(work: Path, vectors: int = 1_000_000, queries: int = QUERIES) -> dict:
    from docflow.indexer.stores import open_vector_store
    from docflow.indexer.stores.base import VectorRecord
    from docflow.indexer.stores.lancedb import (VECTOR_INDEX_NAME, VectorSearchOptions,
                                                 ivf_partitions)
    from docflow.shared.messages import Chunk
    from docflow.shared.settings import Settings

    shutil.rmtree(work, ignore_errors=True)
    settings = Settings(lancedb_uri=str(work / "lancedb"), vector_store="lancedb")
    store = open_vector_store(settings)
    embeddings = Embeddings()
    query_vectors = Embeddings(seed=11)
    query_vectors.projection, query_vectors.topics = embeddings.projection, embeddings.topics
    probes = query_vectors.sample(queries)

    started = time.monotonic()
    truth = np.zeros((queries, K), dtype=np.int64)
    truth_scores = np.full((queries, K), -np.inf, dtype=np.float32)
    for start in range(0, vectors, COMMIT_ROWS):
        batch = embeddings.sample(min(COMMIT_ROWS, vectors - start))
        # Exact top-10 so far, merged batch by batch (the whole matrix never sits in memory).
        scores = probes @ batch.T
        merged_scores = np.concatenate([truth_scores, scores], axis=1)
        merged_rows = np.concatenate([truth, np.arange(start, start + len(batch))[None, :].repeat(queries, 0)],
                                     axis=1)
        order = np.argsort(-merged_scores, axis=1)[:, :K]
        truth_scores = np.take_along_axis(merged_scores, order, 1)
        truth = np.take_along_axis(merged_rows, order, 1)
        records = [VectorRecord.for_chunk(f"v{start + i:07d}", 1, Chunk(index=0, text=f"chunk {start + i}"), vector)
                   for i, vector in enumerate(batch)]
        store.upsert(TENANT, records, fresh=True)
        del records, batch, scores
    write_seconds = time.monotonic() - started

    # Compaction and the BM25 index first (no vector index yet), then the vector index:
    # two maintenance runs, so the index build is timed and measured on its own.
    rss_before = _status_kb("VmRSS")
    _reset_peak()
    began = time.monotonic()
    store.maintain(TENANT, retention_seconds=0, vector_index_min_rows=10**12)
    compact_seconds = time.monotonic() - began
    compact_peak = _status_kb("VmHWM")
    _reset_peak()
    rss_before_index = _status_kb("VmRSS")
    began = time.monotonic()
    health = store.maintain(TENANT, retention_seconds=0, vector_index_min_rows=settings.vector_index_min_rows)
    index_seconds = time.monotonic() - began
    index_peak = _status_kb("VmHWM")
    table = store._open(TENANT)
    stats = table.index_stats(VECTOR_INDEX_NAME)

    product = store.vector_search_options
    result = {"vectors": vectors, "dimensions": DIMENSIONS, "queries": queries,
              "write_seconds": round(write_seconds, 1), "compact_seconds": round(compact_seconds, 1),
              "index_build_seconds": round(index_seconds, 1),
              "rss_mb_before_compaction": round(rss_before / 1024), "peak_rss_mb_compaction": round(compact_peak / 1024),
              "rss_mb_before_index": round(rss_before_index / 1024), "peak_rss_mb_index": round(index_peak / 1024),
              "max_rss_mb_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "health": health, "index_type": stats.index_type, "indexed_rows": stats.num_indexed_rows,
              "partitions": ivf_partitions(vectors),
              "search_options": {"nprobes": product.nprobes, "refine_factor": product.refine_factor},
              "disk_mb": round(sum(p.stat().st_size for p in (work / "lancedb").rglob("*") if p.is_file()) / 2**20)}
    result["product"] = _measure(store, probes, truth)
    sweep = []
    for nprobes in (10, 20, 40, 80):
        for refine in (None, 10, 30):
            row = _measure(store, probes[:100], truth[:100], VectorSearchOptions(nprobes=nprobes, refine_factor=refine))
            sweep.append({"nprobes": nprobes, "refine_factor": refine or 0, **row})
            print(f"[scale] {json.dumps(sweep[-1])}", file=sys.stderr, flush=True)
    result["sweep"] = sweep
    # For scale: what a search costs without the index (an exact scan of every vector).
    flat = []
    for query in probes[:20]:
        began = time.perf_counter()
        table.search(query, vector_column_name="vector").distance_type("cosine").bypass_vector_index() \
            .select(["id", "_distance"]).limit(K).to_list()
        flat.append((time.perf_counter() - began) * 1000)
    result["exact_scan_p50_ms"] = round(percentile(flat, 50), 1)
    result["minutes"] = round((time.monotonic() - started) / 60, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=QUERIES)
    parser.add_argument("--work", type=Path, default=Path(".data/bench/scale"))
    args = parser.parse_args()
    result = bench_scale(args.work.resolve(), args.vectors, args.queries)
    shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

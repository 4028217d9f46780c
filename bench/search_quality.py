"""Search quality: nDCG@10 of vector, keyword and hybrid search on Cranfield-1400.

    .venv/bin/python -m bench.search_quality [--data ../shared/data/cranfield]

The collection (BEIR layout, see its README) is chunked by the extractor's chunker,
embedded by the bundled MiniLM (cached under .data/bench/cache), written through the
indexer's LanceDB store (the same schema, full-text index and fusion the indexer
serves), maintained once as the maintenance worker would, and searched in each mode
exactly as the indexer's search task does. A document's rank is the rank of its best
chunk; nDCG@10 uses the graded judgments (`qrels/test.tsv`, linear gains, as BEIR's
pytrec_eval does). bench/run.py calls `bench_search_quality` for its `quality` section.
"""

import argparse
import hashlib
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cranfield"
CACHE = REPO / ".data" / "bench" / "cache"
TENANT = "cranfield"
MODES = ("vector", "keyword", "hybrid")
K = 10
CHUNK_CANDIDATES = 50  # chunks asked for, so that ten distinct documents remain


def load_collection(data: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    corpus = {}
    for line in (data / "corpus.jsonl").read_text().splitlines():
        row = json.loads(line)
        text = row["text"].strip()
        if text:  # 471 and 995 are empty in the source
            corpus[row["_id"]] = text
    queries = {row["_id"]: row["text"] for row in map(json.loads, (data / "queries.jsonl").read_text().splitlines())}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in (data / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query_id, document_id, score = line.split("\t")
        qrels[query_id][document_id] = int(score)
    return corpus, queries, dict(qrels)


def ndcg_at_k(ranked: list[str], judged: dict[str, int], k: int = K) -> float:
    dcg = sum(judged.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted(judged.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def _embed_cached(provider, texts: list[str], name: str) -> np.ndarray:
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"cranfield-{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = provider.embed(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def bench_search_quality(data: Path = DEFAULT_DATA) -> dict:
    from docflow.embedder.providers.minilm import MiniLMProvider
    from docflow.extractor.chunking import chunk_pages
    from docflow.extractor.pages import PageText
    from docflow.indexer.stores.base import VectorRecord
    from docflow.indexer.stores.lancedb import LanceDBStore
    from docflow.shared.search import SearchMode
    from docflow.shared.settings import Settings

    settings = Settings()
    corpus, queries, qrels = load_collection(data)
    chunks = [(document_id, chunk) for document_id, text in corpus.items()
              for chunk in chunk_pages([PageText(page=None, text=text)], settings.chunk_tokens,
                                       settings.chunk_overlap_tokens)]
    provider = MiniLMProvider(batch_size=16, threads=2)
    started = time.monotonic()
    chunk_vectors = _embed_cached(provider, [chunk.text for _, chunk in chunks], "chunks")
    query_ids = [query_id for query_id in queries if query_id in qrels]
    query_vectors = _embed_cached(provider, [queries[q] for q in query_ids], "queries")
    embed_seconds = time.monotonic() - started

    with tempfile.TemporaryDirectory() as folder:
        store = LanceDBStore(str(Path(folder) / "lancedb"))
        records = [VectorRecord.for_chunk(document_id, 1, chunk, vector)
                   for (document_id, chunk), vector in zip(chunks, chunk_vectors)]
        for start in range(0, len(records), 1000):
            store.upsert(TENANT, records[start:start + 1000])
        store.maintain(TENANT, retention_seconds=0, vector_index_min_rows=10**9)  # exact scan: small table

        scores: dict[str, list[float]] = {mode: [] for mode in MODES}
        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        for query_id, vector in zip(query_ids, query_vectors):
            for mode in MODES:
                began = time.perf_counter()
                hits = store.search(TENANT, vector.tolist(), CHUNK_CANDIDATES, mode=SearchMode(mode),
                                    text=queries[query_id])
                latencies[mode].append((time.perf_counter() - began) * 1000)
                ranked = list(dict.fromkeys(hit.document_id for hit in hits))
                scores[mode].append(ndcg_at_k(ranked, qrels[query_id]))

    result = {"documents": len(corpus), "chunks": len(chunks), "queries": len(query_ids),
              "embed_seconds": round(embed_seconds, 1), "model": "all-MiniLM-L6-v2 (torch)",
              "ndcg_at_10": {mode: round(float(np.mean(scores[mode])), 4) for mode in MODES},
              "search_ms_p50": {mode: round(float(np.percentile(latencies[mode], 50)), 2) for mode in MODES}}
    result["hybrid_above_both"] = result["ndcg_at_10"]["hybrid"] > max(result["ndcg_at_10"]["vector"],
                                                                       result["ndcg_at_10"]["keyword"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    print(json.dumps(bench_search_quality(parser.parse_args().data), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search and indexing speed as one tenant's index grows to 20,000 documents.

    .venv/bin/python -m bench.corpus_growth [--documents 20000]

Starts redis-server and the indexer's document and maintenance workers exactly as the
local stack runs them (default settings: maintenance is sent by the index task after
`DOCFLOW_INDEX_MAINTENANCE_WRITES` writes or `DOCFLOW_INDEX_MAINTENANCE_DELAY_SECONDS`
after a quiet spell's first write, runs on its own worker, one at a time). Each
document is 10 chunks with their `hash` embeddings already in storage (bench/index_corpus.py),
so each index task is the pipeline's last step as it really runs: read the artifacts,
write the chunks, complete the record, count the write towards maintenance.

Documents go in in batches of 250; the rate of a batch is its documents over the time
from sending it to its last task's end. At 1K, 5K, 10K and 20K documents sending
pauses and searches are timed on the tenant's table through the indexer's own
`LanceDBStore.search` (hybrid, the API's default mode, as the query worker runs it;
maintenance is left to do whatever it is doing). At the end the very same rows are
written to a new table and maintained once (compacted, both indexes built: "freshly
compacted"), and both tables are searched alternately with the same queries.
bench/run.py calls `bench_corpus_growth` for its `corpus_growth` section.
"""

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench.cluster import fresh_stack
from bench.index_corpus import CHUNKS_PER_DOCUMENT, ChunkFactory, write_index_inputs
from bench.loadgen import percentile
from docflow.devstack.redis_server import RedisServer
from docflow.shared.names import Stage, Task, WorkerRole
from docflow.shared.search import SearchMode

TENANT = "growth"
BATCH = 250
WINDOW = 500  # documents over which a checkpoint's indexing rate is taken
SEARCHES = 150
SEARCH_SECONDS_CAP = 90  # per checkpoint: a very slow table still finishes in time
TOP_K = 10


def _maintenance_runs(url: str) -> dict:
    """Runs by outcome and the ok runs' total seconds, from the maintenance worker's /metrics."""
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return {}
    found = {}
    for outcome, value in re.findall(r'docflow_index_maintenance_runs_total\{outcome="(\w+)"\} ([0-9.e+]+)', text):
        found[outcome] = int(float(value))
    seconds = re.search(r'docflow_index_maintenance_duration_seconds_sum\{outcome="ok"\} ([0-9.e+]+)', text)
    if seconds:
        found["ok_seconds"] = round(float(seconds.group(1)), 1)
    return found


def _time_searches(store, queries: list[tuple[str, np.ndarray]], cap: float = SEARCH_SECONDS_CAP) -> list[float]:
    latencies, deadline = [], time.monotonic() + cap
    for text, vector in queries:
        began = time.perf_counter()
        store.search(TENANT, vector.tolist(), TOP_K, mode=SearchMode.HYBRID, text=text)
        latencies.append((time.perf_counter() - began) * 1000)
        if time.monotonic() > deadline:
            break
    return latencies


def _summary(latencies: list[float]) -> dict:
    return {"searches": len(latencies), "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2), "max_ms": round(max(latencies), 2)}


def bench_corpus_growth(work: Path, documents: int = 20_000, checkpoints: tuple[int, ...] = (1000, 5000, 10000, 20000),
                        searches: int = SEARCHES) -> dict:
    from docflow.indexer.stores import open_vector_store
    from docflow.indexer.stores.lancedb import LanceDBStore

    started = time.monotonic()
    stack = fresh_stack(work, {"DOCFLOW_EMBEDDER": "hash"})
    stack.redis = RedisServer(stack.data_dir / "redis").start()
    stack.redis_url = stack.redis.url
    factory = ChunkFactory()
    app = None
    try:
        stack.start_worker(Stage.INDEX)
        stack.start_side_worker(Stage.INDEX, WorkerRole.MAINTENANCE)
        stack.wait_for_worker(Stage.INDEX)
        stack.wait_for_worker(Stage.INDEX, WorkerRole.MAINTENANCE)
        settings = stack.settings()
        prepared = time.monotonic()
        messages = write_index_inputs(factory, stack.data_dir / "storage", stack.redis_url, TENANT, documents)
        prepare_seconds = time.monotonic() - prepared
        query_texts = factory.queries(searches)
        queries = list(zip(query_texts, factory.embed(query_texts)))
        store = open_vector_store(settings)  # the product's store and vector search options
        app = stack.celery()
        maintenance_url = stack.metrics_url(Stage.INDEX, WorkerRole.MAINTENANCE)

        batches, rows = [], []
        sent = 0
        ingest_started = time.monotonic()
        while sent < documents:
            batch = messages[sent:sent + BATCH]
            began = time.perf_counter()
            results = [app.send_task(Task.INDEX.value, args=[m.model_dump()]) for m in batch]
            for result in results:
                result.get(timeout=600, interval=0.01)
                result.forget()
            seconds = time.perf_counter() - began
            sent += len(batch)
            batches.append({"documents": sent, "seconds": round(seconds, 3),
                            "docs_per_second": round(len(batch) / seconds, 1)})
            if sent in checkpoints:
                window = [b for b in batches if b["documents"] > sent - WINDOW]
                rate = sum(BATCH for _ in window) / sum(b["seconds"] for b in window)
                health = store.health(TENANT)
                latencies = _time_searches(store, queries)
                row = {"documents": sent, "chunks": sent * CHUNKS_PER_DOCUMENT,
                       "docs_per_second": round(rate, 1), **_summary(latencies), **health,
                       "maintenance_runs": _maintenance_runs(maintenance_url),
                       "elapsed_seconds": round(time.monotonic() - ingest_started, 1)}
                rows.append(row)
                print(f"[corpus growth] {json.dumps(row)}", file=sys.stderr, flush=True)
        ingest_seconds = time.monotonic() - ingest_started

        # The same rows, freshly compacted: one new table, maintained once as the
        # maintenance worker would (compaction, FTS and vector index per the settings).
        live = store._open(TENANT)
        compacted_store = LanceDBStore(str(work / "compacted"), store.vector_search_options)
        copy_began = time.monotonic()
        compacted_store.db.create_table(f"tenant_{TENANT}", data=live.to_arrow())
        compacted_health = compacted_store.maintain(TENANT, settings.index_version_retention_seconds,
                                                    settings.vector_index_min_rows)
        compact_seconds = time.monotonic() - copy_began
        live_ms, compacted_ms = [], []
        for n, query in enumerate(queries):  # alternating which goes first
            pair = [(store, live_ms), (compacted_store, compacted_ms)]
            for which, out in (pair if n % 2 == 0 else pair[::-1]):
                out += _time_searches(which, [query])
        final = {"live": {**_summary(live_ms), **store.health(TENANT)},
                 "compacted": {**_summary(compacted_ms), **{k: v for k, v in compacted_health.items()
                                                          if k != "vector_index_built"},
                               "seconds_to_build": round(compact_seconds, 1)}}
        final["p99_ratio"] = round(final["live"]["p99_ms"] / final["compacted"]["p99_ms"], 2)
        first, last = rows[0], rows[-1]
        return {
            "documents": documents, "chunks_per_document": CHUNKS_PER_DOCUMENT, "batch": BATCH, "window": WINDOW,
            "searches_per_checkpoint": searches, "mode": "hybrid", "top_k": TOP_K,
            "settings": {"index_maintenance_writes": settings.index_maintenance_writes,
                         "index_maintenance_delay_seconds": settings.index_maintenance_delay_seconds,
                         "index_version_retention_seconds": settings.index_version_retention_seconds,
                         "vector_index_min_rows": settings.vector_index_min_rows,
                         "vector_index_nprobes": settings.vector_index_nprobes,
                         "vector_index_refine_factor": settings.vector_index_refine_factor,
                         "upsert_batch_size": settings.upsert_batch_size},
            "checkpoints": rows, "batches": batches, "final": final,
            "rate_ratio": round(last["docs_per_second"] / first["docs_per_second"], 2),
            "prepare_seconds": round(prepare_seconds, 1), "ingest_seconds": round(ingest_seconds, 1),
            "minutes": round((time.monotonic() - started) / 60, 1),
        }
    finally:
        if app is not None:
            app.close()
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=Path(".data/bench/corpus-growth"))
    args = parser.parse_args()
    checkpoints = tuple(c for c in (1000, 5000, 10000, 20000) if c <= args.documents)
    if args.documents not in checkpoints:
        checkpoints = (*checkpoints, args.documents)
    result = bench_corpus_growth(args.work.resolve(), args.documents, checkpoints)
    shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

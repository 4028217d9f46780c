"""Search through the REST API, idle and while a bulk ingest keeps every worker busy.

    .venv/bin/python -m bench.search_ingest [--documents 10000]

The local stack as `make run` starts it (gateway, Redis, the document, query and
maintenance workers; the MiniLM embedder, LanceDB). The tenant's index is preloaded
with 10,000 documents of 10 chunks (bench/index_corpus.py, written through the
indexer's own store in commits of 1,000 documents, each with its completed status
record) and maintained once as the maintenance worker would (compaction, BM25 index,
vector index): what is measured is search, not how the documents got there. Their
vectors come from the `hash` embedder, the queries' from MiniLM: the ranking means
nothing, the work per search (embed the query, ANN + BM25 over 100,000 chunks, fuse,
look the documents up) is what a real tenant's search does.

One client sends `POST /v1/search` (hybrid, the default mode, top 10) one after the
other: first with the stack idle, then while a bulk ingest runs: PDFs, DOCX and text
files are uploaded whenever the extract queue runs low (the extractor, then the
embedder's document processes, busy), and index tasks of already-embedded documents
are sent whenever the index queue runs low (the indexer's document process busy, and
its writes send maintenance runs). Each second the document workers' /metrics say how
many of their pool processes run a task: the share busy is recorded per stage.
bench/run.py calls `bench_search_ingest` for its `search_ingest` section.
"""

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import redis

from bench import corpus as corpus_mod
from bench.cluster import TENANT, Client, fresh_stack
from bench.index_corpus import ChunkFactory, load_into_store, write_index_inputs
from bench.loadgen import percentile
from docflow.shared.names import Queue, Stage, Task

TOP_K = 10


def _timed_searches(client: Client, queries: list[str], seconds_cap: float) -> tuple[list[float], int]:
    latencies, errors = [], 0
    deadline = time.monotonic() + seconds_cap
    for text in queries:
        began = time.perf_counter()
        response = client.http.post("/v1/search", json={"query": text, "top_k": TOP_K})
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code == 200:
            latencies.append(elapsed)
        else:
            errors += 1
        if time.monotonic() > deadline:
            break
    return latencies, errors


def _summary(latencies: list[float], errors: int) -> dict:
    return {"searches": len(latencies), "errors": errors, "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1), "max_ms": round(max(latencies), 1)}


def _running(url: str) -> tuple[float, float]:
    """(tasks running, pool processes) of one worker, from its /metrics."""
    running = concurrency = 0.0
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("docflow_tasks_in_progress{"):
            running += float(line.rsplit(" ", 1)[1])
        elif line.startswith("docflow_worker_concurrency{"):
            concurrency = max(concurrency, float(line.rsplit(" ", 1)[1]))
    return running, concurrency


class BulkIngest:
    """Keeps the extract and index queues from running dry until stopped, and samples how
    busy each document worker is (tasks running / pool processes, from its /metrics)."""

    def __init__(self, stack, client: Client, documents: list[corpus_mod.Document], index_messages: list) -> None:
        self.stack, self.client, self.documents = stack, client, documents
        self.index_messages = index_messages
        self.broker = redis.Redis.from_url(stack.redis_url)
        self.stop = threading.Event()
        self.measuring = threading.Event()
        self.uploaded = self.index_sent = 0
        self.busy: dict[str, list[float]] = {stage.value: [] for stage in Stage}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        app = self.stack.celery()
        last_sample = 0.0
        try:
            while not self.stop.is_set():
                if self.broker.llen(Queue.EXTRACT.value) < 4:
                    for _ in range(4):
                        document = self.documents[self.uploaded % len(self.documents)]
                        self.client.upload(f"ingest-{self.uploaded}-{document.name}", document.data)
                        self.uploaded += 1
                if self.broker.llen(Queue.INDEX.value) < 20 and self.index_sent < len(self.index_messages):
                    for message in self.index_messages[self.index_sent:self.index_sent + 50]:
                        app.send_task(Task.INDEX.value, args=[message.model_dump()], ignore_result=True)
                    self.index_sent = min(len(self.index_messages), self.index_sent + 50)
                if self.measuring.is_set() and time.monotonic() - last_sample >= 1.0:
                    last_sample = time.monotonic()
                    for stage in Stage:
                        running, concurrency = _running(self.stack.metrics_url(stage))
                        self.busy[stage.value].append(min(1.0, running / concurrency) if concurrency else 0.0)
                self.stop.wait(0.25)
        finally:
            app.close()

    def busy_share(self) -> dict[str, float]:
        """Per stage: the mean share of its document worker's processes running a task."""
        return {stage: round(sum(values) / max(1, len(values)), 2) for stage, values in self.busy.items()}


def bench_search_ingest(work: Path, quick: bool = False, documents: int | None = None) -> dict:
    from docflow.indexer.stores import open_vector_store

    documents = documents or (1000 if quick else 10_000)
    searches = 60 if quick else 300
    started = time.monotonic()
    stack = fresh_stack(work)
    stack.start()
    client = Client(stack)
    ingest = None
    try:
        settings = stack.settings()
        factory = ChunkFactory(seed=15)
        store = open_vector_store(settings)
        began = time.monotonic()
        for _ in load_into_store(factory, store, stack.redis_url, TENANT, documents):
            pass
        health = store.maintain(TENANT, settings.index_version_retention_seconds, settings.vector_index_min_rows)
        preload_seconds = time.monotonic() - began
        del store
        queries = factory.queries(searches * 2 + 20)
        # What the ingest's index tasks write: other documents, already embedded.
        index_messages = write_index_inputs(factory, stack.data_dir / "storage", stack.redis_url, TENANT,
                                            500 if quick else 8000)
        corpus = corpus_mod.corpus(0.3 if quick else 1.0)

        _timed_searches(client, queries[:20], 60)  # warm-up: page cache, first connections
        idle = _timed_searches(client, queries[20:20 + searches], 300)

        uploader = Client(stack)  # its own connections: uploads never queue behind a search
        ingest = BulkIngest(stack, uploader, corpus, index_messages)
        ingest.thread.start()
        time.sleep(10)  # until the extractor's output reaches the embedder and everything is busy
        ingest.measuring.set()
        busy = _timed_searches(client, queries[20 + searches:], 300)
        busy_share = ingest.busy_share()
        ingest.stop.set()
        ingest.thread.join(timeout=30)
        result = {
            "documents": documents, "chunks": documents * 10, "mode": "hybrid", "top_k": TOP_K,
            "embedder": settings.embedder, "preload_seconds": round(preload_seconds, 1),
            "health": health, "idle": _summary(*idle), "ingest": _summary(*busy),
            "busy_share": busy_share, "uploaded": ingest.uploaded, "index_tasks_sent": ingest.index_sent,
        }
        result["p99_ratio"] = round(result["ingest"]["p99_ms"] / result["idle"]["p99_ms"], 2)
        result["minutes"] = round((time.monotonic() - started) / 60, 1)
        return result
    finally:
        if ingest is not None:
            ingest.stop.set()
            ingest.client.close()
        client.close()
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path(".data/bench/search-ingest"))
    args = parser.parse_args()
    print(json.dumps(bench_search_ingest(args.work.resolve(), documents=args.documents), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

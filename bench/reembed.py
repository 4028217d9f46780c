"""Re-embedding a tenant while searches run (POST /v1/admin/reembed; docs/architecture.md,
"Re-embedding").

    .venv/bin/python -m bench.reembed [--documents 1000] [--to hash|minilm]

The local stack as `make run` starts it. The tenant holds `--documents` completed
documents of 10 chunks, embedded by the `hash` embedder at 384 dimensions (written
through the indexer's store with their chunks.json and completed records, as
bench/index_corpus.py does: what is measured is the re-embed, not how the documents
got there). The embedders are then restarted with the new model (`--to hash`: the
hashing embedder at 256 dimensions, which costs next to nothing, so the figures are
the mechanism's own; `--to minilm`: the bundled model, as a real model change), the
re-embed is started, and one client sends `POST /v1/search` (hybrid, top 10) one after
the other from then until a few seconds after the switch. Reported: the job's time,
documents per second, and the searches' latency over the whole job and within two
seconds either side of the switch, with any search not answered 200.
bench/run.py calls `bench_reembed` for its `reembed` section.
"""

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from bench.cluster import API_KEY, TENANT, fresh_stack
from bench.index_corpus import CHUNKS_PER_DOCUMENT, ChunkFactory
from bench.loadgen import percentile
from docflow.devstack.stack import LocalStack
from docflow.shared import artifacts
from docflow.shared.content_types import ContentType
from docflow.shared.messages import Chunk, artifact_prefix, version_prefix
from docflow.shared.names import Stage, WorkerRole
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

ADMIN_KEY = "bench-admin-key"
OLD_DIMENSIONS = 384  # what ChunkFactory's vectors are: the hash embedder's default
SWITCH_WINDOW_SECONDS = 2.0
TOP_K = 10


def load_documents(stack: LocalStack, documents: int, factory: ChunkFactory, per_commit: int = 500) -> None:
    """Completed documents with their chunks.json in storage and their vectors in the
    tenant's table (generation 0), the model recorded."""
    import redis

    from docflow.indexer.stores import DocumentAttributes, VectorRecord, open_vector_store

    settings = stack.settings()
    store = open_vector_store(settings)
    storage = LocalStorage(settings.storage_path)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    status = StatusStore(client)
    model = f"hash:feature-hashing:{OLD_DIMENSIONS}"
    try:
        done = 0
        while done < documents:
            batch = min(per_commit, documents - done)
            texts, vectors = factory.chunks(batch * CHUNKS_PER_DOCUMENT)
            records, pipe = [], client.pipeline(transaction=False)
            for d in range(batch):
                document_id = uuid.uuid4().hex
                now = utcnow()
                record = DocumentRecord(
                    document_id=document_id, tenant=TENANT, filename=f"doc-{done + d}.txt",
                    content_type=ContentType.TEXT, size_bytes=0, status=DocumentStatus.COMPLETED,
                    chunks=CHUNKS_PER_DOCUMENT, vectors=CHUNKS_PER_DOCUMENT, served_version=1,
                    served_vectors=CHUNKS_PER_DOCUMENT,
                    original_key=artifact_prefix(TENANT, document_id) + "original", created_at=now,
                    updated_at=now, completed_at=now, embedding_model=model, embedding_runtime="numpy")
                status.create(record, pipe=pipe)
                first = d * CHUNKS_PER_DOCUMENT
                chunks = [Chunk(index=i, text=texts[first + i]) for i in range(CHUNKS_PER_DOCUMENT)]
                storage.put(version_prefix(TENANT, document_id, 1) + artifacts.CHUNKS,
                            artifacts.dump_chunks(chunks))
                attributes = DocumentAttributes.of(record)
                records += [VectorRecord.for_chunk(document_id, 1, chunk, vectors[first + chunk.index],
                                                   attributes) for chunk in chunks]
            pipe.execute()
            store.upsert(TENANT, records, fresh=True, embedding_model=model)
            done += batch
    finally:
        client.close()


def restart_embedders(stack: LocalStack, env: dict[str, str]) -> None:
    stack.env.update(env)
    stack.workers[Stage.EMBED].kill()
    stack.side_workers[(Stage.EMBED, WorkerRole.QUERY)].kill()
    stack.start_worker(Stage.EMBED)
    stack.start_side_worker(Stage.EMBED, WorkerRole.QUERY)
    stack.wait_for_worker(Stage.EMBED)
    stack.wait_for_worker(Stage.EMBED, WorkerRole.QUERY)


def _search_loop(base_url: str, queries: list[str], stop: threading.Event,
                 out: list[tuple[float, float, int]]) -> None:
    """(wall time sent, latency ms, status) of each search, one after the other."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as http:
        n = 0
        while not stop.is_set():
            began_wall, began = time.time(), time.perf_counter()
            try:
                query = {"query": queries[n % len(queries)], "top_k": TOP_K}
                code = http.post("/v1/search", json=query).status_code
            except httpx.HTTPError:
                code = 0
            out.append((began_wall, (time.perf_counter() - began) * 1000, code))
            n += 1


def _latencies(rows: list[tuple[float, float, int]]) -> dict:
    answered = [latency for _, latency, code in rows if code == 200]
    return {"searches": len(rows), "errors": sum(1 for *_, code in rows if code != 200),
            "p50_ms": percentile(answered, 50) if answered else None,
            "p99_ms": percentile(answered, 99) if answered else None,
            "max_ms": max(answered) if answered else None}


def bench_reembed(folder: Path, documents: int = 1000, to: str = "hash") -> dict:
    new_env = {"DOCFLOW_EMBEDDER": "hash", "DOCFLOW_HASH_DIMENSIONS": "256"} if to == "hash" else \
        {"DOCFLOW_EMBEDDER": "minilm"}
    stack = fresh_stack(folder, {"DOCFLOW_EMBEDDER": "hash", "DOCFLOW_HASH_DIMENSIONS": str(OLD_DIMENSIONS),
                                 "DOCFLOW_ADMIN_API_KEYS": ADMIN_KEY})
    factory = ChunkFactory()
    with stack:
        load_documents(stack, documents, factory)
        restart_embedders(stack, new_env)
        admin = httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                             timeout=60)
        rows: list[tuple[float, float, int]] = []
        stop = threading.Event()
        searcher = threading.Thread(target=_search_loop,
                                    args=(stack.gateway_url, factory.queries(200), stop, rows))
        started = time.time()
        response = admin.post("/v1/admin/reembed", json={"tenant": TENANT})
        assert response.status_code == 202, response.text
        searcher.start()
        switched_at = None
        job = response.json()
        while job["state"] == "running":
            time.sleep(0.2)
            job = admin.get(f"/v1/admin/reembed/{TENANT}").json()
            if switched_at is None and job["active_generation"] == job["to_generation"]:
                switched_at = time.time()
        switched_at = switched_at or time.time()
        time.sleep(SWITCH_WINDOW_SECONDS + 1)
        stop.set()
        searcher.join()
        admin.close()
    seconds = job["finished_at"] and (_epoch(job["finished_at"]) - started)
    near = [row for row in rows if abs(row[0] - switched_at) <= SWITCH_WINDOW_SECONDS]
    return {"documents": documents, "chunks": documents * CHUNKS_PER_DOCUMENT, "to": to,
            "model": job["model"], "state": job["state"], "done": job["done"], "failed": job["failed"],
            "seconds": seconds, "documents_per_second": documents / seconds if seconds else None,
            "during_job": _latencies([row for row in rows if row[0] <= switched_at]),
            "around_switch": _latencies(near),
            "after_switch": _latencies([row for row in rows if row[0] > switched_at])}


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def targets(result: dict) -> list[dict]:
    errors = sum(result[phase]["errors"] for phase in ("during_job", "around_switch", "after_switch"))
    return [{"section": "15", "what": f"Searches during a re-embed of {result['documents']:,} documents",
             "docflow": f"{errors} not answered, p99 around the switch "
                        f"{_ms(result['around_switch']['p99_ms'])}",
             "reference": "every search answered", "ratio": "", "target": "0 errors",
             "met": errors == 0 and result["state"] == "completed"}]


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def report(result: dict, measured: str) -> list[str]:
    """The section of docs/benchmarks.md."""
    new = "the hashing embedder at 256 dimensions (costs next to nothing: the mechanism's own figures)" \
        if result["to"] == "hash" else "MiniLM (a real model change)"
    out = ["## 15. Re-embed", "",
           f"A tenant of {result['documents']:,} completed documents ({result['chunks']:,} chunks, hash "
           f"embedder at 384 dimensions) re-embedded with {new} through `POST /v1/admin/reembed`, on "
           "the local stack as `make run` starts it, while one client sends `POST /v1/search` (hybrid, "
           "top 10) one after the other, answered from the old table with the old model until the switch "
           "and from the new one after (`python -m bench.reembed`).",
           "",
           f"The job: {result['state']}, {result['done']:,} documents done, {result['failed']} failed, in "
           f"{result['seconds']:.1f} s ({result['documents_per_second']:.1f} documents/s); new model "
           f"`{result['model']}`. The 2 cores were shared with other test runs meanwhile (load average in "
           "the line below), so the latencies are pessimistic; the figure that matters is that every search "
           "was answered.", "",
           "| Searches | Count | Not answered 200 | p50 | p99 | Max |", "|---|---:|---:|---:|---:|---:|"]
    for phase, label in (("during_job", "during the job, before the switch"),
                         ("around_switch", f"within {SWITCH_WINDOW_SECONDS:.0f} s of the switch"),
                         ("after_switch", "after the switch")):
        f = result[phase]
        out.append(f"| {label} | {f['searches']} | {f['errors']} | {_ms(f['p50_ms'])} | "
                   f"{_ms(f['p99_ms'])} | {_ms(f['max_ms'])} |")
    return out + ["", measured, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--to", choices=("hash", "minilm"), default="hash")
    parser.add_argument("--folder", type=Path, default=Path(".data/bench/reembed"))
    args = parser.parse_args()
    result = bench_reembed(args.folder, args.documents, args.to)
    print(json.dumps(result, indent=2))
    print("\n".join(report(result, "")))
    return 0 if result["state"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())

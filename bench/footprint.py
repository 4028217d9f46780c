"""Redis and disk bytes per document: what the pipeline keeps, and what a delete leaves.

    .venv/bin/python -m bench.footprint [--documents 40]

Starts its own stack (the `hash` embedder: vectors are not in Redis, and the model
only slows the run), uploads small text documents, waits for them, reprocesses each
once, deletes half, and reads `MEMORY USAGE` of every key, grouped by what it is.
Keys with a TTL are counted apart ("expiring"): they go on their own; keys without
one stay until something deletes them, so they are what 10 M documents cost for good.
bench/run.py calls `bench_footprint` for its `footprint` section.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import redis

from bench.cluster import Client, fresh_stack

# What each key is, by its name (first match wins).
KINDS = (
    ("status record", "docflow:doc:"),
    ("tenant listing", "docflow:tenant:"),
    ("task registry", "docflow:task:"),
    ("celery result", "celery-task-meta-"),
    ("dead letters", "docflow:dead_letters"),
    ("in-flight set", "docflow:documents:"),
    ("rate limit", "docflow:ratelimit:"),
)


def kind_of(key: str) -> str:
    return next((kind for kind, prefix in KINDS if key.startswith(prefix)), "other")


def redis_bytes(client: redis.Redis) -> dict[str, dict[str, int]]:
    """{kind: {keys, bytes, expiring_bytes}} over every key of the database."""
    keys = list(client.scan_iter(count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
        pipe.ttl(key)
    replies = pipe.execute()
    kinds: dict[str, dict[str, int]] = {}
    for key, size, ttl in zip(keys, replies[0::2], replies[1::2]):
        entry = kinds.setdefault(kind_of(key.decode() if isinstance(key, bytes) else key),
                                 {"keys": 0, "bytes": 0, "expiring_bytes": 0})
        entry["keys"] += 1
        entry["bytes" if ttl == -1 else "expiring_bytes"] += int(size or 0)
    return kinds


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _totals(kinds: dict[str, dict[str, int]]) -> tuple[int, int]:
    return (sum(k["bytes"] for k in kinds.values()), sum(k["expiring_bytes"] for k in kinds.values()))


def _per_document(kinds: dict, documents: int) -> dict:
    kept, expiring = _totals(kinds)
    return {"kept_bytes_per_document": round(kept / documents, 1),
            "expiring_bytes_per_document": round(expiring / documents, 1),
            "by_kind": {kind: {**entry, "bytes_per_document": round(entry["bytes"] / documents, 1),
                               "expiring_bytes_per_document": round(entry["expiring_bytes"] / documents, 1)}
                        for kind, entry in sorted(kinds.items())}}


def text_document(n: int) -> bytes:
    return (f"Footprint document {n}. " + "The harbour ledger lists every ship and its cargo. " * 40).encode()


def bench_footprint(work: Path, documents: int = 40, env: dict[str, str] | None = None) -> dict:
    stack = fresh_stack(work, {"DOCFLOW_EMBEDDER": "hash", **(env or {})})
    stack.start()
    client = Client(stack)
    try:
        rdb = redis.Redis.from_url(stack.redis_url)
        storage = stack.data_dir / "storage"
        ids = [client.upload(f"doc-{n}.txt", text_document(n))["document_id"] for n in range(documents)]
        client.wait_all(ids, 300)
        time.sleep(0.5)  # the last results and acks land
        one_version = redis_bytes(rdb)
        disk_one = disk_bytes(storage)

        for document_id in ids:
            response = client.http.post(f"/v1/documents/{document_id}/reprocess")
            if response.status_code == 429:  # the tenant's limit: wait as told, then again
                time.sleep(float(response.headers.get("Retry-After", "1")))
                response = client.http.post(f"/v1/documents/{document_id}/reprocess")
            response.raise_for_status()
        client.wait_all(ids, 300)
        time.sleep(0.5)
        two_versions = redis_bytes(rdb)
        disk_two = disk_bytes(storage)

        deleted, kept = ids[: documents // 2], ids[documents // 2:]
        for document_id in deleted:
            client.http.delete(f"/v1/documents/{document_id}").raise_for_status()
        time.sleep(2)  # the vector deletions run on the indexer
        after_delete = redis_bytes(rdb)
        disk_after = disk_bytes(storage)
        left_kept = _totals(after_delete)[0] - _totals(two_versions)[0] * len(kept) / documents
        left_expiring = _totals(after_delete)[1] - _totals(two_versions)[1] * len(kept) / documents
        return {
            "documents": documents,
            "document_bytes": len(text_document(0)),
            "after_one_version": _per_document(one_version, documents),
            "after_reprocess": _per_document(two_versions, documents),
            "disk_bytes_per_document": {"one_version": round(disk_one / documents),
                                        "after_reprocess": round(disk_two / documents)},
            # What a deleted document still holds, estimated as what is left beyond the
            # surviving documents' share of the total before the deletes.
            "left_per_deleted_document": {
                "kept_bytes": round(max(0.0, left_kept) / len(deleted), 1),
                "expiring_bytes": round(max(0.0, left_expiring) / len(deleted), 1),
                "disk_bytes": round(max(0.0, disk_after - disk_two * len(kept) / documents) / len(deleted)),
            },
        }
    finally:
        client.close()
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path(".data/bench/footprint"))
    args = parser.parse_args()
    print(json.dumps(bench_footprint(args.work.resolve(), args.documents), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

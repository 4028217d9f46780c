"""What durable acceptance costs per upload: Redis with `appendfsync everysec` against `always`.

    .venv/bin/python -m bench.durability [--quick] [--rounds 3] [--work .data/bench/durability]

A 202 says the document was accepted. With `everysec` Redis fsyncs its AOF once a
second, so a power loss (not a process crash) can drop the last second of accepted
documents' records and queued messages; with `always` Redis fsyncs before it answers
a write, so a 202 is on disk (docs/reliability.md, "Durable acceptance").

Starts a redis-server in each mode and the gateway alone on it (no worker competes
for the cores, and an upload's cost is the gateway's: store the original, write the
record, publish the chain), then times uploads of a small text file at concurrency 1
(the added latency of one upload) and 16 (throughput, where Redis can fsync several
clients' writes at once). The two modes alternate round by round, each side keeps its
best round (the machines are small and shared). Redis's own counters say how many
commands and AOF bytes one upload costs, and how many fsyncs the AOF had to wait on.
bench/run.py can call `bench_durability` for a `durability` section.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import redis

from bench.cluster import API_KEY, fresh_stack
from bench.loadgen import multipart_upload, percentile, run_load
from docflow.devstack.redis_server import APPENDFSYNC_MODES, RedisServer
from docflow.devstack.stack import LocalStack

DOCUMENT = ("Durability benchmark: a short note about the harbour survey, the tide tables and "
            "the herons counted along the canal.\n" * 20).encode()
LEVELS = {"full": [(1, 300), (16, 1600)], "quick": [(1, 40), (16, 160)]}


def _redis_counters(client: redis.Redis) -> dict[str, int]:
    stats, persistence = client.info("stats"), client.info("persistence")
    return {"commands": int(stats["total_commands_processed"]),
            "aof_bytes": int(persistence.get("aof_current_size", 0)),
            "aof_delayed_fsync": int(persistence.get("aof_delayed_fsync", 0))}


class GatewayOnRedis:
    """A redis-server in one fsync mode and the gateway on it, started once per mode."""

    def __init__(self, work: Path, mode: str) -> None:
        self.mode = mode
        self.stack: LocalStack = fresh_stack(work / mode, {"DOCFLOW_REDIS_APPENDFSYNC": mode})

    def start(self) -> "GatewayOnRedis":
        self.stack.redis = RedisServer(self.stack.data_dir / "redis", appendfsync=self.mode).start()
        self.stack.redis_url = self.stack.redis.url
        self.stack.start_gateway()
        self.client = redis.Redis.from_url(self.stack.redis_url, decode_responses=True)
        assert self.client.config_get("appendfsync")["appendfsync"] == self.mode
        return self

    def upload_request(self) -> bytes:
        port = self.stack.gateway_port
        # The same note every time: on_duplicate=new keeps each a new document to accept.
        return multipart_upload("/v1/documents?on_duplicate=new", f"127.0.0.1:{port}",
                                {"Authorization": f"Bearer {API_KEY}"},
                                "note.txt", DOCUMENT, content_type="text/plain")

    def drain_queues(self) -> None:
        """Nothing consumes the queues here: empty them between rounds so every round
        writes into the same small Redis."""
        self.client.flushdb()

    def stop(self) -> None:
        self.stack.stop()


def bench_durability(work: Path, quick: bool = False, rounds: int | None = None) -> dict:
    levels = LEVELS["quick" if quick else "full"]
    rounds = rounds or (1 if quick else 3)
    sides = {mode: GatewayOnRedis(work, mode) for mode in APPENDFSYNC_MODES}
    try:
        for side in sides.values():
            side.start()
        results = []
        for concurrency, total in levels:
            best: dict[str, dict] = {}
            for round_ in range(rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for mode in order:
                    side = sides[mode]
                    request = side.upload_request()
                    run_load("127.0.0.1", side.stack.gateway_port, request, concurrency, max(concurrency, total // 10))
                    side.drain_queues()
                    before = _redis_counters(side.client)
                    load = run_load("127.0.0.1", side.stack.gateway_port, request, concurrency, total)
                    after = _redis_counters(side.client)
                    done = len(load.latencies)
                    measured = {
                        "uploads": done, "errors": load.errors,
                        "p50_ms": percentile(load.latencies, 50) * 1000,
                        "p99_ms": percentile(load.latencies, 99) * 1000,
                        "per_second": done / load.seconds if load.seconds else 0.0,
                        "redis_commands_per_upload": (after["commands"] - before["commands"]) / max(done, 1),
                        "aof_bytes_per_upload": (after["aof_bytes"] - before["aof_bytes"]) / max(done, 1),
                        "aof_delayed_fsyncs": after["aof_delayed_fsync"] - before["aof_delayed_fsync"],
                    }
                    side.drain_queues()
                    if mode not in best or measured["per_second"] > best[mode]["per_second"]:
                        best[mode] = measured
                    print(f"[durability] c={concurrency} round {round_ + 1} {mode}: p50 {measured['p50_ms']:.1f} ms, "
                          f"p99 {measured['p99_ms']:.1f} ms, {measured['per_second']:.0f}/s, "
                          f"errors {load.errors}", file=sys.stderr, flush=True)
            level = {"concurrency": concurrency, **best}
            level["added_p50_ms"] = best["always"]["p50_ms"] - best["everysec"]["p50_ms"]
            level["throughput_ratio"] = (best["always"]["per_second"] / best["everysec"]["per_second"]
                                         if best["everysec"]["per_second"] else float("nan"))
            results.append(level)
        return {"document_bytes": len(DOCUMENT), "rounds": rounds, "levels": results,
                "disk": _describe_disk(work)}
    finally:
        for side in sides.values():
            side.stop()


def _describe_disk(work: Path) -> str:
    """Which filesystem the AOF was on: fsync's cost is the disk's (tmpfs: none at all)."""
    best, mount = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, fstype, *_ = line.split()
        if str(work.resolve()).startswith(point) and len(point) > len(best):
            best, mount = point, f"{fstype} on {point} ({device})"
    return mount


def report(figures: dict) -> str:
    """The figures as a Markdown table (docs/benchmarks.md can quote it)."""
    lines = [f"Uploads of a {figures['document_bytes']}-byte text, gateway alone, best of "
             f"{figures['rounds']} rounds; AOF on {figures['disk']}.", "",
             "| concurrency | mode | p50 ms | p99 ms | uploads/s | Redis commands / upload | AOF bytes / upload |",
             "|---|---|---|---|---|---|---|"]
    for level in figures["levels"]:
        for mode in APPENDFSYNC_MODES:
            side = level[mode]
            lines.append(f"| {level['concurrency']} | {mode} | {side['p50_ms']:.1f} | {side['p99_ms']:.1f} | "
                         f"{side['per_second']:.0f} | {side['redis_commands_per_upload']:.1f} | "
                         f"{side['aof_bytes_per_upload']:.0f} |")
        lines.append(f"| {level['concurrency']} | always − everysec | {level['added_p50_ms']:+.1f} | | "
                     f"× {level['throughput_ratio']:.2f} | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few uploads, one round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path(".data/bench/durability"))
    args = parser.parse_args()
    started = time.time()
    figures = bench_durability(args.work.resolve(), args.quick, args.rounds)
    figures["seconds"] = round(time.time() - started, 1)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "durability.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(report(figures))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fair sharing: tenant B's one-page upload on an idle stack, and with tenant A's 1,000
documents queued.

    .venv/bin/python -m bench.fair_share [--documents 1000]

The local stack as `make run` starts it (gateway, Redis, every worker role, the MiniLM
embedder, LanceDB), two tenants. B's upload is timed from its POST to `completed` (its
record polled every 20 ms). Idle: B uploads one page at a time, each after the one
before completed (the first only warms the stages up). Loaded: A hands in its documents
as one-page text files in batches of 100 (POST /v1/batches), each more files than
DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT, so all of them wait in the stages' bulk lanes;
then B uploads its page the same way, while A's import is still mostly waiting. The figure is the
ratio of the loaded median to the idle median (target: at most 3x).

The reference a FIFO pipeline would give is not run (it is the time to drain A's
whole import); it is estimated from A's completion rate during the loaded phase:
B's page would have waited for A's documents ahead of it, `documents / rate`.
bench/run.py calls `bench_fair_share` for its `fair_share` section.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import httpx

from bench.cluster import API_KEY, TENANT, fresh_stack
from docflow.devstack import samples

KEY_B, TENANT_B = "bench-key-b", "bench-b"
BATCH_FILES = 100
POLL_SECONDS = 0.02
WORDS = ("harbour ledger survey lantern orchard granite meadow archive signal valley timber copper "
         "beacon glacier ferry market quarry mill bridge tower garden island delta marsh forest river "
         "station").split()


def one_page(seed: int) -> bytes:
    """About one page of distinct prose (~300 words): never a duplicate of another."""
    words = [WORDS[(seed * 7 + i * 13) % len(WORDS)] for i in range(300)]
    return samples.text([f"Page {seed}: " + " ".join(words) + "."])


def _timed_upload(http: httpx.Client, seed: int, timeout: float = 600) -> float:
    """Seconds from POST /v1/documents to `completed`."""
    began = time.perf_counter()
    response = http.post("/v1/documents", files={"file": (f"page-{seed}.txt", one_page(seed))},
                         params={"on_duplicate": "new"})
    response.raise_for_status()
    document_id = response.json()["document_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"/v1/documents/{document_id}").json()["status"]
        if status == "completed":
            return time.perf_counter() - began
        if status in {"failed", "cancelled"}:
            raise RuntimeError(f"tenant B's page ended {status}")
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"tenant B's page not completed after {timeout:.0f} s")


def _completed(http: httpx.Client) -> int:
    return http.get("/v1/documents", params={"status": "completed", "limit": 1}).json()["total"]


def bench_fair_share(work: Path, documents: int = 1000, runs: int = 5) -> dict:
    started = time.time()
    stack = fresh_stack(work / "stack", {"DOCFLOW_API_KEYS": f"{API_KEY}={TENANT},{KEY_B}={TENANT_B}"})
    stack.start()
    tenant_a, tenant_b = (httpx.Client(base_url=stack.gateway_url, timeout=120,
                                       headers={"Authorization": f"Bearer {key}"}) for key in (API_KEY, KEY_B))
    try:
        _timed_upload(tenant_b, 0)  # warm-up: every stage's first task loads its libraries
        idle = [_timed_upload(tenant_b, 1 + n) for n in range(runs)]

        handed_in = time.perf_counter()
        for first in range(0, documents, BATCH_FILES):
            files = [("file", (f"import-{n}.txt", one_page(10_000 + n)))
                     for n in range(first, min(first + BATCH_FILES, documents))]
            tenant_a.post("/v1/batches", files=files).raise_for_status()
        handed_in = time.perf_counter() - handed_in
        loaded, waiting_when_done = [], []
        a_done_before = _completed(tenant_a)
        loaded_began = time.perf_counter()
        for n in range(runs):
            loaded.append(_timed_upload(tenant_b, 100 + n))
            waiting_when_done.append(documents - _completed(tenant_a))
        a_rate = (_completed(tenant_a) - a_done_before) / (time.perf_counter() - loaded_began)
    finally:
        tenant_a.close()
        tenant_b.close()
        stack.stop()
    idle_median, loaded_median = statistics.median(idle), statistics.median(loaded)
    return {
        "documents": documents, "batch_files": BATCH_FILES, "handed_in_seconds": round(handed_in, 1),
        "interactive_limit": stack.settings().fair_share_interactive_limit,
        "idle_seconds": [round(s, 2) for s in idle], "loaded_seconds": [round(s, 2) for s in loaded],
        "idle_median_seconds": round(idle_median, 2), "loaded_median_seconds": round(loaded_median, 2),
        "ratio": round(loaded_median / idle_median, 2),
        "a_not_completed_when_b_completed": waiting_when_done,
        "a_docs_per_second": round(a_rate, 2),
        "fifo_estimate_seconds": round(documents / a_rate, 0) if a_rate > 0 else None,
        "minutes": round((time.time() - started) / 60, 1),
    }


def targets(result: dict) -> list[dict]:
    return [{"section": "14", "what": f"Fair sharing: tenant B's one-page upload with tenant A's "
                                      f"{result['documents']:,} documents queued",
             "docflow": f"{result['loaded_median_seconds']:.2f} s",
             "reference": f"idle stack: {result['idle_median_seconds']:.2f} s",
             "ratio": f"{result['ratio']:.2f}×", "target": "≤ 3×", "met": result["ratio"] <= 3.0}]


def report(result: dict, measured: str) -> list[str]:
    fifo = result["fifo_estimate_seconds"]
    return ["## 14. Fair sharing", "",
            f"Tenant B uploads a one-page text file and waits for `completed` (median of "
            f"{len(result['idle_seconds'])}), first on an idle stack, then after tenant A handed in "
            f"{result['documents']:,} one-page files in batches of {result['batch_files']} "
            f"({result['handed_in_seconds']:.0f} s to hand in), each batch more files than "
            f"DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT={result['interactive_limit']}, so all of them wait in "
            "the bulk lanes (`python -m bench.fair_share`).", "",
            "| Phase | Runs | Median |", "|---|---|---:|",
            f"| idle | {', '.join(f'{s:.2f}' for s in result['idle_seconds'])} s | "
            f"{result['idle_median_seconds']:.2f} s |",
            f"| A's import queued | {', '.join(f'{s:.2f}' for s in result['loaded_seconds'])} s | "
            f"{result['loaded_median_seconds']:.2f} s |", "",
            "B's page waits at each stage for the bulk task the worker is running (one per worker "
            "process, none of A's documents is ahead of it in the document queues) and shares the CPU "
            "with A's import, whose three stages keep every worker busy. "
            f"Ratio {result['ratio']:.2f}× (target ≤ 3×). Of A's documents, "
            f"{', '.join(str(n) for n in result['a_not_completed_when_b_completed'])} were still not "
            f"completed as each of B's completed; A's import went on at {result['a_docs_per_second']:.1f} documents/s"
            + (f", so on FIFO queues B's page would have waited about {fifo:.0f} s behind it (an estimate "
               "from that rate, not a run)." if fifo else "."), "",
            f"{measured} The section took {result['minutes']:.1f} min.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path(".data/bench/fair-share"))
    args = parser.parse_args()
    print(json.dumps(bench_fair_share(args.work, args.documents), indent=2))


if __name__ == "__main__":
    main()

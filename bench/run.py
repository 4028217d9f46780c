"""`make bench`: every figure of docs/benchmarks.md, each measured side by side with its
reference in the same run, then the report rewritten.

    .venv/bin/python -m bench.run [--quick] [--only upload,pipeline,stages,fanout,growth,quality,footprint,
                                                    corpus_growth,scale,search_ingest,durability,
                                                    embed_runtimes,fair_share,reembed]

The machines this runs on are small (2 cores) and shared, so absolute numbers drift
from run to run; each figure is a ratio of two measurements taken back to back
(alternating where a measurement is repeated), and each side is the best of its runs.
`--quick` is a smoke run (small corpus, few requests): its figures mean nothing.
`--only` with some sections rewrites only their parts of docs/benchmarks.md (their
section, their rows of the targets table, the notes), keeping the other sections'
figures from their own last run.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench import corpus as corpus_mod
from bench.cluster import (
    TENANT,
    Client,
    clone_document,
    fresh_stack,
    peak_rss_mb,
    pool_pids,
    register_document,
    reset_peak_rss,
    run_tasks,
)
from bench.loadgen import multipart_upload, percentile, run_load
from docflow.devstack.processes import Process, free_port, port_open, wait_until
from docflow.embedder.providers import batch_size as embedding_batch_size
from docflow.devstack.redis_server import RedisServer
from docflow.shared.content_types import ContentType
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Stage, Task
from docflow.shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
# Everything a run writes (stacks, LanceDB tables, results). Starting a stack empties its
# folder, so two runs at once on one machine need their own: DOCFLOW_BENCH_DIR.
WORK = Path(os.environ.get("DOCFLOW_BENCH_DIR") or REPO / ".data" / "bench").resolve()
CACHE = WORK / "cache"
PEER_PYTHON = REPO / ".venv-bench" / "bin" / "python"
CONTENT_TYPES = {"pdf": ContentType.PDF, "docx": ContentType.DOCX, "txt": ContentType.TEXT}
CORPUS_VERSION = "v1"
ALL_SECTIONS = ("upload", "pipeline", "stages", "fanout", "growth", "quality", "footprint",
                "corpus_growth", "scale", "search_ingest", "durability", "embed_runtimes", "fair_share", "reembed")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def cached(name: str, make) -> bytes:
    path = CACHE / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
    return path.read_bytes()


def subprocess_json(argv: list[str], timeout: float = 1800) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- 1. upload latency ------------------------------------------------------------------------
def bench_upload(quick: bool) -> dict:
    pdf = cached("upload-100k.pdf", lambda: corpus_mod.pdf_of_size(100_000))
    stack = fresh_stack(WORK / "upload")
    stack.redis = RedisServer(stack.data_dir / "redis").start()
    stack.redis_url = stack.redis.url
    bare_port = free_port()
    bare = Process("bare", [sys.executable, "-m", "bench.bare_app", str(bare_port), str(stack.data_dir / "bare")],
                   {**os.environ, "PYTHONPATH": str(REPO)}, stack.logs_dir / "bare.log", cwd=REPO)
    levels = [(1, 40), (16, 160), (64, 320)] if quick else [(1, 300), (16, 1200), (64, 2560)]
    rounds = 1 if quick else 2
    try:
        # Only the gateway: no worker competes for the cores while uploads are timed.
        stack.start_gateway()
        bare.start()
        wait_until(lambda: port_open(bare_port), 30, "bare FastAPI app", bare.popen)
        servers = {
            "docflow": (stack.gateway_port, {"Authorization": "Bearer bench-key"}),
            "bare": (bare_port, {}),
        }
        results = []
        for concurrency, total in levels:
            samples: dict[str, list[float]] = {name: [] for name in servers}
            errors = {name: 0 for name in servers}
            seconds = {name: 0.0 for name in servers}
            for round_ in range(rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for name in order:
                    port, headers = servers[name]
                    # The same PDF every time: on_duplicate=new keeps each a new document to accept.
                    request = multipart_upload("/v1/documents?on_duplicate=new", f"127.0.0.1:{port}", headers,
                                               "upload.pdf", pdf)
                    run_load("127.0.0.1", port, request, concurrency, max(concurrency, total // 10))  # warm-up
                    load = run_load("127.0.0.1", port, request, concurrency, total // rounds)
                    samples[name] += load.latencies
                    errors[name] += load.errors
                    seconds[name] += load.seconds
            level = {"concurrency": concurrency}
            for name in servers:
                level[name] = {
                    "requests": len(samples[name]) + errors[name], "errors": errors[name],
                    "p50_ms": percentile(samples[name], 50) * 1000, "p99_ms": percentile(samples[name], 99) * 1000,
                    "per_second": len(samples[name]) / seconds[name] if seconds[name] else 0.0,
                }
            level["p99_ratio"] = level["docflow"]["p99_ms"] / level["bare"]["p99_ms"]
            log(f"upload c={concurrency}: docflow p50 {level['docflow']['p50_ms']:.1f} p99 "
                f"{level['docflow']['p99_ms']:.1f} ms; bare p50 {level['bare']['p50_ms']:.1f} p99 "
                f"{level['bare']['p99_ms']:.1f} ms; errors {errors}")
            results.append(level)
        return {"file_bytes": len(pdf), "rounds": rounds, "levels": results}
    finally:
        bare.stop()
        stack.stop()


# --- 2. pipeline throughput (and 6. the peer) -------------------------------------------------
def docflow_pass(client: Client, documents: list[corpus_mod.Document]) -> dict:
    started = time.time()
    ids = [client.upload(document.name, document.data)["document_id"] for document in documents]
    records = client.wait_all(ids, timeout=1800)
    failed = [r for r in records if r["status"] != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} documents did not complete: {failed[0]}")
    ended = max(datetime.fromisoformat(r["completed_at"]).timestamp() for r in records)
    return {"seconds": ended - started, "documents": len(records),
            "chunks": sum(r["chunks"] for r in records)}


def bench_pipeline(stack, client: Client, documents, corpus_dir: Path, batch_size: int, quick: bool,
                   peer: bool) -> dict:
    pages = sum(document.pages for document in documents)
    rounds = 1 if quick else 3
    runs: dict[str, list[dict]] = {"docflow": [], "sequential": [], "peer": []}
    for round_ in range(rounds):
        log(f"pipeline round {round_ + 1}/{rounds}: sequential baseline")
        runs["sequential"].append(subprocess_json([
            sys.executable, "-m", "bench.sequential", str(corpus_dir), str(WORK / "sequential-lancedb"),
            str(batch_size)]))
        log(f"pipeline round {round_ + 1}/{rounds}: docflow stack")
        runs["docflow"].append(docflow_pass(client, documents))
        if peer:
            log(f"pipeline round {round_ + 1}/{rounds}: LlamaIndex IngestionPipeline")
            runs["peer"].append(subprocess_json([
                str(PEER_PYTHON), str(REPO / "bench" / "peer_llamaindex.py"), str(corpus_dir),
                str(WORK / "peer-lancedb"), str(batch_size)]))
        for name, values in runs.items():
            if values:
                log(f"  {name}: {values[-1]['seconds']:.1f} s")
    result = {"documents": len(documents), "pages": pages, "rounds": rounds}
    for name, values in runs.items():
        if values:
            best = min(values, key=lambda run: run["seconds"])
            result[name] = {**best, "docs_per_second": len(documents) / best["seconds"],
                            "pages_per_second": pages / best["seconds"],
                            "all_seconds": [run["seconds"] for run in values]}
    return result


# --- 3. per-stage efficiency -----------------------------------------------------------------
def bench_stages(stack, documents, batch_size: int, quick: bool) -> dict:
    work = WORK / "stages"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rounds = 1 if quick else 3
    pdfs = [d for d in documents if d.kind == "pdf"]
    repeat = 2 if quick else 4  # enough pages that per-run noise is small
    pdf_paths = corpus_mod.write(pdfs, work / "pdfs")
    result: dict = {}

    # Extractor vs pypdf: the same PDFs, `repeat` times over.
    docflow_runs, raw_runs = [], []
    pages = sum(d.pages for d in pdfs) * repeat
    for round_ in range(rounds):
        messages = [register_document(stack, d.name, d.data, ContentType.PDF) for d in pdfs * repeat]
        seconds, _ = run_tasks(stack, Task.EXTRACT.value, messages)
        docflow_runs.append(pages / seconds)
        raw = subprocess_json([sys.executable, "-m", "bench.raw_stages", "pypdf",
                               *[str(p) for p in pdf_paths * repeat]])
        raw_runs.append(raw["pages"] / raw["seconds"])
        log(f"extract round {round_ + 1}: docflow {docflow_runs[-1]:.0f} pages/s, pypdf {raw_runs[-1]:.0f} pages/s")
    result["extract"] = {"pages": pages, "docflow": max(docflow_runs), "raw": max(raw_runs),
                         "docflow_runs": docflow_runs, "raw_runs": raw_runs}

    # Extract every corpus document once: the chunks the embedder and indexer then use.
    messages = [register_document(stack, d.name, d.data, CONTENT_TYPES[d.kind]) for d in documents]
    _, extracted = run_tasks(stack, Task.EXTRACT.value, messages)
    extracted = [PipelineMessage.model_validate(m) for m in extracted]
    storage_root = stack.data_dir / "storage"
    texts = [chunk["text"] for m in extracted for chunk in json.loads((storage_root / m.chunks_key).read_bytes())]
    texts_path = work / "texts.json"
    texts_path.write_text(json.dumps(texts))

    # Embedder vs SentenceTransformer.encode at its best batch size (swept first).
    sweep_sizes = [16, 32, 64] if quick else [8, 16, 32, 64, 128, 256]
    sweep_path = work / "sweep.json"
    sweep_path.write_text(json.dumps(texts[: min(len(texts), 256)]))
    sweep = subprocess_json([sys.executable, "-m", "bench.raw_stages", "encode", str(sweep_path),
                             *map(str, sweep_sizes)])["by_batch"]
    best_batch = int(max(sweep, key=sweep.get))
    log(f"encode sweep (chunks/s by batch size): {sweep}; best {best_batch}")
    docflow_runs, raw_runs = [], []
    for round_ in range(max(1, rounds - 1)):
        clones = [clone_document(stack, m, TENANT) for m in extracted]
        seconds, embedded = run_tasks(stack, Task.EMBED.value, clones)
        docflow_runs.append(len(texts) / seconds)
        raw = subprocess_json([sys.executable, "-m", "bench.raw_stages", "encode", str(texts_path), str(best_batch)])
        raw_runs.append(raw["by_batch"][str(best_batch)])
        log(f"embed round {round_ + 1}: docflow {docflow_runs[-1]:.1f} chunks/s, "
            f"encode {raw_runs[-1]:.1f} chunks/s")
    result["embed"] = {"chunks": len(texts), "docflow": max(docflow_runs), "raw": max(raw_runs),
                       "docflow_runs": docflow_runs, "raw_runs": raw_runs, "sweep": sweep,
                       "best_batch": best_batch, "docflow_batch": batch_size}
    embedded = [PipelineMessage.model_validate(m) for m in embedded]

    # Indexer vs LanceDB's own table.add, each into a fresh table.
    folders = []
    for m in embedded:
        folder = work / "artifacts" / m.document_id
        folder.mkdir(parents=True)
        shutil.copy(storage_root / m.chunks_key, folder / "chunks.json")
        shutil.copy(storage_root / m.embeddings_key, folder / "embeddings.npy")
        folders.append(str(folder))
    docflow_runs, raw_runs = [], []
    for round_ in range(rounds):
        tenant = f"stage-index-{round_}-{int(time.time())}"
        clones = [clone_document(stack, m, tenant) for m in embedded]
        seconds, _ = run_tasks(stack, Task.INDEX.value, clones)
        docflow_runs.append(len(texts) / seconds)
        raw = subprocess_json([sys.executable, "-m", "bench.raw_stages", "lancedb",
                               str(work / f"raw-lancedb-{round_}"), *folders])
        raw_runs.append(raw["vectors"] / raw["seconds"])
        log(f"index round {round_ + 1}: docflow {docflow_runs[-1]:.0f} vectors/s, "
            f"lancedb add {raw_runs[-1]:.0f} vectors/s")
    result["index"] = {"vectors": len(texts), "docflow": max(docflow_runs), "raw": max(raw_runs),
                       "docflow_runs": docflow_runs, "raw_runs": raw_runs}
    return result


# --- 4. fan-out ----------------------------------------------------------------------------------
def extract_once(stack, data: bytes) -> float:
    message = register_document(stack, "big.pdf", data, ContentType.PDF)
    seconds, _ = run_tasks(stack, Task.EXTRACT.value, [message])
    return seconds


def bench_fanout(stack, quick: bool) -> dict:
    pages = 60 if quick else 300
    big = cached(f"fanout-{pages}.pdf", lambda: corpus_mod.text_pdf(pages))
    reps = 1 if quick else 3
    times: dict[int, list[float]] = {1: [], 2: []}
    for round_ in range(1 if quick else 2):
        for processes in (1, 2):
            stack.workers[Stage.EXTRACT].stop()
            stack.start_worker(Stage.EXTRACT, concurrency=processes)
            stack.wait_for_worker(Stage.EXTRACT)
            extract_once(stack, big)  # warm-up: imports, first connections
            for _ in range(reps):
                times[processes].append(extract_once(stack, big))
            log(f"fan-out {pages} pages, {processes} extractor process(es): {times[processes][-reps:]}")
    settings = Settings()
    result = {"pages": pages, "range_pages": settings.fanout_range_pages,
              "one_process_seconds": min(times[1]), "two_processes_seconds": min(times[2]),
              "runs": {str(k): v for k, v in times.items()}}
    result["speedup"] = result["one_process_seconds"] / result["two_processes_seconds"]

    # Peak memory of an extractor process on a 1000-page PDF, fanned out and not.
    huge_pages = 120 if quick else 1000
    huge = cached(f"fanout-{huge_pages}.pdf", lambda: corpus_mod.text_pdf(huge_pages, seed=9))
    memory = {}
    for label, env in (("fan_out", {}), ("single_task", {"DOCFLOW_FANOUT_MIN_PAGES": str(huge_pages + 1)})):
        stack.workers[Stage.EXTRACT].stop()
        saved = dict(stack.env)
        stack.env.update(env)
        stack.start_worker(Stage.EXTRACT, concurrency=1)
        stack.env.clear()
        stack.env.update(saved)
        stack.wait_for_worker(Stage.EXTRACT)
        extract_once(stack, corpus_mod.make_document("warm", "pdf", 2, 3).data)
        pids = pool_pids(stack, Stage.EXTRACT)
        baseline = peak_rss_mb(pids)
        reset_peak_rss(pids)
        seconds = extract_once(stack, huge)
        memory[label] = {"peak_rss_mb": peak_rss_mb(pids), "idle_rss_mb": baseline, "seconds": seconds}
        log(f"{huge_pages}-page PDF, {label}: peak RSS {memory[label]['peak_rss_mb']:.0f} MB in {seconds:.1f} s")
    result["memory"] = {"pages": huge_pages, **memory}
    # Leave the stack as `make run` starts it.
    stack.workers[Stage.EXTRACT].stop()
    stack.start_worker(Stage.EXTRACT)
    stack.wait_for_worker(Stage.EXTRACT)
    return result


# --- 5. growth -----------------------------------------------------------------------------------
def bench_growth(stack, client: Client, quick: bool) -> dict:
    sizes = [1, 10, 40] if quick else [1, 10, 100, 500]
    results = []
    broker = redis.Redis.from_url(stack.redis_url)
    # Earlier sections restarted workers: a first task pays for imports and connections.
    warm = client.upload("warm.pdf", corpus_mod.make_document("warm", "pdf", 2, 5).data)
    client.wait_all([warm["document_id"]], timeout=300)
    for pages in sizes:
        data = cached(f"growth-{pages}.pdf", lambda pages=pages: corpus_mod.text_pdf(pages, seed=20 + pages))
        pids = {stage: pool_pids(stack, stage) for stage in Stage}
        for stage_pids in pids.values():
            reset_peak_rss(stage_pids)
        started = time.time()
        accepted = client.upload(f"growth-{pages}.pdf", data)
        [record] = client.wait_all([accepted["document_id"]], timeout=1800, poll=0.1)
        assert record["status"] == "completed", record
        seconds = datetime.fromisoformat(record["completed_at"]).timestamp() - started
        first = PipelineMessage(document_id=record["document_id"], tenant=TENANT, version=1,
                                content_type=record["content_type"],
                                original_key=f"tenants/{TENANT}/documents/{record['document_id']}/original")
        message_bytes = {"to_extract": len(first.model_dump_json())}
        for stage, key in ((Stage.EXTRACT, "to_embed"), (Stage.EMBED, "to_index")):
            meta = broker.get(f"celery-task-meta-{accepted['task_id']}.{stage.value}")
            message_bytes[key] = len(json.dumps(json.loads(meta)["result"])) if meta else None
        row = {"pages": pages, "seconds": seconds, "chunks": record["chunks"],
               "peak_rss_mb": {stage.value: peak_rss_mb(pids[stage]) for stage in Stage},
               "message_bytes": message_bytes}
        log(f"growth {pages} pages: {seconds:.1f} s, peak RSS {row['peak_rss_mb']}, messages {message_bytes}")
        results.append(row)
    return {"documents": results}


# --- the run -------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal")))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_kb / 1024 / 1024, 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "commit": commit + ("+uncommitted changes" if dirty.strip() else ""),
            "load_before": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small and fast, figures meaningless")
    parser.add_argument("--only", default=",".join(ALL_SECTIONS))
    parser.add_argument("--no-report", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite docs/benchmarks.md from .data/bench/results.json, measure nothing")
    args = parser.parse_args()
    if args.report_only:
        from bench.report import write_report

        results = json.loads((WORK / "results.json").read_text())
        measured = {name for name in ALL_SECTIONS if name in results}
        write_report(results, REPO / "docs" / "benchmarks.md",
                     only=measured if set(ALL_SECTIONS) - measured else None)
        return 0
    sections = set(args.only.split(","))
    started = time.time()
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
                     "quick": args.quick, "command": "make bench"}
    settings = Settings()
    batch_size = embedding_batch_size(settings)
    results["settings"] = {"embedding_batch_size": batch_size, "upsert_batch_size": settings.upsert_batch_size,
                           "fanout_min_pages": settings.fanout_min_pages,
                           "fanout_range_pages": settings.fanout_range_pages,
                           "chunk_tokens": settings.chunk_tokens, "chunk_overlap_tokens": settings.chunk_overlap_tokens}

    if "upload" in sections:
        log("1. upload latency")
        results["upload"] = bench_upload(args.quick)

    needs_stack = sections & {"pipeline", "stages", "fanout", "growth"}
    if needs_stack or "embed_runtimes" in sections:
        scale = 0.3 if args.quick else 1.0
        log("generating the corpus (cached under .data/bench/cache)")
        corpus_dir = CACHE / f"corpus-{CORPUS_VERSION}-{scale}"
        if not corpus_dir.exists():
            corpus_mod.write(corpus_mod.corpus(scale), corpus_dir.with_suffix(".tmp"))
            corpus_dir.with_suffix(".tmp").rename(corpus_dir)
        documents = [corpus_mod.Document(path.name, path.suffix[1:], 0, path.read_bytes())
                     for path in sorted(corpus_dir.iterdir())]
        plan = {d.name: d.pages for d in corpus_mod.corpus_plan(scale)}
        documents = [corpus_mod.Document(d.name, d.kind, plan[d.name], d.data) for d in documents]
        results["corpus"] = {"documents": len(documents), "pages": sum(d.pages for d in documents),
                             "by_kind": {kind: sum(1 for d in documents if d.kind == kind)
                                         for kind in ("pdf", "docx", "txt")},
                             "words_per_page": corpus_mod.WORDS_PER_PAGE}
    if needs_stack:
        log("starting the local stack (gateway, redis, extractor, embedder, indexer)")
        stack = fresh_stack(WORK / "stack")
        stack.start()
        client = Client(stack)
        try:
            client.upload("warm.txt", b"Warm up every stage once before timing anything.")
            client.wait_all([client.http.get("/v1/documents").json()["documents"][0]["document_id"]], 120)
            if "pipeline" in sections:
                log("2. pipeline throughput (+ 6. peer)")
                peer = PEER_PYTHON.exists()
                if not peer:
                    log("no .venv-bench: the peer is skipped (bench/setup_peer_venv.sh creates it)")
                results["pipeline"] = bench_pipeline(stack, client, documents, corpus_dir, batch_size,
                                                     args.quick, peer)
            if "stages" in sections:
                log("3. per-stage efficiency")
                results["stages"] = bench_stages(stack, documents, batch_size, args.quick)
            if "fanout" in sections:
                log("4. fan-out")
                results["fanout"] = bench_fanout(stack, args.quick)
            if "growth" in sections:
                log("5. growth")
                results["growth"] = bench_growth(stack, client, args.quick)
        finally:
            client.close()
            stack.stop()

    if "quality" in sections:
        log("7. search quality (Cranfield)")
        from bench.search_quality import bench_search_quality

        results["quality"] = bench_search_quality()

    if "footprint" in sections:
        log("8. footprint (Redis and disk per document)")
        from bench.footprint import bench_footprint

        results["footprint"] = bench_footprint(WORK / "footprint", 12 if args.quick else 40)

    if "corpus_growth" in sections:
        log("9. corpus growth (documents through the indexer tasks, maintenance running)")
        from bench.corpus_growth import bench_corpus_growth

        results["corpus_growth"] = (
            bench_corpus_growth(WORK / "corpus-growth", 2000, (250, 500, 1000, 2000), searches=40) if args.quick
            else bench_corpus_growth(WORK / "corpus-growth"))
        shutil.rmtree(WORK / "corpus-growth", ignore_errors=True)

    if "scale" in sections:
        log("10. scale (vectors in one tenant's table: ANN latency, recall, index build)")
        # Its own process: the build's peak memory is then the process's own.
        results["scale"] = subprocess_json([sys.executable, "-m", "bench.scale", "--work", str(WORK / "scale"),
                                            "--vectors", str(50_000 if args.quick else 1_000_000)], timeout=3600)
        shutil.rmtree(WORK / "scale", ignore_errors=True)

    if "search_ingest" in sections:
        log("11. search under ingest (REST API, idle and during a bulk ingest)")
        from bench.search_ingest import bench_search_ingest

        results["search_ingest"] = bench_search_ingest(WORK / "search-ingest", quick=args.quick)

    if "durability" in sections:
        log("12. durable acceptance (Redis appendfsync everysec against always, per upload)")
        from bench.durability import bench_durability

        results["durability"] = bench_durability(WORK / "durability", quick=args.quick)

    if "embed_runtimes" in sections:
        log("13. embedding runtimes (torch, onnx, onnx-int8 through the worker and directly)")
        from bench.embed_runtimes import bench_embed_runtimes

        results["embed_runtimes"] = bench_embed_runtimes(WORK / "embed-runtimes", documents, CONTENT_TYPES,
                                                         subprocess_json, args.quick)

    if "fair_share" in sections:
        log("14. fair sharing (one tenant's upload, idle and with another's 1,000 documents queued)")
        from bench.fair_share import bench_fair_share

        results["fair_share"] = bench_fair_share(WORK / "fair-share", 100 if args.quick else 1000)
        shutil.rmtree(WORK / "fair-share", ignore_errors=True)

    if "reembed" in sections:
        log("15. re-embed (a tenant re-embedded through POST /v1/admin/reembed while searches run)")
        from bench.reembed import bench_reembed

        results["reembed"] = bench_reembed(WORK / "reembed", 100 if args.quick else 1000)
        shutil.rmtree(WORK / "reembed", ignore_errors=True)

    results["minutes"] = (time.time() - started) / 60
    results["load_after"] = os.getloadavg()
    out = WORK / ("results-quick.json" if args.quick else "results.json")
    out.write_text(json.dumps(results, indent=2, default=str))
    log(f"results in {out} ({results['minutes']:.1f} min)")
    partial = set(ALL_SECTIONS) - sections
    if not args.no_report:
        from bench.report import write_report

        target = WORK / "benchmarks-quick.md" if args.quick else REPO / "docs" / "benchmarks.md"
        write_report(results, target, only=sections if partial else None)
        log(f"report written to {target}" + (f" (sections {', '.join(sorted(sections))} only)" if partial else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

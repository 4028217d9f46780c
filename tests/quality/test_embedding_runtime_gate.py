"""The quality gate of the bundled model's ONNX runtimes: int8 must not cost search quality.

On Cranfield-1400 (../shared/data/cranfield, BEIR layout) chunked by the extractor's
chunker, nDCG@10 of vector search (exact cosine, a document ranked by its best chunk,
as the indexer's vector search ranks below its ANN threshold) with the ONNX int8
runtime stays within 0.005 of torch fp32's, and every chunk's vector has a cosine of
at least 0.98 to torch's. Not timed: speed is `make bench`'s (docs/benchmarks.md).
"""

from pathlib import Path

import numpy as np
import pytest

from bench.search_quality import load_collection, ndcg_at_k
from docflow.embedder.providers import create_provider
from docflow.extractor.chunking import chunk_pages
from docflow.extractor.pages import PageText
from docflow.shared.settings import Settings

CRANFIELD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cranfield"
MAX_NDCG_LOSS = 0.005
MIN_COSINE = 0.98


@pytest.fixture(scope="module")
def cranfield():
    if not (CRANFIELD / "corpus.jsonl").is_file():
        pytest.skip(f"the Cranfield collection is not at {CRANFIELD} (it ships in the shared folder beside the repo)")
    corpus, queries, qrels = load_collection(CRANFIELD)
    settings = Settings()
    chunks = [(document_id, chunk.text) for document_id, text in corpus.items()
              for chunk in chunk_pages([PageText(page=None, text=text)], settings.chunk_tokens,
                                       settings.chunk_overlap_tokens)]
    query_ids = [query_id for query_id in queries if query_id in qrels]
    return chunks, [queries[q] for q in query_ids], [qrels[q] for q in query_ids]


def embed_all(runtime: str, chunks, queries) -> tuple[np.ndarray, np.ndarray]:
    provider = create_provider(Settings(embedder="minilm", minilm_runtime=runtime), pool_processes=1)
    provider.load()
    return provider.embed([text for _, text in chunks]), provider.embed(queries)


def vector_search_ndcg(chunk_vectors: np.ndarray, query_vectors: np.ndarray, chunks, judgments) -> float:
    document_of_chunk = [document_id for document_id, _ in chunks]
    scores = []
    for query_vector, judged in zip(query_vectors, judgments):
        best_first = np.argsort(-(chunk_vectors @ query_vector), kind="stable")
        ranked = list(dict.fromkeys(document_of_chunk[row] for row in best_first[:50]))
        scores.append(ndcg_at_k(ranked, judged))
    return float(np.mean(scores))


def test_int8_keeps_torchs_search_quality_and_every_vector_close(cranfield):
    chunks, queries, judgments = cranfield
    torch_chunks, torch_queries = embed_all("torch", chunks, queries)
    int8_chunks, int8_queries = embed_all("onnx-int8", chunks, queries)

    cosines = np.sum(torch_chunks * int8_chunks, axis=1)  # unit vectors
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= MIN_COSINE, f"chunk {worst} of document {chunks[worst][0]}: cosine {cosines[worst]:.4f}"
    assert np.min(np.sum(torch_queries * int8_queries, axis=1)) >= MIN_COSINE

    torch_ndcg = vector_search_ndcg(torch_chunks, torch_queries, chunks, judgments)
    int8_ndcg = vector_search_ndcg(int8_chunks, int8_queries, chunks, judgments)
    print(f"nDCG@10 vector search: torch {torch_ndcg:.4f}, onnx-int8 {int8_ndcg:.4f}; "
          f"cosine min {cosines.min():.4f} mean {cosines.mean():.4f} over {len(chunks)} chunks")
    assert torch_ndcg > 0.3, "torch's own vector search must find what Cranfield judges relevant"
    assert int8_ndcg >= torch_ndcg - MAX_NDCG_LOSS

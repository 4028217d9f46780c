"""Synthetic indexed documents for the search benchmarks (corpus growth, search under ingest).

A document is `CHUNKS_PER_DOCUMENT` chunks of about `WORDS_PER_CHUNK` words drawn from a
Zipf-distributed vocabulary (a few hundred common English words, then thousands of
generated rarer ones): a keyword query then has a few long and many short posting
lists, as on real text, instead of every word occurring in every chunk. Each chunk's
vector is what the `hash` embedder computes for its text (feature hashing, 384
dimensions), so a query embedded by that embedder ranks these chunks as the stack would.

Two ways in: `write_index_inputs` stores each document's chunks and embeddings where
the indexer's task reads them and creates its status record (the message an index
task receives is then exactly the pipeline's); `load_into_store` writes documents
straight through the indexer's LanceDB store (a preloaded index, when what is
measured is search, not indexing).
"""

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import redis

from bench.corpus import _VOCABULARY
from docflow.embedder.providers.hashing import _bucket_and_sign
from docflow.shared.content_types import ContentType
from docflow.shared.messages import PipelineMessage, artifact_prefix
from docflow.shared.status import DocumentRecord, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

CHUNKS_PER_DOCUMENT = 10
WORDS_PER_CHUNK = 120  # ~160 tokens: the extractor cuts chunks of up to 200
RARE_WORDS = 20_000
DIMENSIONS = 384
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sha", "dor", "bel", "qui", "fen", "gar",
              "hol", "jin", "mar", "nos", "pra"]


def vocabulary() -> list[str]:
    """Common words first (most frequent), then generated rare ones."""
    common = list(dict.fromkeys(_VOCABULARY))
    rare, n = [], 0
    while len(rare) < RARE_WORDS:
        word, k = "", n
        for _ in range(3 + (n // 8000)):
            word += _SYLLABLES[k % len(_SYLLABLES)]
            k //= len(_SYLLABLES)
        rare.append(word)
        n += 1
    return common + rare


class ChunkFactory:
    """Deterministic chunk texts and their hash embeddings (same seed, same corpus)."""

    def __init__(self, seed: int = 14) -> None:
        self.words = np.array(vocabulary())
        ranks = np.arange(1, len(self.words) + 1)
        self.p = (1.0 / ranks) / (1.0 / ranks).sum()
        self.rng = np.random.default_rng(seed)
        pairs = [_bucket_and_sign(word, DIMENSIONS) for word in self.words]
        self.bucket = np.array([b for b, _ in pairs])
        self.sign = np.array([s for _, s in pairs], dtype=np.float32)

    def chunks(self, count: int) -> tuple[list[str], np.ndarray]:
        """`count` chunk texts and their unit vectors (count × 384, float32)."""
        picks = self.rng.choice(len(self.words), size=(count, WORDS_PER_CHUNK), p=self.p)
        texts = [" ".join(self.words[row]) + "." for row in picks]
        vectors = np.stack([np.bincount(self.bucket[row], weights=self.sign[row], minlength=DIMENSIONS)
                            for row in picks]).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return texts, vectors

    def queries(self, count: int, words: int = 3) -> list[str]:
        """Queries of a few words of middling frequency (neither stop words nor unseen)."""
        picks = self.rng.integers(50, 5000, size=(count, words))
        return [" ".join(self.words[row]) for row in picks]

    def embed(self, texts: list[str]) -> np.ndarray:
        from docflow.embedder.providers.hashing import HashingProvider

        return HashingProvider(DIMENSIONS).embed(texts)


@dataclass(frozen=True)
class IndexInput:
    message: PipelineMessage  # what the embedder hands the indexer


def _npy(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


def write_index_inputs(factory: ChunkFactory, storage_root, redis_url: str, tenant: str,
                       documents: int) -> list[PipelineMessage]:
    """Store `documents` documents' chunks and embeddings and create their records;
    the index task's messages, in order."""
    storage = LocalStorage(storage_root)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    status = StatusStore(client)
    messages = []
    try:
        pipe = client.pipeline(transaction=False)
        for n in range(documents):
            document_id = uuid.uuid4().hex
            texts, vectors = factory.chunks(CHUNKS_PER_DOCUMENT)
            prefix = artifact_prefix(tenant, document_id)
            message = PipelineMessage(document_id=document_id, tenant=tenant, version=1,
                                      content_type=ContentType.TEXT, original_key=prefix + "original")
            message = message.model_copy(update={"chunks_key": message.key("chunks.json"),
                                                 "embeddings_key": message.key("embeddings.npy")})
            storage.put(message.chunks_key, json.dumps(
                [{"index": i, "text": text, "page": None} for i, text in enumerate(texts)]).encode())
            storage.put(message.embeddings_key, _npy(vectors))
            now = utcnow()
            status.create(DocumentRecord(document_id=document_id, tenant=tenant, filename=f"doc-{n}.txt",
                                         content_type=ContentType.TEXT, size_bytes=0,
                                         original_key=message.original_key, created_at=now, updated_at=now),
                          pipe=pipe)
            if len(pipe) >= 500:
                pipe.execute()
            messages.append(message)
        pipe.execute()
    finally:
        client.close()
    return messages


def load_into_store(factory: ChunkFactory, store, redis_url: str, tenant: str, documents: int,
                    per_commit: int = 1000) -> Iterator[int]:
    """Write documents straight through a LanceDBStore (`per_commit` documents per commit),
    each with a completed status record; yields the count after each commit."""
    from docflow.indexer.stores.base import DocumentAttributes, VectorRecord
    from docflow.shared.messages import Chunk
    from docflow.shared.status import DocumentStatus

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    status = StatusStore(client)
    try:
        done = 0
        while done < documents:
            batch = min(per_commit, documents - done)
            texts, vectors = factory.chunks(batch * CHUNKS_PER_DOCUMENT)
            records = []
            pipe = client.pipeline(transaction=False)
            for d in range(batch):
                document_id = uuid.uuid4().hex
                now = utcnow()
                record = DocumentRecord(document_id=document_id, tenant=tenant, filename=f"doc-{done + d}.txt",
                                        content_type=ContentType.TEXT, size_bytes=0,
                                        status=DocumentStatus.COMPLETED, chunks=CHUNKS_PER_DOCUMENT,
                                        vectors=CHUNKS_PER_DOCUMENT, served_version=1,
                                        served_vectors=CHUNKS_PER_DOCUMENT,
                                        original_key=artifact_prefix(tenant, document_id) + "original",
                                        created_at=now, updated_at=now, completed_at=now)
                status.create(record, pipe=pipe)
                attributes = DocumentAttributes.of(record)
                for i in range(CHUNKS_PER_DOCUMENT):
                    row = d * CHUNKS_PER_DOCUMENT + i
                    records.append(VectorRecord.for_chunk(document_id, 1, Chunk(index=i, text=texts[row]),
                                                          vectors[row], attributes))
            pipe.execute()
            store.upsert(tenant, records, fresh=True)
            done += batch
            yield done
    finally:
        client.close()

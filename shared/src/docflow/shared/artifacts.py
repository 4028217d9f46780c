"""What the stages leave in storage for each other: the artifacts' names and codecs.

Each run writes under its version prefix (`PipelineMessage.key(name)`), so a
redelivered run overwrites its own files and never another version's:

- `pages.json` (extractor): the text of each page, blank ones included,
  `[{"page": 1, "text": "..."}, ...]`; kept for inspection and re-chunking.
- `chunks.json` (extractor -> embedder, indexer): `[{"index": 0, "text": "...",
  "page": 1}, ...]`, the units that are embedded and found.
- `embeddings.npy` (embedder -> indexer): a plain numpy `.npy` file, float32, shape
  (chunks, dimensions); row i is the vector of entry i of chunks.json. Pickles are
  refused both ways, so a tampered artifact cannot run code in a worker.
- `ranges/` (a big PDF's fan-out): each page range's pages and chunks, merged into the
  two files above (docflow.extractor.fanout).

Every writer and reader goes through the functions here, so the format is decided
once. They raise the codec's own errors; each stage decides what a malformed
artifact means for its task (the indexer fails the document at once, for one).
numpy is imported only by the embeddings codec: the gateway never loads it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from pydantic import BaseModel, TypeAdapter

from docflow.shared.messages import Chunk

if TYPE_CHECKING:
    import numpy as np

PAGES = "pages.json"
CHUNKS = "chunks.json"
EMBEDDINGS = "embeddings.npy"
RANGES_FOLDER = "ranges/"


class PageText(BaseModel):
    """One entry of pages.json: what every extractor reader produces."""

    # 1-based page (PDF) or frame (image) number; None where the format has no fixed
    # pages (DOCX pagination depends on the renderer; plain text has none).
    page: int | None
    text: str


_PAGES_JSON = TypeAdapter(list[PageText])
_CHUNKS_JSON = TypeAdapter(list[Chunk])


def dump_pages(pages: list[PageText]) -> bytes:
    return _PAGES_JSON.dump_json(pages)


def load_pages(data: bytes) -> list[PageText]:
    return _PAGES_JSON.validate_json(data)


def concatenate_pages(parts: list[bytes]) -> bytes:
    """Several pages.json files joined into one, byte for byte what `dump_pages` writes
    for all their pages together (a fanned-out document's ranges, in page order)."""
    items = [part[1:-1] for part in parts]
    return b"[" + b",".join(item for item in items if item) + b"]"


def dump_chunks(chunks: list[Chunk]) -> bytes:
    return _CHUNKS_JSON.dump_json(chunks)


def load_chunks(data: bytes) -> list[Chunk]:
    """The chunks in file order; pydantic's ValidationError if the file is malformed."""
    return _CHUNKS_JSON.validate_json(data)


def dump_embeddings(matrix: np.ndarray) -> bytes:
    """A 2-D float32 matrix as .npy bytes; ValueError for any other shape or dtype."""
    import numpy as np

    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.dtype != np.float32:
        raise ValueError(f"embeddings must be a 2-D float32 matrix, got {matrix.ndim}-D {matrix.dtype}")
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    return buffer.getvalue()


def load_embeddings(data: bytes) -> np.ndarray:
    """The matrix; ValueError (or EOFError) for a malformed or pickled file."""
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)

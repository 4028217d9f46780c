"""The embeddings artifact: a plain numpy `.npy` file, float32, shape (n_chunks, dims).

Row i is the vector of the i-th entry of the document's chunks.json. The indexer
reads the same file with its own `np.load`; pickles are refused both ways, so a
tampered artifact cannot run code.
"""

import io

import numpy as np


def matrix_to_npy(matrix: np.ndarray) -> bytes:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.dtype != np.float32:
        raise ValueError(f"embeddings must be a 2-D float32 matrix, got {matrix.ndim}-D {matrix.dtype}")
    buffer = io.BytesIO()
    np.save(buffer, matrix, allow_pickle=False)
    return buffer.getvalue()


def matrix_from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)

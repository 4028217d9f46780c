"""What every embedding provider offers, and the normalisation they all share."""

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class EmbeddingProvider(Protocol):
    """Turns texts into unit-length float32 vectors, one row per text, in input order."""

    name: str
    runtime: str  # what computes the vectors: torch, onnx, onnx-int8, http, numpy
    model_name: str  # with `name` and the dimensions, the model's identity (shared.embedding_models)

    @property
    def dimensions(self) -> int: ...

    def load(self) -> None:
        """Open what the provider needs (weights, HTTP pool). Idempotent; call after fork."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dimensions) with L2-normalised rows."""


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero rather than becoming NaN)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)

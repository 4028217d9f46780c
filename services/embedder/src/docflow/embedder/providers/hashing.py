"""Feature hashing: a model-free embedding for tests and smoke runs.

Each word is hashed into one of `dimensions` buckets with a sign, so texts sharing
words share (signed) coordinates and score a higher cosine than unrelated texts.
It knows nothing of meaning; it is fast, deterministic and needs no weights.
"""

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from docflow.embedder.providers.base import l2_normalize

_WORD = re.compile(r"\w+")


def _bucket_and_sign(token: str, dimensions: int) -> tuple[int, float]:
    # blake2b, not hash(): Python salts str hashes per process, and a vector written
    # by one worker must match a query embedded by another.
    value = int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")
    sign = 1.0 if value >> 63 else -1.0
    return value % dimensions, sign


def tokens(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    # A text without words still gets a unit vector, so cosine distances downstream
    # never divide by zero; all word-less texts share it.
    return words or [""]


class HashingProvider:
    name = "hash"
    runtime = "numpy"
    model_name = "feature-hashing"  # the width is in the identity: 256 and 384 do not mix
    device = "cpu"

    def __init__(self, dimensions: int) -> None:
        self._dimensions = dimensions

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def load(self) -> None:
        """Nothing to open."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in tokens(text):
                bucket, sign = _bucket_and_sign(token, self._dimensions)
                matrix[row, bucket] += sign
        return l2_normalize(matrix)

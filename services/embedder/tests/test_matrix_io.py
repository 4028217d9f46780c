import io

import numpy as np
import pytest

from docflow.embedder.matrix_io import matrix_from_npy, matrix_to_npy


def test_round_trip_keeps_shape_dtype_and_values():
    matrix = np.random.default_rng(0).random((5, 7), dtype=np.float32)
    data = matrix_to_npy(matrix)
    assert data.startswith(b"\x93NUMPY")  # plain .npy, readable by any np.load
    restored = matrix_from_npy(data)
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored, matrix)


@pytest.mark.parametrize("bad", [np.zeros((2, 3), dtype=np.float64), np.zeros(3, dtype=np.float32)])
def test_only_2d_float32_matrices_are_written(bad):
    with pytest.raises(ValueError):
        matrix_to_npy(bad)


def test_pickled_payloads_are_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"not": "vectors"}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        matrix_from_npy(buffer.getvalue())

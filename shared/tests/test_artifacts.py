"""The artifacts the stages hand each other: what one writes, the next reads back whole."""

import io
import json

import numpy as np
import pytest
from pydantic import ValidationError

from docflow.shared import artifacts
from docflow.shared.artifacts import PageText
from docflow.shared.messages import Chunk, PipelineMessage


def test_pages_round_trip_keeps_pages_without_numbers_and_blank_pages():
    pages = [PageText(page=1, text="Tidal forces"), PageText(page=2, text=""),
             PageText(page=None, text="ünïcode – and \"quotes\"")]
    data = artifacts.dump_pages(pages)
    assert json.loads(data)[0] == {"page": 1, "text": "Tidal forces"}
    assert artifacts.load_pages(data) == pages


def test_chunks_round_trip_in_file_order():
    chunks = [Chunk(index=0, text="first", page=1), Chunk(index=1, text="second", page=None)]
    data = artifacts.dump_chunks(chunks)
    assert json.loads(data) == [{"index": 0, "text": "first", "page": 1},
                                {"index": 1, "text": "second", "page": None}]
    assert artifacts.load_chunks(data) == chunks


@pytest.mark.parametrize("bad", [b"not json", b'{"index": 0}', b'[{"text": "no index"}]'])
def test_malformed_chunks_raise_the_codecs_error(bad):
    with pytest.raises(ValidationError):
        artifacts.load_chunks(bad)


def test_concatenated_pages_are_what_one_dump_of_all_pages_writes():
    pages = [PageText(page=n, text=f"page {n}") for n in range(1, 6)]
    parts = [artifacts.dump_pages(pages[:2]), artifacts.dump_pages([]), artifacts.dump_pages(pages[2:])]
    assert artifacts.concatenate_pages(parts) == artifacts.dump_pages(pages)
    assert artifacts.concatenate_pages([artifacts.dump_pages([])]) == artifacts.dump_pages([])


def test_names_are_keys_under_the_runs_version_prefix():
    msg = PipelineMessage(document_id="d1", tenant="acme", version=3, content_type="text/plain",
                          original_key="tenants/acme/documents/d1/original")
    assert msg.key(artifacts.CHUNKS) == "tenants/acme/documents/d1/v3/chunks.json"
    assert {artifacts.PAGES, artifacts.CHUNKS, artifacts.EMBEDDINGS} == {
        "pages.json", "chunks.json", "embeddings.npy"}


# The embeddings codec (these three moved here with it from the embedder).
def test_round_trip_keeps_shape_dtype_and_values():
    matrix = np.random.default_rng(0).random((5, 7), dtype=np.float32)
    data = artifacts.dump_embeddings(matrix)
    assert data.startswith(b"\x93NUMPY")  # plain .npy, readable by any np.load
    restored = artifacts.load_embeddings(data)
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored, matrix)


@pytest.mark.parametrize("bad", [np.zeros((2, 3), dtype=np.float64), np.zeros(3, dtype=np.float32)])
def test_only_2d_float32_matrices_are_written(bad):
    with pytest.raises(ValueError):
        artifacts.dump_embeddings(bad)


def test_pickled_payloads_are_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"not": "vectors"}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        artifacts.load_embeddings(buffer.getvalue())

"""The id prefixes deletes rely on match the shared `vector_id` layout."""

from docflow.indexer.stores import document_id_prefix, version_id_prefix, version_of_id
from docflow.shared.messages import vector_id


def test_vector_ids_start_with_their_document_and_version_prefixes():
    id_ = vector_id("doc1", 12, 7)
    assert id_.startswith(document_id_prefix("doc1"))
    assert id_.startswith(version_id_prefix("doc1", 12))
    assert version_of_id("doc1", id_) == 12


def test_prefixes_do_not_match_longer_ids_that_share_a_start():
    assert not vector_id("doc10", 1, 0).startswith(document_id_prefix("doc1"))
    assert not vector_id("doc1", 10, 0).startswith(version_id_prefix("doc1", 1))

"""Search modes, filters and metadata updates on both backends, side by side.

LanceDB is the real thing (a table in tmp_path). Pinecone's service cannot be reached
from here, so the Pinecone backend runs through the real `pinecone` client against
`docflow.devstack.pinecone_double` (a dotproduct index with sparse values on, as
DOCFLOW_PINECONE_SPARSE=true needs); the double evaluates filters with
`docflow.shared.search_filter.matches`, the reference evaluator, which is also what
every answer here is checked against.
"""

import hashlib
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from pinecone import Pinecone

from docflow.devstack.pinecone_double import API_KEY, PineconeDouble, served
from docflow.indexer.stores import DocumentAttributes, VectorRecord
from docflow.indexer.stores.lancedb import LanceDBStore
from docflow.indexer.stores.pinecone import PineconeStore
from docflow.shared.highlights import terms
from docflow.shared.messages import Chunk
from docflow.shared.search import SearchMode
from docflow.shared.search_filter import MAX_LIST_VALUES, FilterError, matches, parse_filter

TENANT = "acme"
DIMENSION = 64


def embed(text: str) -> np.ndarray:
    """A bag-of-terms embedding (one seeded random direction per term): texts sharing
    terms are close, as with a real model, and the same in every run."""
    total = np.zeros(DIMENSION)
    for term in terms(text):
        seed = int.from_bytes(hashlib.blake2b(term.encode(), digest_size=8).digest(), "little")
        total += np.random.default_rng(seed).normal(size=DIMENSION)
    norm = np.linalg.norm(total)
    return (total / norm if norm else total).astype(np.float32)


def day(n: int) -> float:
    return datetime(2024, 1, n, 12, tzinfo=UTC).timestamp()


# document id -> (filename, content type, created at, metadata, chunk texts)
CORPUS = {
    "d1": ("alpha.txt", "text/plain", day(1),
           {"year": 2019, "tags": ["red", "blue"], "team": "x", "draft": True, "score": 0.9, "name": "O'Brien"},
           ["The aurora borealis lights the northern sky", "Salmon migrate upstream every autumn"]),
    "d2": ("beta.pdf", "application/pdf", day(2),
           {"year": 2020, "tags": ["green"], "team": "y", "draft": False, "score": 0.4, "name": "' OR 1=1 --"},
           ["Quantum tunnelling lets electrons cross barriers", "The bakery sells sourdough bread daily"]),
    "d3": ("gamma.md", "text/markdown", day(3),
           {"year": 2021, "team": "x", "score": 1, "it's": "quoted key"},
           ["Glaciers carve deep valleys over millennia", "Volcanic ash enriches farmland soil"]),
    "d4": ("delta.txt", "text/plain", day(4),
           {"year": "2020", "team": "z", "tags": ["red"]},
           ["Octopuses change colour to hide from predators", "Jazz musicians improvise complex harmonies"]),
    "d5": ("epsilon.pdf", "application/pdf", day(5), {},
           ["Desert cacti store water in thick stems", "Lighthouse keepers once lived in isolation"]),
}
ALL_CHUNKS = {(doc, i) for doc, (*_, texts) in CORPUS.items() for i in range(len(texts))}
# One term of every chunk: a keyword query every chunk matches, so a filter alone decides.
EVERY_CHUNK_QUERY = "aurora salmon quantum bakery glaciers volcanic octopuses jazz cacti lighthouse"


def attributes_of(document_id: str, metadata: dict | None = None) -> DocumentAttributes:
    filename, content_type, created_at, stored, _ = CORPUS[document_id]
    return DocumentAttributes(filename=filename, content_type=content_type, created_at=created_at,
                              metadata=stored if metadata is None else metadata)


def records_of(document_id: str) -> list[VectorRecord]:
    texts = CORPUS[document_id][4]
    return [VectorRecord.for_chunk(document_id, 1, Chunk(index=i, text=text, page=1), embed(text),
                                   attributes_of(document_id)) for i, text in enumerate(texts)]


def reference(filter_: dict | None, metadata: dict[str, dict] | None = None) -> set[tuple[str, int]]:
    """The chunks `matches` admits: what both stores must answer."""
    metadata = metadata or {}
    admitted = set()
    for doc, (filename, content_type, created_at, stored, texts) in CORPUS.items():
        attributes = {**metadata.get(doc, stored), "document_id": doc, "filename": filename,
                      "content_type": content_type, "created_at": created_at}
        if matches(filter_, attributes):
            admitted.update((doc, i) for i in range(len(texts)))
    return admitted


@pytest.fixture(scope="module")
def double_server():
    double = PineconeDouble()
    with served(double) as url:
        yield double, url


@pytest.fixture(params=["lancedb", "pinecone"])
def store(request, tmp_path, double_server):
    if request.param == "lancedb":
        backend = LanceDBStore(str(tmp_path / "lancedb"))
    else:
        double, url = double_server
        double.reset(dimension=DIMENSION, metric="dotproduct")
        backend = PineconeStore(Pinecone(api_key=API_KEY).index(host=url), sparse=True)
    for document_id in CORPUS:
        backend.upsert(TENANT, records_of(document_id), fresh=True)
    return backend


def found(store, filter_: dict | None, mode: SearchMode = SearchMode.VECTOR,
          text: str = EVERY_CHUNK_QUERY) -> set[tuple[str, int]]:
    hits = store.search(TENANT, embed(text).tolist(), 100, mode=mode, text=text, filter=filter_)
    return {(hit.document_id, hit.chunk_index) for hit in hits}


PHRASES = [(doc, i, " ".join(text.split()[1:4])) for doc, (*_, texts) in CORPUS.items()
           for i, text in enumerate(texts)]


@pytest.mark.parametrize("mode", list(SearchMode))
def test_every_mode_finds_the_chunk_a_phrase_comes_from(store, mode):
    for document_id, chunk_index, phrase in PHRASES:
        hits = store.search(TENANT, embed(phrase).tolist(), 3, mode=mode, text=phrase)
        assert hits, (mode, phrase)
        assert (hits[0].document_id, hits[0].chunk_index) == (document_id, chunk_index), (mode, phrase)
        assert hits[0].text == CORPUS[document_id][4][chunk_index]


def test_keyword_search_finds_only_chunks_with_a_query_term(store):
    hits = store.search(TENANT, None, 10, mode=SearchMode.KEYWORD, text="the sourdough BREADS")
    # Stemmed and case-folded as the index is: "BREADS" matches "bread"; "the" is a stop word.
    assert [(hit.document_id, hit.chunk_index) for hit in hits] == [("d2", 1)]
    assert store.search(TENANT, None, 10, mode=SearchMode.KEYWORD, text="nonexistentword") == []
    assert store.search(TENANT, None, 10, mode=SearchMode.KEYWORD, text="the of and") == []


def test_hybrid_fuses_the_vector_and_the_keyword_list(store):
    """The vector points at one chunk, the words at another: hybrid returns both on top."""
    vector = embed(CORPUS["d3"][4][0]).tolist()  # glaciers
    text = "octopuses predators"                  # d4's first chunk
    by_vector = store.search(TENANT, vector, 5, mode=SearchMode.VECTOR, text=text)
    by_keyword = store.search(TENANT, vector, 5, mode=SearchMode.KEYWORD, text=text)
    fused = store.search(TENANT, vector, 5, mode=SearchMode.HYBRID, text=text)
    assert (by_vector[0].document_id, by_vector[0].chunk_index) == ("d3", 0)
    assert [(h.document_id, h.chunk_index) for h in by_keyword] == [("d4", 0)]
    assert {(h.document_id, h.chunk_index) for h in fused[:2]} == {("d3", 0), ("d4", 0)}
    # Reciprocal rank fusion: first in both lists' terms, 1/(60+1) (+ 1/(60+r) from the other).
    assert fused[0].score >= 1 / 61
    assert all(a.score >= b.score for a, b in zip(fused, fused[1:]))


FILTERS = [
    {"year": 2020},
    {"year": {"$ne": 2020}},
    {"year": {"$gte": 2019, "$lt": 2021}},
    {"year": {"$gt": 2019.5}},
    {"year": "2020"},
    {"year": {"$in": [2019, "2020"]}},
    {"year": {"$nin": [2019, 2021]}},
    {"tags": "red"},
    {"tags": {"$ne": "red"}},
    {"tags": {"$in": ["green", "blue"]}},
    {"tags": {"$nin": ["red"]}},
    {"tags": {"$exists": True}},
    {"tags": {"$exists": False}},
    {"draft": True},
    {"draft": False},
    {"draft": {"$ne": True}},
    {"draft": 1},
    {"score": {"$lte": 0.9}},
    {"score": 1.0},
    {"team": {"$in": ["x", "z"]}, "year": {"$exists": True}},
    {"$or": [{"year": 2019}, {"tags": "green"}, {"team": "z"}]},
    {"$and": [{"team": "x"}, {"$or": [{"draft": True}, {"score": {"$gte": 1}}]}]},
    {"document_id": "d3"},
    {"document_id": {"$nin": ["d1", "d2"]}},
    {"filename": {"$in": ["alpha.txt", "epsilon.pdf"]}},
    {"content_type": {"$ne": "text/plain"}},
    {"content_type": "application/pdf", "team": {"$exists": False}},
    {"created_at": {"$gte": "2024-01-03T00:00:00Z"}},
    {"created_at": {"$lt": "2024-01-02T12:00:00+00:00"}},
    {"created_at": {"$gt": day(2), "$lte": day(4)}},
    {"created_at": {"$exists": True}},
    {"missing": {"$ne": "anything"}},
    {"missing": "anything"},
]


@pytest.mark.parametrize("raw", FILTERS, ids=[str(f) for f in FILTERS])
@pytest.mark.parametrize("mode", [SearchMode.VECTOR, SearchMode.KEYWORD, SearchMode.HYBRID])
def test_filters_give_the_reference_answer_on_both_backends(store, raw, mode):
    normalised = parse_filter(raw)
    assert found(store, normalised, mode) == reference(normalised)


def test_the_filter_table_is_not_trivial():
    """Each filter must tell documents apart, or a broken store could still pass."""
    answers = [reference(parse_filter(raw)) for raw in FILTERS]
    assert sum(1 for answer in answers if answer and answer != ALL_CHUNKS) >= len(FILTERS) - 4


def docs(chunks: set[tuple[str, int]]) -> set[str]:
    return {doc for doc, _ in chunks}


INJECTIONS = [
    ({"name": "O'Brien"}, {"d1"}),
    ({"name": "' OR 1=1 --"}, {"d2"}),
    ({"name": {"$ne": "' OR 1=1 --"}}, {"d1", "d3", "d4", "d5"}),
    ({"filename": "x' OR '1'='1"}, set()),
    ({"filename": {"$nin": ["x' OR '1'='1"]}}, set(CORPUS)),
    ({"team": "x\\' OR 1=1 --"}, set()),
    ({"name": "\"; DROP TABLE tenant_acme; --"}, set()),
    ({"it's": "quoted key"}, {"d3"}),
    ({"it's') OR TRUE OR ('": {"$exists": True}}, set()),
    ({"content_type": "text/plain') OR (1=1"}, set()),
    ({"document_id": {"$in": [f"d{i}' OR '1'='1" for i in range(MAX_LIST_VALUES - 1)] + ["d3"]}}, {"d3"}),
    ({"tags": {"$in": [f"tag{i}\"]" for i in range(MAX_LIST_VALUES)]}}, set()),
    ({"year": {"$gte": 2021}, "name": {"$exists": False}}, {"d3"}),
]


@pytest.mark.parametrize("raw,expected", INJECTIONS, ids=[str(i) for i in range(len(INJECTIONS))])
def test_hostile_filter_values_never_error_and_never_return_other_rows(store, raw, expected):
    normalised = parse_filter(raw)
    assert docs(found(store, normalised)) == expected
    assert docs(found(store, normalised, SearchMode.KEYWORD)) == expected
    # Nothing was dropped or changed by a value that looked like SQL.
    assert found(store, None) == ALL_CHUNKS


def test_nul_characters_are_refused_by_the_parser_and_harmless_in_the_store(store):
    with pytest.raises(FilterError, match="NUL"):
        parse_filter({"name": "a\x00' OR 1=1 --"})
    with pytest.raises(FilterError, match="NUL"):
        parse_filter({"na\x00me": "x"})
    # Even if one got past the parser, the store treats it as an ordinary value.
    assert found(store, {"name": {"$eq": "O'Brien\x00' OR 1=1 --"}}) == set()
    assert found(store, None) == ALL_CHUNKS


def test_more_values_than_the_limit_are_refused_before_the_store():
    with pytest.raises(FilterError, match="more than"):
        parse_filter({"document_id": {"$in": [str(i) for i in range(MAX_LIST_VALUES + 1)]}})


def test_update_metadata_changes_what_filters_see(store):
    new = {"d5": {"year": 2019, "tags": ["red"]},  # gains keys
           "d1": {"team": "y"}}                     # loses year, tags, draft, score, name
    for document_id, metadata in new.items():
        assert store.update_metadata(TENANT, document_id, metadata) == 2
    for raw in [{"year": 2019}, {"tags": "red"}, {"tags": {"$exists": False}}, {"team": "y"},
                {"name": {"$exists": True}}, {"draft": {"$ne": True}}]:
        normalised = parse_filter(raw)
        assert found(store, normalised) == reference(normalised, new), raw
        assert found(store, normalised) != reference(normalised), f"{raw} did not change"
    # Only metadata changed: texts, vectors and the other documents are as they were.
    hit = store.search(TENANT, embed(CORPUS["d5"][4][1]).tolist(), 1, text="")[0]
    assert (hit.document_id, hit.chunk_index, hit.text) == ("d5", 1, CORPUS["d5"][4][1])
    assert math.isclose(hit.score, 1.0, abs_tol=1e-4)
    assert found(store, parse_filter({"filename": "alpha.txt"})) == {("d1", 0), ("d1", 1)}


@pytest.fixture
def search_task(tmp_path, redis_server, monkeypatch):
    """The indexer's search task over a LanceDB folder the test fills (real Redis for the
    task's resources, as in test_tasks.py)."""
    from docflow.indexer import tasks, worker
    from docflow.shared.settings import get_settings

    monkeypatch.setenv("DOCFLOW_REDIS_URL", redis_server.url)
    monkeypatch.setenv("DOCFLOW_VECTOR_STORE", "lancedb")
    monkeypatch.setenv("DOCFLOW_LANCEDB_URI", str(tmp_path / "lancedb"))

    def forget():
        get_settings.cache_clear()
        worker.reset_store()
        tasks.search.reset_resources()

    forget()
    filler = LanceDBStore(str(tmp_path / "lancedb"))
    for document_id in CORPUS:
        filler.upsert(TENANT, records_of(document_id), fresh=True)
    yield tasks.search
    forget()


def test_keyword_and_hybrid_hits_carry_the_spans_of_the_matched_words(search_task):
    text = "Salmon MIGRATING upstream"
    query = {"tenant": TENANT, "text": text, "limit": 3}
    keyword = search_task.apply(args=[None, {**query, "mode": "keyword"}]).get()
    chunk = CORPUS["d1"][4][1]  # "Salmon migrate upstream every autumn"
    assert keyword[0]["text"] == chunk
    spans = [tuple(span) for span in keyword[0]["highlights"]]
    # Stemmed matching: "MIGRATING" highlights "migrate".
    assert [chunk[start:end] for start, end in spans] == ["Salmon", "migrate", "upstream"]

    hybrid = search_task.apply(args=[embed(text).tolist(), {**query, "mode": "hybrid"}]).get()
    assert [tuple(span) for span in hybrid[0]["highlights"]] == spans
    # A vector-only search matched no words, so it highlights none.
    vector = search_task.apply(args=[embed(text).tolist(), {**query, "mode": "vector"}]).get()
    assert vector[0]["text"] == chunk and vector[0]["highlights"] == []

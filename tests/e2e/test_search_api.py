"""POST /v1/search's modes and filters, and PATCH's metadata, through the real stack:
gateway over HTTP, real embedder (MiniLM) and indexer (LanceDB) workers, real Redis."""

import json
import time

import pytest

DOCUMENTS = {
    "tides.txt": ("Spring tides occur when the sun and the moon align, pulling the ocean together.",
                  {"department": "oceanography", "year": 2019, "tags": ["sea", "moon"], "reviewed": True}),
    "volcano.txt": ("Basaltic lava flows from shield volcanoes such as Mauna Loa in Hawaii.",
                    {"department": "geology", "year": 2022, "tags": ["lava"], "reviewed": False}),
    "quotes.txt": ("O'Brien's notebook: an apostrophe-laden entry about glacier retreat in Greenland.",
                   {"department": "geo'logy OR 1=1 --", "year": 2024, "tags": ["ice", "sea"]}),
}


@pytest.fixture(scope="module")
def corpus(api_a, api_b) -> dict[str, str]:
    ids = {name: api_a.upload(name, text.encode(), json.dumps(metadata))
           for name, (text, metadata) in DOCUMENTS.items()}
    # Another tenant's document with the same words must never show up.
    api_b.upload("tides.txt", DOCUMENTS["tides.txt"][0].encode(), json.dumps(DOCUMENTS["tides.txt"][1]))
    for document_id in ids.values():
        assert api_a.wait_final(document_id)["status"] == "completed"
    return ids


def found(api, query: str, **fields) -> list[str]:
    return [hit["filename"] for hit in api.search(query, top_k=10, **fields)]


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
@pytest.mark.parametrize(("phrase", "filename"), [
    ("sun and moon align ocean tides", "tides.txt"),
    ("lava flows from shield volcanoes", "volcano.txt"),
    ("glacier retreat Greenland", "quotes.txt"),
])
def test_every_mode_finds_the_document_a_phrase_comes_from(api_a, corpus, mode, phrase, filename):
    hits = api_a.search(phrase, top_k=3, mode=mode)
    assert hits and hits[0]["filename"] == filename, hits
    best = hits[0]
    assert best["document_id"] == corpus[filename]
    assert best["content_type"] == "text/plain" and best["metadata"] == DOCUMENTS[filename][1]
    if mode == "vector":
        assert best["highlights"] == []
    else:
        highlighted = [best["text"][start:end].lower() for start, end in best["highlights"]]
        assert highlighted and all(word in phrase.lower() or word[:4] in phrase.lower() for word in highlighted)


def test_keyword_search_finds_only_documents_with_the_words(api_a, corpus):
    assert found(api_a, "Mauna Loa", mode="keyword") == ["volcano.txt"]
    assert found(api_a, "zeppelin", mode="keyword") == []


@pytest.mark.parametrize(("search_filter", "expected"), [
    ({"department": "geology"}, {"volcano.txt"}),
    ({"department": {"$ne": "geology"}}, {"tides.txt", "quotes.txt"}),
    ({"year": {"$gte": 2020}}, {"volcano.txt", "quotes.txt"}),
    ({"year": {"$lt": 2020}}, {"tides.txt"}),
    ({"tags": {"$in": ["sea"]}}, {"tides.txt", "quotes.txt"}),
    ({"tags": {"$nin": ["sea"]}}, {"volcano.txt"}),
    ({"reviewed": {"$exists": True}}, {"tides.txt", "volcano.txt"}),
    ({"$or": [{"year": 2019}, {"reviewed": False}]}, {"tides.txt", "volcano.txt"}),
    ({"$and": [{"tags": "sea"}, {"year": {"$gt": 2020}}]}, {"quotes.txt"}),
    ({"filename": {"$in": ["tides.txt", "volcano.txt"]}}, {"tides.txt", "volcano.txt"}),
    ({"content_type": "application/pdf"}, set()),
    ({"created_at": {"$gte": "2000-01-01T00:00:00Z"}}, set(DOCUMENTS)),
    # Injection attempts are values like any other: matched literally, never spliced.
    ({"department": "geo'logy OR 1=1 --"}, {"quotes.txt"}),
    ({"department": "' OR 1=1 --"}, set()),
    ({"department": {"$in": ["x'); DROP TABLE chunks; --", "geology"]}}, {"volcano.txt"}),
    ({"department": "geology\u0000"}, set()),
    ({"year": {"$in": list(range(900)) + [2022]}}, {"volcano.txt"}),
])
@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_filters_select_documents_in_every_mode(api_a, corpus, search_filter, expected, mode):
    query = "ocean lava glacier notebook tides sun moon flows Greenland"
    response = api_a.http.post("/v1/search", json={"query": query, "top_k": 30, "mode": mode,
                                                   "filter": search_filter})
    if response.status_code == 422:  # a NUL may be refused by validation instead: also fine
        assert "filter" in response.text
        assert not expected
        return
    assert response.status_code == 200, response.text
    # Among this module's documents (the session's tenant also holds other tests'),
    # exactly the expected ones.
    ours = set(corpus.values())
    assert {hit["filename"] for hit in response.json()["results"] if hit["document_id"] in ours} == expected


def test_a_malformed_filter_is_422_with_the_reason(api_a, corpus):
    response = api_a.http.post("/v1/search", json={"query": "tides", "filter": {"year": {"$between": [1, 2]}}})
    assert response.status_code == 422
    assert "$between" in response.text


def test_patch_changes_what_filters_see_without_reembedding(api_a, corpus):
    document_id = corpus["tides.txt"]
    before = api_a.document(document_id)
    response = api_a.http.patch(f"/v1/documents/{document_id}",
                                json={"metadata": {"department": "astronomy", "year": 2025}})
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if found(api_a, "tides", mode="keyword", filter={"department": "astronomy"}) == ["tides.txt"]:
            break
        time.sleep(0.25)
    else:
        raise AssertionError("the filter never saw the new metadata")
    assert found(api_a, "tides", mode="keyword", filter={"department": "oceanography"}) == []
    after = api_a.document(document_id)
    assert (after["version"], after["vectors"]) == (before["version"], before["vectors"])  # not re-embedded
    [hit] = api_a.search("tides", mode="keyword", filter={"department": "astronomy"})
    assert hit["metadata"] == {"department": "astronomy", "year": 2025}


def test_another_tenants_documents_are_never_found(api_b, corpus):
    hits = api_b.search("glacier lava tides", top_k=10)
    assert "tides.txt" in {hit["filename"] for hit in hits}  # B's own copy is found...
    assert not {hit["document_id"] for hit in hits} & set(corpus.values())  # ...never A's documents

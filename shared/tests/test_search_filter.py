"""The filter dialect: what parse_filter accepts, normalises and refuses, and what the
reference evaluator `matches` answers (the backends' tests compare themselves to it)."""

import pytest

from docflow.shared.search_filter import MAX_DEPTH, FilterError, matches, parse_filter


@pytest.mark.parametrize(("raw", "normalised"), [
    ({"year": 2020}, {"year": {"$eq": 2020}}),
    ({"year": {"$gte": 2020, "$lt": 2024}}, {"$and": [{"year": {"$gte": 2020}}, {"year": {"$lt": 2024}}]}),
    ({"a": "x", "b": {"$in": ["y", "z"]}}, {"$and": [{"a": {"$eq": "x"}}, {"b": {"$in": ["y", "z"]}}]}),
    ({"$or": [{"a": True}, {"b": {"$exists": False}}]}, {"$or": [{"a": {"$eq": True}}, {"b": {"$exists": False}}]}),
    ({"created_at": {"$gte": "2026-01-01T00:00:00Z"}}, {"created_at": {"$gte": 1767225600.0}}),
    ({"created_at": {"$lt": "2026-01-01T00:00:00"}}, {"created_at": {"$lt": 1767225600.0}}),
    ({"created_at": {"$in": [0, "1970-01-01T00:00:10+00:00"]}}, {"created_at": {"$in": [0.0, 10.0]}}),
    ({"title": "O'Brien' OR 1=1 --"}, {"title": {"$eq": "O'Brien' OR 1=1 --"}}),
])
def test_filters_are_normalised(raw, normalised):
    assert parse_filter(raw) == normalised


def _nested(depth: int) -> dict:
    node: dict = {"a": 1}
    for _ in range(depth - 1):
        node = {"$and": [node]}
    return node


@pytest.mark.parametrize(("raw", "reason"), [
    ({}, "non-empty"), ([], "non-empty"), ("year > 2020", "non-empty"),
    ({"year": {"$regex": "20.*"}}, "unknown operator '$regex'"),
    ({"$not": {"a": 1}}, "unknown operator '$not'"),
    ({"$and": []}, "non-empty list"), ({"$or": {"a": 1}}, "non-empty list"),
    ({"a": {"$in": "x"}}, "non-empty list"), ({"a": {"$in": []}}, "non-empty list"),
    ({"a": {"$in": list(range(1001))}}, "more than 1000"),
    ({"a": {"$gt": "2020"}}, "compares numbers"),
    ({"a": {"$exists": 1}}, "true or false"),
    ({"a": {"$eq": {"b": 1}}}, "not dict"), ({"a": {"$eq": None}}, "not NoneType"),
    ({"a": {"$eq": [1]}}, "not list"),
    ({"a": float("nan")}, "finite"),
    ({"a": "x\x00"}, "NUL"), ({"a\x00": "x"}, "NUL"),
    ({"a": "\ud800"}, "lone surrogate"), ({"\udfff": 1}, "lone surrogate"),
    ({"created_at": {"$gt": "yesterday"}}, "ISO-8601"),
    ({"a": {}}, "empty"),
    (_nested(MAX_DEPTH + 1), "deeper than"),
    ({f"k{i}": i for i in range(300)}, "more than 256 conditions"),
])
def test_malformed_filters_are_refused_with_the_reason(raw, reason):
    with pytest.raises(FilterError, match=__import__("re").escape(reason)):
        parse_filter(raw)


def test_the_deepest_allowed_filter_parses():
    assert parse_filter(_nested(MAX_DEPTH))


DOCUMENT = {"document_id": "d1", "filename": "a.txt", "content_type": "text/plain", "created_at": 100.0,
            "year": 2021, "score": 0.5, "team": "legal", "tags": ["x", "y"], "draft": False}


@pytest.mark.parametrize(("raw", "expected"), [
    ({"year": 2021}, True), ({"year": 2021.0}, True), ({"year": "2021"}, False),
    ({"draft": False}, True), ({"draft": 0}, False),
    ({"team": {"$ne": "legal"}}, False), ({"missing": {"$ne": "x"}}, True), ({"missing": "x"}, False),
    ({"tags": "x"}, True), ({"tags": {"$in": ["z", "y"]}}, True), ({"tags": {"$nin": ["y"]}}, False),
    ({"tags": {"$ne": "z"}}, True), ({"missing": {"$nin": ["a"]}}, True),
    ({"year": {"$gt": 2020, "$lte": 2021}}, True), ({"score": {"$lt": 0.5}}, False),
    ({"team": {"$gt": 1}}, False), ({"tags": {"$gte": 0}}, False),
    ({"team": {"$exists": True}}, True), ({"missing": {"$exists": False}}, True),
    ({"created_at": {"$gte": "1970-01-01T00:01:40Z"}}, True), ({"filename": {"$in": ["b.txt"]}}, False),
    ({"$or": [{"team": "hr"}, {"year": {"$gte": 2021}}]}, True),
    ({"$and": [{"team": "legal"}, {"tags": "z"}]}, False),
])
def test_the_reference_evaluator(raw, expected):
    assert matches(parse_filter(raw), DOCUMENT) is expected


def test_no_filter_matches_everything():
    assert matches(None, DOCUMENT) and matches({}, DOCUMENT)

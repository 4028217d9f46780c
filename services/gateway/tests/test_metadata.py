"""Metadata is checked at the door (upload and PATCH), so no stored record can break a
read: each refusal is a 422 with its reason, and nothing is stored."""

import json

import pytest

from docflow.gateway.metadata import MAX_DEPTH, MetadataError, parse_metadata_json, validated_metadata


def nested(depth: int) -> str:
    return '{"k": ' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"a": "\\ud800"}', "lone surrogate"),
    ('{"\\udfff": 1}', "lone surrogate"),
    (nested(MAX_DEPTH + 1), "deeper than"),
    (nested(300), "deeper than"),
    (nested(990), "deeper than"),
    ('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "-Infinity"),
    ('{"a": 1, "a": 2}', "repeats the key 'a'"),
    ('{"": 1}', "non-empty"), (json.dumps({"k" * 300: 1}), "longer than"),
    ("[1, 2]", "not list"), ('"text"', "not str"), ("null", "not NoneType"),
    ("{not json", "not valid JSON"), (b'{"a": "\xff"}', "UTF-8"),
    (json.dumps({"a": "x" * 70_000}), "larger than"),
])
def test_bad_metadata_is_refused_with_the_reason(raw, reason):
    with pytest.raises(MetadataError, match=reason):
        parse_metadata_json(raw)


def test_good_metadata_passes_unchanged():
    value = {"team": "research", "year": 2024, "score": 0.5, "tags": ["a", "b"], "draft": False,
             "owner": None, "nested": {"level": {"ok": "🚀 مرحبا 東京"}}}
    assert parse_metadata_json(json.dumps(value)) == value
    assert parse_metadata_json(nested(MAX_DEPTH)) is not None


def test_python_values_json_cannot_hold_are_refused():
    with pytest.raises(MetadataError, match="JSON cannot hold"):
        validated_metadata({"a": {1, 2}})
    with pytest.raises(MetadataError, match="inf"):
        validated_metadata({"a": float("inf")})


@pytest.mark.parametrize("raw", ['{"a": "\\ud800"}', nested(300), nested(990), '{"a": NaN}', '{"a": 1, "a": 2}'])
def test_an_upload_with_bad_metadata_is_422_and_the_tenant_keeps_working(gateway, raw):
    response = gateway.upload(metadata=raw)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("metadata")
    listing = gateway.get("/v1/documents")
    assert listing.status_code == 200 and listing.json()["total"] == 0

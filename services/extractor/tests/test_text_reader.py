"""Text files are decoded whatever their encoding; binary data is undecodable_text."""

import os

import pytest

from docflow.extractor.readers.plain_text import read_text
from docflow.shared.errors import ErrorCode, PermanentError

GERMAN = "Die Größe der Übung ist schön. Wir gehen heute über die Straße und kaufen Brötchen."
FRENCH = "The café served a naïve crème brûlée; our résumé impressed the committee in Zürich."


@pytest.mark.parametrize(("text", "data"), [
    pytest.param(GERMAN, GERMAN.encode("utf-8"), id="utf-8"),
    pytest.param(GERMAN, b"\xef\xbb\xbf" + GERMAN.encode("utf-8"), id="utf-8-bom"),
    pytest.param(GERMAN, GERMAN.encode("utf-16"), id="utf-16-bom"),
    pytest.param(GERMAN, GERMAN.encode("utf-16-le"), id="utf-16-le-no-bom"),
    pytest.param(GERMAN, GERMAN.encode("latin-1"), id="latin-1-german"),
    pytest.param(FRENCH, FRENCH.encode("latin-1"), id="latin-1-french"),
    pytest.param(FRENCH, FRENCH.encode("cp1252"), id="windows-1252"),
    pytest.param("# Notes\n\n- plain *markdown*\n", b"# Notes\n\n- plain *markdown*\n", id="ascii-markdown"),
])
def test_text_is_decoded_exactly(settings, record_progress, text, data):
    assert [(p.page, p.text) for p in read_text(data, settings, record_progress)] == [(None, text)]


@pytest.mark.parametrize("data", [
    pytest.param(os.urandom(4096), id="random-bytes"),
    pytest.param(b"\x00\x01\x02\x03" * 256, id="control-bytes"),
])
def test_binary_data_is_undecodable_text(settings, record_progress, data):
    with pytest.raises(PermanentError) as failure:
        read_text(data, settings, record_progress)
    assert failure.value.code == ErrorCode.UNDECODABLE_TEXT

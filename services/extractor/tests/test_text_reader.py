"""Text files are decoded whatever their encoding; binary data is undecodable_text."""

import os

import pytest

from docflow.extractor.readers.plain_text import read_text
from docflow.shared.errors import ErrorCode, PermanentError

GERMAN = "Die Größe der Übung ist schön. Wir gehen heute über die Straße und kaufen Brötchen."
EMOJI = "# Party 🎉 time\n\nWe ship 🚀 \u202eevif\u202c ✅"
RTL = "\u200fمرحبا بالعالم\u200e and \u05e9\u05dc\u05d5\u05dd\u200f"
CJK = "你好，世界。日本語のテキスト。"
QUOTES = "He said “don’t” – and left…"
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
    # Valid UTF-8 is never handed to detection, which garbled these.
    pytest.param(EMOJI, EMOJI.encode(), id="utf-8-emoji-and-rtl-override"),
    pytest.param("🚀", "🚀".encode(), id="utf-8-one-emoji"),
    pytest.param("字", "字".encode(), id="utf-8-one-cjk-character"),
    pytest.param(RTL, RTL.encode(), id="utf-8-rtl-marks"),
    pytest.param(CJK, CJK.encode(), id="utf-8-cjk"),
    pytest.param(EMOJI, EMOJI.encode("utf-32"), id="utf-32-bom"),
    # Too little for detection to weigh: read as Windows-1252.
    pytest.param(QUOTES, QUOTES.encode("cp1252"), id="windows-1252-smart-quotes"),
    pytest.param("é", "é".encode("cp1252"), id="windows-1252-one-byte"),
    pytest.param("It’s", "It’s".encode("cp1252"), id="windows-1252-apostrophe"),
    pytest.param("—", "—".encode("cp1252"), id="windows-1252-one-dash"),
    pytest.param("Straße", "Straße".encode("cp1252"), id="windows-1252-one-word"),
    pytest.param("€100", "€100".encode("cp1252"), id="windows-1252-euro"),
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

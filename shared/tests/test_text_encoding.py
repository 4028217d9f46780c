"""Which encoding a text file is in: a BOM, else strict UTF-8, else UTF-16 without a
BOM, else detection, with short legacy input read as Windows-1252."""

import codecs

import pytest

from docflow.shared.text_encoding import decode_text

UTF8_TEXTS = {
    "emoji and U+202E": "# Party 🎉 time\u202e reversed\u202c ✅",
    "one emoji": "🚀",
    "one CJK character": "字",
    "one accented letter": "é",
    "RTL marks": "\u200fمرحبا\u200e \u05e9\u05dc\u05d5\u05dd\u200f \u2067isolate\u2069",
    "CJK": "你好，世界。日本語のテキスト。한국어 텍스트.",
    "combining and ZWJ sequences": "e\u0301 👩\u200d👩\u200d👧 🇩🇪",
    "BMP-like start": "BMP receptor signalling in the embryo",
}


@pytest.mark.parametrize("case", list(UTF8_TEXTS))
def test_strict_utf8_always_wins(case):
    text = UTF8_TEXTS[case]
    decoded = decode_text(text.encode())
    assert decoded is not None and (decoded.text, decoded.encoding) == (text, "utf-8")


@pytest.mark.parametrize("case", list(UTF8_TEXTS))
def test_utf8_with_a_bom(case):
    text = UTF8_TEXTS[case]
    assert decode_text(codecs.BOM_UTF8 + text.encode()).text == text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32(encoding):
    text = "Grüße 👋 aus Köln — 東京 and BMP receptor"
    data = text.encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be"):
        assert not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))  # no BOM: recognised anyway
    assert decode_text(data).text == text


@pytest.mark.parametrize(("text", "encoding"), [
    pytest.param("“Hello”", "cp1252", id="cp1252-quotes-only"),
    pytest.param("He said “don’t” – and left…", "cp1252", id="cp1252-smart-quotes"),
    pytest.param("naïve café", "cp1252", id="cp1252-short"),
    pytest.param("€ 5", "cp1252", id="cp1252-euro"),
    pytest.param("é", "cp1252", id="cp1252-one-byte"),
    pytest.param("It’s", "cp1252", id="cp1252-apostrophe"),
    pytest.param("Straße", "cp1252", id="cp1252-one-word"),
    pytest.param("über", "cp1252", id="cp1252-umlaut"),
    pytest.param("Grüße aus Köln", "latin-1", id="latin-1-short"),
    pytest.param("Die Größe der Übung ist schön; wir gehen über die Straße. " * 20, "cp1252", id="cp1252-long"),
    pytest.param("Привет мир, как дела? Сегодня хорошая погода.", "cp1251", id="cp1251"),
    pytest.param("こんにちは世界、日本語のテキストです。", "shift_jis", id="shift-jis"),
    pytest.param("你好世界，我们开始吧。今天天气很好。", "gb18030", id="gb18030"),
])
def test_legacy_encodings(text, encoding):
    assert decode_text(text.encode(encoding)).text == text


def test_a_head_cut_inside_a_character_is_still_utf8():
    data = ("x" * 10 + "🚀").encode()[:-2]
    assert decode_text(data, partial=True).text == "x" * 10
    whole = decode_text(data)  # the whole file: not UTF-8 any more
    assert whole is None or whole.encoding != "utf-8"


@pytest.mark.parametrize("data", [
    pytest.param(bytes(range(256)) * 4, id="all-bytes"),
    pytest.param(b"\x00\x01\x02\x03" * 256, id="control-bytes"),
    pytest.param(b"\x7fELF\x02\x01\x01\x00" + bytes(64), id="elf"),
    pytest.param("text".encode() + b"\x00" + "more text".encode(), id="utf8-with-nul"),
    pytest.param(b"\x01\x02\x03\x04\x05\x06 some words", id="ascii-control-bytes"),
])
def test_binary_is_not_text(data):
    assert decode_text(data) is None

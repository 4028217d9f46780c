"""Text comes out as it went in: uploaded, extracted, indexed and found by search with
every character intact, whatever the script, and whichever encoding the file is in.

Valid UTF-8 is never second-guessed by encoding detection (which read "🚀" as the
GB18030 "馃殌" and emoji-rich Markdown as Cyrillic), a BOM names its encoding, and a
short legacy file is read as Windows-1252. Real gateway, workers and index: the
session stack.
"""

import pytest

TEXTS = {
    "emoji and a RIGHT-TO-LEFT OVERRIDE in Markdown": (
        "notes.md", "# Launch 🎉 day\n\nWe ship 🚀 at noon \u202eevif\u202c sharp ✅",
        "utf-8"),
    "one emoji": ("rocket.txt", "🚀", "utf-8"),
    "one CJK character": ("kanji.txt", "字", "utf-8"),
    "RTL marks, Arabic and Hebrew": (
        "rtl.txt", "\u200fمرحبا بالعالم\u200e and \u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd\u200f", "utf-8"),
    "Chinese and Japanese": ("cjk.txt", "你好，世界。日本語のテキストも検索できます。", "utf-8"),
    "UTF-8 with a BOM": ("bom.txt", "\ufeffZoë’s café 😀 naïve", "utf-8"),
    "UTF-16 with a BOM": ("utf16.txt", "Grüße 👋 aus Köln — 東京", "utf-16"),
    "cp1252 smart quotes": ("quotes.txt", "He said “don’t” – and left…", "cp1252"),
    "cp1252, one accented word": ("strasse.txt", "Straße", "cp1252"),
    "cp1252 apostrophe": ("its.txt", "It’s", "cp1252"),
}


def _expected(text: str) -> str:
    # A BOM is not text; the chunker normalises whitespace.
    return " ".join(text.removeprefix("\ufeff").split())


@pytest.fixture(scope="module")
def indexed(api_a) -> dict[str, str]:
    ids = {case: api_a.upload(name, text.encode(encoding)) for case, (name, text, encoding) in TEXTS.items()}
    for case, document_id in ids.items():
        record = api_a.wait_final(document_id)
        assert record["status"] == "completed", (case, record)
    return ids


@pytest.mark.parametrize("case", list(TEXTS))
def test_text_is_found_by_search_exactly(api_a, indexed, case):
    _, text, _ = TEXTS[case]
    expected = _expected(text)
    hits = api_a.search(expected, top_k=20)
    texts = [hit["text"] for hit in hits if hit["document_id"] == indexed[case]]
    assert texts == [expected], (case, [hit["text"] for hit in hits[:3]])

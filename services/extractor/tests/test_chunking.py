"""Chunks are token-bounded, overlap, stay on their page and read like the original."""

from itertools import pairwise

import pytest

from docflow.extractor.chunking import chunk_pages, count_tokens, split_text
from docflow.extractor.pages import PageText

SENTENCES = [
    f"Sentence number {n} talks about the {topic} and what the committee decided on it."
    for n, topic in enumerate(["budget", "harbour", "library", "railway", "school", "museum"] * 6)
]


def prose(sentences: list[str], per_paragraph: int = 4) -> str:
    paragraphs = [" ".join(sentences[i:i + per_paragraph]) for i in range(0, len(sentences), per_paragraph)]
    return "\n\n".join(paragraphs)


def shared_words(before: str, after: str) -> int:
    """How many words at the start of `after` repeat the end of `before`."""
    a, b = before.split(), after.split()
    return max((n for n in range(1, min(len(a), len(b)) + 1) if a[-n:] == b[:n]), default=0)


def test_chunks_stay_within_the_token_budget_and_cover_the_page():
    text = prose(SENTENCES)
    chunks = list(split_text(text, 40, 10))
    assert len(chunks) > 5
    assert all(count_tokens(chunk) <= 40 for chunk in chunks)
    for sentence in SENTENCES:
        assert any(sentence in chunk for chunk in chunks), sentence


def test_consecutive_chunks_overlap_by_at_most_the_overlap_budget():
    chunks = list(split_text(prose(SENTENCES), 40, 10))
    for before, after in pairwise(chunks):
        overlap = " ".join(after.split()[:shared_words(before, after)])
        assert overlap, (before, after)
        assert count_tokens(overlap) <= 10


def test_chunks_break_at_sentence_ends_and_start_sentences_when_they_can():
    chunks = list(split_text(prose(SENTENCES), 40, 20))
    assert all(chunk.endswith(".") for chunk in chunks)
    assert all(chunk.startswith("Sentence number") for chunk in chunks)


def test_no_overlap_when_the_budget_is_zero():
    chunks = list(split_text(prose(SENTENCES), 40, 0))
    assert " ".join(chunks) == " ".join(prose(SENTENCES).split())


def test_a_sentence_longer_than_the_budget_is_cut_between_words():
    endless = " ".join(f"word{n}" for n in range(100))
    chunks = list(split_text(endless, 30, 5))
    assert all(count_tokens(chunk) <= 30 for chunk in chunks)
    assert all(chunk.split()[0].startswith("word") for chunk in chunks)
    assert chunks[-1].endswith("word99")


def test_chunk_text_is_the_original_text_with_whitespace_normalised():
    text = "It's  3.5 percent,\n(roughly)   \t of the \"total\" -- isn't it?\n\n  Yes."
    assert list(split_text(text, 200, 40)) == [
        "It's 3.5 percent, (roughly) of the \"total\" -- isn't it? Yes."
    ]


def test_chunks_never_span_pages_and_keep_their_page_number():
    pages = [PageText(page=1, text=prose(SENTENCES[:10])), PageText(page=2, text=""),
             PageText(page=3, text="A short closing page.")]
    chunks = chunk_pages(pages, 40, 10)
    assert {c.page for c in chunks} == {1, 3}
    assert chunks[-1].text == "A short closing page." and chunks[-1].page == 3
    page_one = " ".join(c.text for c in chunks if c.page == 1)
    assert "closing" not in page_one


def test_indexes_run_from_zero_across_the_document_in_order():
    pages = [PageText(page=n, text=prose(SENTENCES[n * 6:(n + 1) * 6])) for n in range(4)]
    chunks = chunk_pages(pages, 30, 5)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)


def test_pages_without_numbers_keep_none():
    chunks = chunk_pages([PageText(page=None, text="Plain text has no pages.")], 200, 40)
    assert [(c.index, c.page, c.text) for c in chunks] == [(0, None, "Plain text has no pages.")]


def test_chunking_is_deterministic():
    pages = [PageText(page=1, text=prose(SENTENCES))]
    assert chunk_pages(pages, 50, 12) == chunk_pages(pages, 50, 12)


def test_default_settings_chunk_a_long_page():
    words = " ".join(SENTENCES * 3)
    chunks = chunk_pages([PageText(page=7, text=words)], 200, 40)
    assert len(chunks) > 3
    assert all(100 <= count_tokens(c.text) <= 200 for c in chunks[:-1])  # never below half


def test_overlap_must_be_below_the_chunk_size():
    with pytest.raises(ValueError):
        chunk_pages([PageText(page=1, text="x")], 20, 20)

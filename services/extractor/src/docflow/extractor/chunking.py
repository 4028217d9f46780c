"""Pages to overlapping, token-bounded chunks: the units that are embedded and found.

Tokens are counted with a regex (runs of word characters, and single punctuation
marks), not with the embedding model's tokenizer: the extractor must not load the
embedder's model or tokenizer (each worker image holds only its own stage's
libraries), and the count only has to be close. all-MiniLM-L6-v2 truncates its input
at 256 word pieces; ordinary prose runs a little over one word piece per regex token,
so the default of 200 regex tokens keeps most chunks whole.

A chunk never spans two pages, so each chunk keeps its page number. Within a page a
chunk ends at the best boundary in the second half of its token budget (paragraph,
then sentence, then line, then word), and the next chunk starts up to the overlap
budget earlier, at a sentence start where one is near. The chunk text is the
original text with its whitespace normalised, not re-joined tokens, so search
results read like the document.
"""

import re
from collections.abc import Iterable, Iterator
from enum import IntEnum

from docflow.extractor.pages import PageText
from docflow.shared.messages import Chunk

TOKEN = re.compile(r"\w+|[^\w\s]")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
# Checked against the text up to a token's end: ".", "!" or "?", maybe followed by
# closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*$")


class Boundary(IntEnum):
    """How good a place between two tokens is to end a chunk: higher is better."""

    INSIDE_WORD = 0  # no whitespace: "don|'|t", "3|.|5"
    WORD = 1
    LINE = 2
    SENTENCE = 3
    PARAGRAPH = 4


def count_tokens(text: str) -> int:
    return len(TOKEN.findall(text))


def chunk_pages(pages: Iterable[PageText], max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """All chunks of a document, indexed 0..n-1 in reading order."""
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and below max_tokens")
    chunks: list[Chunk] = []
    for page in pages:
        for text in split_text(page.text, max_tokens, overlap_tokens):
            chunks.append(Chunk(index=len(chunks), text=text, page=page.page))
    return chunks


def split_text(text: str, max_tokens: int, overlap_tokens: int) -> Iterator[str]:
    """One page's chunk texts, each at most `max_tokens` tokens."""
    spans = [match.span() for match in TOKEN.finditer(text)]
    # boundaries[i] rates a break just before token i (boundaries[0] is never used).
    boundaries = [Boundary.INSIDE_WORD] + [_boundary(text, spans[i - 1], spans[i])
                                           for i in range(1, len(spans))]
    start = 0
    while start < len(spans):
        end = _chunk_end(boundaries, start, max_tokens)
        yield " ".join(text[spans[start][0]:spans[end - 1][1]].split())
        if end == len(spans):
            return
        start = _next_start(boundaries, start, end, overlap_tokens)


def _boundary(text: str, before: tuple[int, int], after: tuple[int, int]) -> Boundary:
    gap = text[before[1]:after[0]]
    if not gap:
        return Boundary.INSIDE_WORD
    if _PARAGRAPH_BREAK.search(gap):
        return Boundary.PARAGRAPH
    if _SENTENCE_END.search(text, before[0], before[1]):
        return Boundary.SENTENCE
    if "\n" in gap:
        return Boundary.LINE
    return Boundary.WORD


def _chunk_end(boundaries: list[Boundary], start: int, max_tokens: int) -> int:
    """End (exclusive) of the chunk starting at token `start`."""
    limit = start + max_tokens
    if limit >= len(boundaries):
        return len(boundaries)
    # Not before half the budget: a sliver of a chunk carries too little to be found.
    earliest = start + max(1, max_tokens // 2)
    return max(range(earliest, limit + 1), key=lambda i: (boundaries[i], i))


def _next_start(boundaries: list[Boundary], start: int, end: int, overlap_tokens: int) -> int:
    """Start of the chunk after [start, end): up to `overlap_tokens` before `end`, at
    the best boundary there (the earliest of equals, to keep the most context)."""
    earliest = max(start + 1, end - overlap_tokens)
    if earliest >= end:
        return end
    return max(range(earliest, end), key=lambda i: (boundaries[i], -i))

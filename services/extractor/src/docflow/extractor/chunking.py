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
from operator import attrgetter

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


# One token and the whitespace after it, in one regex step, for speed: chunking runs
# on every page and should cost little next to reading the page. Which group matched
# (`lastindex`) rates the break after the token, exactly as `_boundary` would: the
# whitespace between two tokens holds a paragraph break iff it holds two newlines.
# Possessive quantifiers keep it linear on any input (no backtracking into a run).
_TOKEN_AND_GAP = re.compile(r"""
    [.!?…](?:([^\S\n]*+\n[^\S\n]*+\n\s*+)|(\s++))?
  | (?:\w++|[^\w\s])(?:([^\S\n]*+\n[^\S\n]*+\n\s*+)|([^\S\n]*+\n[^\S\n]*+)|([^\S\n]++))?
""", re.VERBOSE)
_BREAK_AFTER = {None: Boundary.INSIDE_WORD, 1: Boundary.PARAGRAPH, 2: Boundary.SENTENCE,
                3: Boundary.PARAGRAPH, 4: Boundary.LINE, 5: Boundary.WORD}
_LAST_GROUP = attrgetter("lastindex")


def split_text(text: str, max_tokens: int, overlap_tokens: int) -> Iterator[str]:
    """One page's chunk texts, each at most `max_tokens` tokens."""
    pieces = list(_TOKEN_AND_GAP.finditer(text))
    starts = list(map(re.Match.start, pieces))
    # boundaries[i] rates a break just before token i (boundaries[0] is never used).
    boundaries = [Boundary.INSIDE_WORD, *map(_BREAK_AFTER.__getitem__, map(_LAST_GROUP, pieces[:-1]))]
    start = 0
    while start < len(starts):
        end = _chunk_end(boundaries, start, max_tokens)
        # Up to the next token: the whitespace in between goes with the normalising.
        stop = starts[end] if end < len(starts) else len(text)
        yield " ".join(text[starts[start]:stop].split())
        if end == len(starts):
            return
        start = _next_start(boundaries, start, end, overlap_tokens)


def _boundary(text: str, before: tuple[int, int], after: tuple[int, int]) -> Boundary:
    """The rating of the break between two tokens (what `_TOKEN_AND_GAP` computes in bulk)."""
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
    # The best break, the latest of equals: max((boundaries[i], i) for i in the window).
    window = boundaries[earliest:limit + 1]
    return limit - window[::-1].index(max(window))


def _next_start(boundaries: list[Boundary], start: int, end: int, overlap_tokens: int) -> int:
    """Start of the chunk after [start, end): up to `overlap_tokens` before `end`, at
    the best boundary there (the earliest of equals, to keep the most context)."""
    earliest = max(start + 1, end - overlap_tokens)
    if earliest >= end:
        return end
    window = boundaries[earliest:end]
    return earliest + window.index(max(window))

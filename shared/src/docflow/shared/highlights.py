"""Keyword terms and highlights: text split into search terms the way the BM25 index does.

LanceDB's full-text index (configured from `FTS_OPTIONS` in the indexer) splits text
on everything that is not a letter or digit, drops tokens over 40 characters, lower-
cases, removes the English stop words below, folds accents to ASCII and stems with
Snowball's English (Porter2) stemmer. Pinecone's sparse vectors (the indexer's
`sparse.py`) use these same terms, and a hit's highlights are the spans of its text
whose term is one of the query's terms, so what is highlighted is what matched.
"""

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

# Tantivy's (and Lucene's) English stop words, given to LanceDB explicitly as its
# custom list so both sides drop exactly these.
STOP_WORDS = frozenset((
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with").split())
MAX_TOKEN_CHARS = 40
# Letters and digits (Unicode), as tantivy's simple tokenizer splits.
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class Token:
    term: str   # the normalised, stemmed term
    start: int  # [start, end) in the original text
    end: int


@lru_cache(maxsize=1)
def _stemmer():
    return snowballstemmer.stemmer("english")


def _fold(word: str) -> str:
    """Accents off (café -> cafe), as the index's ASCII folding does for Latin letters."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=65536)
def _term(word: str) -> str | None:
    """The word's term, or None for a word the index drops. Cached: Snowball's pure-Python
    stemmer costs ~20 us a word (highlighting ten 200-word hits took ~45 ms), while a
    corpus's vocabulary repeats, so nearly every word after the first queries is a hit."""
    if len(word) > MAX_TOKEN_CHARS:
        return None
    lowered = word.lower()
    if lowered in STOP_WORDS:
        return None
    return _stemmer().stemWord(_fold(lowered))


def tokens(text: str) -> Iterator[Token]:
    for match in _WORD.finditer(text):
        term = _term(match.group())
        if term is not None:
            yield Token(term, match.start(), match.end())


def terms(text: str) -> list[str]:
    """The text's terms in order, repeats kept (term frequencies count them)."""
    return [token.term for token in tokens(text)]


def highlights(query: str, text: str) -> list[tuple[int, int]]:
    """[start, end) character spans of `text` whose term is one of `query`'s terms."""
    wanted = set(terms(query))
    if not wanted:
        return []
    return [(token.start, token.end) for token in tokens(text) if token.term in wanted]

"""The chunker's one-pass regex cuts exactly where the rules, applied token by token, say.

`split_text` rates every break with one regex step per token (it runs on every page
and must cost little next to pypdf); `_boundary` states the rules one break at a
time. Here both run on awkward and random texts and must agree chunk for chunk.
"""

import random
import time

import pytest

from docflow.extractor.chunking import TOKEN, Boundary, _boundary, split_text


def rule_by_rule(text: str, max_tokens: int, overlap_tokens: int) -> list[str]:
    """The reference: every break rated by `_boundary`, the best one picked by `max`."""
    spans = [match.span() for match in TOKEN.finditer(text)]
    boundaries = [Boundary.INSIDE_WORD] + [_boundary(text, spans[i - 1], spans[i]) for i in range(1, len(spans))]
    chunks, start = [], 0
    while start < len(spans):
        limit = start + max_tokens
        if limit >= len(spans):
            end = len(spans)
        else:
            earliest = start + max(1, max_tokens // 2)
            end = max(range(earliest, limit + 1), key=lambda i: (boundaries[i], i))
        chunks.append(" ".join(text[spans[start][0]:spans[end - 1][1]].split()))
        if end == len(spans):
            break
        earliest = max(start + 1, end - overlap_tokens)
        start = end if earliest >= end else max(range(earliest, end), key=lambda i: (boundaries[i], -i))
    return chunks


AWKWARD = [
    "",
    "   \n\n  \t ",
    "one",
    "Ends here. Then another!  And? Yes…\tTabbed.\r\nWindows line.\r\n\r\nWindows paragraph.",
    "Quote: \"He left.\" Then  she said 'no.' (Really.) [Done.]\n \n\nNext.",
    "Numbers 3.5 and 1,000.00; don't split don't.\fForm feed.\vVertical tab.\x1cSeparator.",
    "Unicode: naïve café — déjà vu. Ελληνικά κείμενα. 日本語の文。終わり。\u2028line sep\u2029para sep",
    "a" * 500 + " " + "b " * 300,
    "\n".join("x" for _ in range(300)),
    ".!?" * 200 + "\n\n\n" + "end",
    " " * 5000 + "\n" + " " * 5000 + "word",
]
PIECES = ["word", "Word", "3", "3.5", ".", "!", "?", "…", ",", ";", "'", "\"", ")", "(", "é", "日本",
          "—", "-", "don't", "e.g."]
GAPS = ["", " ", " ", " ", " ", "  ", "\n", "\n\n", " \n ", "\t", "\r\n", "\r\n\r\n", "\n \n", "\u00a0", "\f"]


def random_text(rng: random.Random, tokens: int) -> str:
    return "".join(rng.choice(PIECES) + rng.choice(GAPS) for _ in range(tokens))


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize(("max_tokens", "overlap"), [(200, 40), (16, 0), (17, 16), (40, 10)])
def test_awkward_texts_are_cut_by_the_rules(text, max_tokens, overlap):
    assert list(split_text(text, max_tokens, overlap)) == rule_by_rule(text, max_tokens, overlap)


def test_random_texts_are_cut_by_the_rules():
    rng = random.Random(6)
    for _ in range(300):
        text = random_text(rng, rng.randint(0, 600))
        max_tokens = rng.choice([16, 20, 50, 200])
        overlap = rng.randint(0, max_tokens - 1)
        assert list(split_text(text, max_tokens, overlap)) == rule_by_rule(text, max_tokens, overlap), text


def test_a_huge_run_of_whitespace_costs_linear_time():
    text = "start\n" + " \t" * 200_000 + "\nend " + "\n" + " " * 200_000 + "stop"
    started = time.perf_counter()
    chunks = list(split_text(text, 200, 40))
    assert time.perf_counter() - started < 1.0
    assert chunks == ["start end stop"]

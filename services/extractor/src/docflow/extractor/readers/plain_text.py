"""Plain text and Markdown: decoded in whatever encoding the bytes are in.

charset-normalizer recognises BOMs, UTF-8, UTF-16 and the legacy single-byte code
pages. Markdown keeps its markup: it reads fine in search results.
"""

from charset_normalizer import CharsetMatch, CharsetMatches, from_bytes

from docflow.extractor.pages import PageText, Progress
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings

# Several code pages often decode Western European text equally well (the same
# "chaos" and "coherence" scores), and charset-normalizer then returns whichever
# sorts first -- cp1250 turns "naïve" into "naďve". Windows-1252, the superset of
# latin-1 that WHATWG decodes every "latin-1" label as, is the likeliest of those.
PREFERRED_ON_A_TIE = "cp1252"


def read_text(data: bytes, settings: Settings, progress: Progress) -> list[PageText]:
    match = _best_match(from_bytes(data))
    if match is None:
        raise PermanentError(ErrorCode.UNDECODABLE_TEXT, "the text's encoding cannot be determined")
    text = str(match)  # a BOM is dropped by the decoding
    if "\x00" in text:
        # NULs survive only when binary data decodes "successfully" as UTF-8.
        raise PermanentError(ErrorCode.UNDECODABLE_TEXT, "the file holds binary data, not text")
    return [PageText(page=None, text=text)]


def _best_match(matches: CharsetMatches) -> CharsetMatch | None:
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        same_score = (match.chaos, match.coherence) == (best.chaos, best.coherence)
        if same_score and PREFERRED_ON_A_TIE in match.could_be_from_charset:
            return match
    return best

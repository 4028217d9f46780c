"""Bytes to text: which encoding a text file is in, decided the same way everywhere.

The gateway uses it to tell text from binary when it sniffs an upload, the extractor
to decode the whole file; both must agree, or a file accepted as text would fail (or
read garbled) later. The order matters and is the point of this module:

1. A byte-order mark names its encoding (UTF-8, UTF-16 or UTF-32): decoded as such.
2. Bytes that are strict UTF-8 *are* UTF-8. Detection is never asked: on short or
   emoji-rich input it happily calls valid UTF-8 GB18030 or Shift_JIS ("🚀" became
   "馃殌"), and no legacy file of any length is also valid UTF-8 by accident.
3. UTF-16 without a BOM, recognised by the NUL in every other byte of ASCII text.
4. Only bytes that are none of these go to detection (charset-normalizer). With
   few non-ASCII bytes there is not enough evidence for it to weigh (it picks
   EBCDIC for a cp1252 “quote”), so short input is read as Windows-1252, what
   unlabelled Western text almost always is, when that gives clean text.

Whatever the encoding, the result must look like text: no NULs and (nearly) no other
control characters, or the bytes are binary and `decode_text` says None.
"""

import codecs
import unicodedata
from dataclasses import dataclass

from charset_normalizer import CharsetMatch, from_bytes

# BOMs, longest first: UTF-32-LE's BOM begins with UTF-16-LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Windows-1252: the superset of latin-1 that WHATWG decodes every "latin-1" label as,
# and the likeliest legacy encoding of a Western text file.
WESTERN_DEFAULT = "cp1252"
# Below this many non-ASCII bytes detection has nothing to weigh: "naïve café" (2
# bytes) comes back as Urdu cp1006, "“Hello”" as EBCDIC. A sentence in Cyrillic or
# Japanese has more than this, and there detection is right.
SHORT_INPUT_NON_ASCII_BYTES = 8
# On a tie (same chaos and coherence) charset-normalizer returns whichever code page
# sorts first (cp1250 turns "naïve" into "naďve"): prefer the most used ones, in
# order of how much of the legacy web each one decodes.
PREFERRED_ON_A_TIE = ("cp1252", "gb18030", "cp932", "cp1251", "cp949", "big5", "cp1250", "cp1256")
# Control characters that ordinary text holds: whitespace, and ESC (ANSI colours in logs).
_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")
# Text may hold a stray control character or two; binary data is full of them.
MAX_CONTROL_SHARE = 0.01
# UTF-16 without a BOM: in ASCII-range text every other byte is NUL. Half of the
# characters in the ASCII range is already a lot of non-Latin text.
_UTF16_MIN_NUL_SHARE = 0.4


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # a Python codec name


def decode_text(data: bytes, *, partial: bool = False) -> DecodedText | None:
    """The text in `data` and its encoding, or None if `data` is not text.

    `partial`: `data` is the head of a longer file, so a multi-byte character cut at
    its end is not an error (the gateway sniffs the first 64 KiB).
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _strict(data[len(bom):], encoding, partial)
            if text is not None:
                return _if_text(text, encoding)
            break  # a BOM followed by something else: let the content decide
    text = _strict(data, "utf-8", partial)
    if text is not None and looks_like_text(text):
        return DecodedText(text, "utf-8")
    # ASCII-range UTF-16 is valid UTF-8 too, full of NULs: try it before giving up.
    utf16 = _utf16_without_bom(data, partial)
    if utf16 is not None:
        return utf16
    if b"\x00" in data:
        return None  # NULs outside UTF-16/32 mean binary: no legacy text holds them
    return _detected(data)


def looks_like_text(text: str) -> bool:
    if "\x00" in text:
        return False
    controls = sum(1 for ch in text if ch not in _TEXT_CONTROLS and unicodedata.category(ch) == "Cc")
    return controls <= len(text) * MAX_CONTROL_SHARE


def _if_text(text: str, encoding: str) -> DecodedText | None:
    return DecodedText(text, encoding) if looks_like_text(text) else None


def _strict(data: bytes, encoding: str, partial: bool) -> str | None:
    try:
        return codecs.getincrementaldecoder(encoding)("strict").decode(data, final=not partial)
    except UnicodeDecodeError:
        return None


def _utf16_without_bom(data: bytes, partial: bool) -> DecodedText | None:
    pairs = len(data) // 2
    if pairs == 0 or (len(data) % 2 and not partial):
        return None
    nul_at_even = data[0:pairs * 2:2].count(0) / pairs
    nul_at_odd = data[1:pairs * 2:2].count(0) / pairs
    if nul_at_odd >= _UTF16_MIN_NUL_SHARE and nul_at_even == 0:
        encoding = "utf-16-le"
    elif nul_at_even >= _UTF16_MIN_NUL_SHARE and nul_at_odd == 0:
        encoding = "utf-16-be"
    else:
        return None
    text = _strict(data[:pairs * 2] if partial else data, encoding, partial)
    return None if text is None else _if_text(text, encoding)


def _detected(data: bytes) -> DecodedText | None:
    non_ascii = sum(1 for byte in data if byte >= 0x80)
    if non_ascii < SHORT_INPUT_NON_ASCII_BYTES:
        western = _western(data)
        if western is not None:
            return western
    best = _best_match(data)
    if best is None:
        return None
    match, encoding = best
    return _if_text(str(match), encoding)


def _western(data: bytes) -> DecodedText | None:
    """Windows-1252, if it decodes every byte (five are unassigned) to clean text."""
    try:
        text = data.decode(WESTERN_DEFAULT)
    except UnicodeDecodeError:
        return None
    return _if_text(text, WESTERN_DEFAULT)


def _best_match(data: bytes) -> tuple[CharsetMatch, str] | None:
    """charset-normalizer's best match and the encoding to name it by (a match
    stands for every code page that decodes the bytes to the same text)."""
    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    for encoding in PREFERRED_ON_A_TIE:
        for match in tied:
            if encoding in match.could_be_from_charset:
                return match, encoding
    return best, best.encoding

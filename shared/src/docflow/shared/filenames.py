"""Client-supplied file names, made safe to store, show and log.

Shared: the gateway cleans an upload's name with it, the extractor the name a fetched
URL's server gives (Content-Disposition) or its path's last segment.

The name is display data only (the original is stored under a fixed key), but it
is echoed to other tools and terminals: keep the last path component, drop control
and invisible formatting characters (including bidi overrides that disguise an
extension), and bound its length without losing the extension.
"""

import unicodedata
from urllib.parse import unquote, urlsplit

MAX_FILENAME_BYTES = 255
FALLBACK_FILENAME = "upload"
_MAX_SUFFIX_CHARS = 16
# Control, format (bidi overrides, zero-width), surrogates, private use, unassigned,
# line and paragraph separators.
_DROPPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def sanitize_filename(raw: str | None) -> str:
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES).strip()
    if name in ("", ".", ".."):
        return FALLBACK_FILENAME
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode()) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix) > _MAX_SUFFIX_CHARS:
        stem, suffix = name, ""
    tail = f".{suffix}" if suffix else ""
    budget = MAX_FILENAME_BYTES - len(tail.encode())
    # Cut on a character boundary: decode what fits, ignoring a split last character.
    stem = stem.encode()[:budget].decode(errors="ignore").rstrip()
    return (stem + tail) if stem else FALLBACK_FILENAME


def filename_from_url(url: str) -> str:
    """A document's name from its URL: the path's last segment (percent-decoded), else
    the host; cleaned like an upload's name."""
    parts = urlsplit(url)
    segment = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1], errors="replace")
    return sanitize_filename(segment or parts.hostname or "")

"""Plain text and Markdown: decoded in whatever encoding the bytes are in.

The encoding is decided by `docflow.shared.text_encoding`, the rules the gateway
sniffed the upload with: a BOM, else strict UTF-8, else UTF-16 without a BOM, else
detection. Markdown keeps its markup: it reads fine in search results.
"""

from docflow.extractor.pages import PageText, Progress
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings
from docflow.shared.text_encoding import decode_text


def read_text(data: bytes, settings: Settings, progress: Progress) -> list[PageText]:
    decoded = decode_text(data)  # a BOM is dropped by the decoding
    if decoded is None:
        # Binary data (NULs, control bytes) or bytes no encoding makes sense of; the
        # gateway saw text in the first 64 KiB, so the rest is to blame.
        raise PermanentError(ErrorCode.UNDECODABLE_TEXT,
                             "the file is not text in any encoding (binary data, or an unknown encoding)")
    return [PageText(page=None, text=decoded.text)]

"""Checks on an Office (OPC) zip before any parser inflates it: zip and entity bombs.

python-docx reads every part a document relates to fully into memory and parses it
with lxml: a 450 KB DOCX whose document.xml inflates to 400 MB took 885 MB of memory
here before lxml gave up. So, from the zip's central directory alone (nothing
inflated yet):

- at most MAX_ENTRIES entries;
- the sizes the entries declare add up to at most DOCFLOW_MAX_DOCX_UNCOMPRESSED_BYTES.
  Declared sizes can be trusted as bounds: Python's zipfile never inflates an entry
  beyond its declared size (and fails the CRC check if the data was longer);
- no entry over RATIO_CHECK_FROM_BYTES inflates more than MAX_COMPRESSION_RATIO times
  (Office XML compresses ~5-20x; bombs compress 1000x).

Then every XML part is streamed (within those bounds) and refused if it declares a
DTD: OPC forbids DTD declarations in a package (ECMA-376 Part 2, M1.14), and a DTD is
where entity bombs ("billion laughs") live. lxml, which python-docx uses with
`resolve_entities=False`, also stops at libxml2's entity amplification limit; this
refuses such a file outright, with a clear reason, whatever the parser version does.
"""

import zipfile
from io import BytesIO

from docflow.shared.errors import ErrorCode, PermanentError

MAX_ENTRIES = 10_000
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_FROM_BYTES = 1024 * 1024
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_DTD_MARKERS = tuple(marker.encode(encoding) for marker in ("<!DOCTYPE", "<!ENTITY")
                     for encoding in ("utf-8", "utf-16-le", "utf-16-be"))
_CHUNK = 1024 * 1024


def _too_large(reason: str) -> PermanentError:
    return PermanentError(ErrorCode.TOO_LARGE, f"the file is refused before decompression: {reason}")


def check_office_zip(data: bytes, max_uncompressed_bytes: int) -> None:
    """Raise `PermanentError` (too_large or corrupt_file) unless the zip is safe to open."""
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise PermanentError(ErrorCode.CORRUPT_FILE,
                             f"the file is not a readable zip archive: {exc}") from exc
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise _too_large(f"it holds {len(entries)} zip entries; the limit is {MAX_ENTRIES}")
        total = sum(entry.file_size for entry in entries)
        if total > max_uncompressed_bytes:
            raise _too_large(f"its entries inflate to {total} bytes; the limit is {max_uncompressed_bytes}")
        for entry in entries:
            ratio = entry.file_size / max(entry.compress_size, 1)
            if entry.file_size > RATIO_CHECK_FROM_BYTES and ratio > MAX_COMPRESSION_RATIO:
                raise _too_large(f"entry {entry.filename!r} inflates {ratio:.0f} times "
                                 f"(limit {MAX_COMPRESSION_RATIO}); that is a zip bomb's ratio")
        for entry in entries:
            if entry.filename.lower().endswith(_XML_SUFFIXES):
                _refuse_dtd(archive, entry)


def _refuse_dtd(archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> None:
    overlap = max(len(marker) for marker in _DTD_MARKERS) - 1
    tail = b""
    try:
        with archive.open(entry) as part:
            while chunk := part.read(_CHUNK):
                window = tail + chunk
                if any(marker in window for marker in _DTD_MARKERS):
                    raise PermanentError(
                        ErrorCode.CORRUPT_FILE,
                        f"part {entry.filename!r} declares a DTD or XML entities, which Office "
                        "packages must not (ECMA-376 Part 2); refused, as entity expansion could "
                        "exhaust memory")
                tail = window[-overlap:]
    except PermanentError:
        raise
    except (zipfile.BadZipFile, RuntimeError, ValueError, OSError, EOFError) as exc:
        # zlib errors, CRC mismatches, encrypted entries, truncated archives
        reason = f"zip entry {entry.filename!r} cannot be read: {type(exc).__name__}: {exc}"
        raise PermanentError(ErrorCode.CORRUPT_FILE, reason) from exc

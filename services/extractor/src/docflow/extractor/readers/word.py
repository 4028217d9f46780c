"""DOCX: paragraphs and tables in document order, via python-docx.

Table rows become one line each, their cells' text joined by " | ", so a row stays
readable (and searchable) as a unit. The zip is checked for zip and entity bombs
before python-docx inflates anything (zip_safety.py).
"""

from io import BytesIO

import docx
from docx.table import Table, _Cell, _Row
from docx.text.paragraph import Paragraph

from docflow.extractor.failures import NOT_THE_INPUTS_FAULT
from docflow.extractor.pages import PageText, Progress
from docflow.extractor.readers.zip_safety import check_office_zip
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings

CELL_SEPARATOR = " | "


def read_docx(data: bytes, settings: Settings, progress: Progress) -> list[PageText]:
    check_office_zip(data, settings.max_docx_uncompressed_bytes)
    try:
        document = docx.Document(BytesIO(data))
        blocks = [_block_text(block) for block in document.iter_inner_content()]
    except NOT_THE_INPUTS_FAULT:
        raise
    except Exception as exc:
        # BadZipFile (not a zip), KeyError (a zip without [Content_Types].xml),
        # ValueError (another Office format), XMLSyntaxError (damaged XML), ...
        raise PermanentError(ErrorCode.CORRUPT_FILE,
                             f"the DOCX cannot be read: {type(exc).__name__}: {exc}") from exc
    # Paragraphs are separated by a blank line so chunking can prefer to break there.
    text = "\n\n".join(block for block in blocks if block.strip())
    return [PageText(page=None, text=text)]


def _block_text(block: Paragraph | Table) -> str:
    if isinstance(block, Table):
        rows = (_row_text(row) for row in block.rows)
        return "\n".join(row for row in rows if row)
    return block.text


def _row_text(row: _Row) -> str:
    # A cell spanning several grid columns comes back once per column: keep it once.
    cells = [_cell_text(cell) for cell in dict.fromkeys(row.cells)]
    return CELL_SEPARATOR.join(cells) if any(cells) else ""


def _cell_text(cell: _Cell) -> str:
    # Cells hold paragraphs and even nested tables; flatten them onto the row's line.
    return " ".join(" ".join(_block_text(block) for block in cell.iter_inner_content()).split())

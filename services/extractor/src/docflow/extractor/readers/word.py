"""DOCX: paragraphs and tables in document order, via python-docx, and the text of
the pictures in them by OCR.

Table rows become one line each, their cells' text joined by " | ", so a row stays
readable (and searchable) as a unit. A picture's text (a scanned page pasted into
Word, a screenshot of a table) is read by Tesseract and placed where the picture
stands; pictures are held to the same limits as an uploaded image (Pillow's pixel
limit, `too_large`; at most DOCFLOW_MAX_PDF_PAGES of them), and one that cannot be
decoded (EMF, WMF, SVG: formats Pillow cannot render) is skipped, as a broken picture
in a PDF is. The zip is checked for zip and entity bombs before python-docx inflates
anything (zip_safety.py).
"""

import warnings
from io import BytesIO

import docx
import structlog
from docx.opc.part import Part
from docx.table import Table, _Cell, _Row
from docx.text.paragraph import Paragraph
from PIL import Image

from docflow.extractor.failures import NOT_THE_INPUTS_FAULT
from docflow.extractor.ocr import ocr_image
from docflow.extractor.pages import PageText, Progress
from docflow.extractor.readers.zip_safety import check_office_zip
from docflow.shared import metrics
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings

log = structlog.get_logger(__name__)

CELL_SEPARATOR = " | "
# DrawingML pictures (a:blip) and legacy VML ones (v:imagedata), by relationship id.
_PICTURE_IDS = ".//a:blip/@r:embed | .//*[local-name()='imagedata']/@r:id"


class _Pictures:
    """OCR of a document's pictures, each image part once however often it is shown."""

    def __init__(self, part: Part, settings: Settings) -> None:
        self.part = part
        self.settings = settings
        self.read: dict[str, str] = {}  # partname -> text

    def text_in(self, paragraph: Paragraph) -> str:
        texts = []
        for relationship_id in paragraph._p.xpath(_PICTURE_IDS):
            image_part = self.part.related_parts.get(relationship_id)
            if image_part is None:  # a dangling or external reference: nothing to read
                continue
            name = str(image_part.partname)
            if name not in self.read:
                self.read[name] = self._ocr(name, image_part.blob)
            texts.append(self.read[name])
        return "\n".join(text for text in texts if text)

    def _ocr(self, name: str, blob: bytes) -> str:
        if len(self.read) >= self.settings.max_pdf_pages:
            raise PermanentError(ErrorCode.TOO_LARGE, f"the DOCX holds more than {self.settings.max_pdf_pages} "
                                                      "pictures to read by OCR")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                picture = Image.open(BytesIO(blob))  # reads the header only: the size, not the pixels
                width, height = picture.size
                if width * height > Image.MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"{width * height} pixels")
                picture.load()
        except NOT_THE_INPUTS_FAULT:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PermanentError(ErrorCode.TOO_LARGE,
                                 f"a picture in the DOCX is too large to decode safely ({name}: {exc}); the "
                                 f"limit is {Image.MAX_IMAGE_PIXELS} pixels") from exc
        except Exception as exc:
            log.warning("skipping a DOCX picture that cannot be decoded", picture=name, error=str(exc))
            return ""
        text = ocr_image(picture, self.settings.ocr_languages).strip()
        metrics.PAGES_OCR.labels("docx").inc()
        return text


def read_docx(data: bytes, settings: Settings, progress: Progress) -> list[PageText]:
    check_office_zip(data, settings.max_docx_uncompressed_bytes)
    try:
        document = docx.Document(BytesIO(data))
        pictures = _Pictures(document.part, settings)
        blocks = [_block_text(block, pictures) for block in document.iter_inner_content()]
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


def _block_text(block: Paragraph | Table, pictures: _Pictures) -> str:
    if isinstance(block, Table):
        rows = (_row_text(row, pictures) for row in block.rows)
        return "\n".join(row for row in rows if row)
    pictured = pictures.text_in(block)
    return f"{block.text}\n{pictured}".strip("\n") if pictured else block.text


def _row_text(row: _Row, pictures: _Pictures) -> str:
    # A cell spanning several grid columns comes back once per column: keep it once.
    cells = [_cell_text(cell, pictures) for cell in dict.fromkeys(row.cells)]
    return CELL_SEPARATOR.join(cells) if any(cells) else ""


def _cell_text(cell: _Cell, pictures: _Pictures) -> str:
    # Cells hold paragraphs and even nested tables; flatten them onto the row's line.
    return " ".join(" ".join(_block_text(block, pictures) for block in cell.iter_inner_content()).split())

"""Sample documents made on the fly, one per supported format, for tests and demos.

Each takes the sentences it must contain, so a test can search for exactly what it
put in. Images are rendered large enough for Tesseract to read reliably.
"""

import io
import textwrap

from docx import Document
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont


def pdf(pages: list[str]) -> bytes:
    """A text PDF, one string per page."""
    doc = FPDF()
    doc.set_font("helvetica", size=12)
    for text in pages:
        doc.add_page()
        doc.multi_cell(0, 6, text)
    return bytes(doc.output())


def text_image(text: str, width: int = 1700) -> Image.Image:
    """White page with black text, about 300 dpi text size."""
    font = ImageFont.load_default(size=44)
    lines = textwrap.wrap(text, width=58)
    image = Image.new("L", (width, 120 + 64 * len(lines)), color=255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((60, 60 + 64 * i), line, fill=0, font=font)
    return image


def png(text: str) -> bytes:
    out = io.BytesIO()
    text_image(text).save(out, "PNG")
    return out.getvalue()


def scanned_pdf(pages: list[str]) -> bytes:
    """An image-only PDF, as a scanner makes: no text layer at all."""
    images = [text_image(text).convert("RGB") for text in pages]
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=150.0, save_all=True, append_images=images[1:])
    return out.getvalue()


def docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    document = Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, cell in enumerate(row):
                grid.cell(r, c).text = cell
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def text(paragraphs: list[str], encoding: str = "utf-8") -> bytes:
    return "\n\n".join(paragraphs).encode(encoding)

"""What every reader produces: the text of each page, as stored in pages.json."""

from collections.abc import Callable

from pydantic import BaseModel, TypeAdapter


class PageText(BaseModel):
    # 1-based page (PDF) or frame (image) number; None where the format has no fixed
    # pages (DOCX pagination depends on the renderer; plain text has none).
    page: int | None
    text: str


PAGES_JSON = TypeAdapter(list[PageText])

# Readers call this as they go: (pages done, pages in all).
Progress = Callable[[int, int], None]


def page_count(pages: list[PageText]) -> int | None:
    """Pages the document has (blank ones included), or None if its format has none."""
    return sum(1 for page in pages if page.page is not None) or None

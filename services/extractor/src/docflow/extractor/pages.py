"""What every reader produces: the text of each page (`PageText`, an entry of pages.json,
whose codec is docflow.shared.artifacts), and how readers report their progress."""

import time
from collections.abc import Callable

from docflow.shared.artifacts import PageText

# Readers call this as they go: (pages done, pages in all).
Progress = Callable[[int, int], None]


def page_count(pages: list[PageText]) -> int | None:
    """Pages the document has (blank ones included), or None if its format has none."""
    return sum(1 for page in pages if page.page is not None) or None


# Progress is written at most this often while pages are read: a status write (a Redis
# round trip) per page would cost more than reading a page of a text PDF.
PROGRESS_INTERVAL_SECONDS = 0.5


class Every:
    """True at most once per `seconds`; the first call is due unless `wait_first`."""

    def __init__(self, seconds: float = PROGRESS_INTERVAL_SECONDS, wait_first: bool = False) -> None:
        self.seconds = seconds
        self.next = time.monotonic() + seconds if wait_first else float("-inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + self.seconds
        return True

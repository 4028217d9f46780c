"""HTML pages (fetched URLs only): reduced to their main text with trafilatura.

A web page's text is mostly not its content: navigation, cookie banners, footers,
"related articles". Chunked as they are, every page of a site would share chunks
that match every query. trafilatura (maintained, the best-scoring open-source
main-content extractor in its own and in independent benchmarks) keeps the article:
headings, paragraphs, lists and tables, without the page's furniture. The page is
handed over as bytes: trafilatura finds the encoding (BOM, the meta charset, then
detection). The page stays stored as fetched, so a reprocess extracts it again
(with a newer trafilatura, say) without fetching it again.
"""

import trafilatura

from docflow.extractor.failures import NOT_THE_INPUTS_FAULT
from docflow.extractor.pages import PageText, Progress
from docflow.shared.errors import ErrorCode, PermanentError
from docflow.shared.settings import Settings

NO_MAIN_TEXT = "the page has no main text (only navigation, boilerplate or nothing at all)"


def read_html(data: bytes, settings: Settings, progress: Progress) -> list[PageText]:
    try:
        # favor_recall: a short page (a notice, a FAQ entry) is kept rather than judged
        # boilerplate; comments below an article are not content.
        text = trafilatura.extract(data, include_comments=False, include_tables=True,
                                   favor_recall=True, deduplicate=False)
    except NOT_THE_INPUTS_FAULT:
        raise
    except Exception as exc:
        raise PermanentError(ErrorCode.CORRUPT_FILE, f"the HTML page could not be parsed: {exc}") from None
    if not text or not text.strip():
        raise PermanentError(ErrorCode.EMPTY_DOCUMENT, NO_MAIN_TEXT)
    progress(1, 1)
    return [PageText(page=None, text=text)]

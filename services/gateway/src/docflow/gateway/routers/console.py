"""/console: the browser console, static files from the gateway's own package.

No build step and no other web server: the files in docflow/gateway/console/ are
served as they are, and only they (a fixed list, no path from the request reaches the
file system). Every response carries a strict Content-Security-Policy: scripts and
styles from this origin only, no inline code, no plugins, no framing, requests to this
origin only. The console renders documents' names, metadata and text as text, never
as HTML (docs/architecture.md, "The console"); the policy is the second wall, so an
injected element could not run a script even if one got through.
"""

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import RedirectResponse, Response

router = APIRouter(tags=["console"], include_in_schema=False)

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# What may be served, and as what. Anything else under /console is a 404.
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "documents.js": "text/javascript; charset=utf-8",
    "contents.js": "text/javascript; charset=utf-8",
    "search.js": "text/javascript; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
}
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Small files that change with each release: revalidate rather than serve a stale mix.
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return Response((CONSOLE_DIR / name).read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/console")
def console_page() -> Response:
    return _asset("index.html")


@router.get("/console/")
def console_page_slash() -> RedirectResponse:
    # One address for the page, so its relative paths mean one thing.
    return RedirectResponse("/console", status_code=status.HTTP_308_PERMANENT_REDIRECT)


@router.get("/console/{name}")
def console_asset(name: str) -> Response:
    return _asset(name)

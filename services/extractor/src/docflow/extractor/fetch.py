"""Fetching a document submitted as a URL: the extractor's first step for it.

The gateway never fetches (it only checks the URL's form): fetching takes seconds to
minutes and belongs on a worker that retries, and a fetch from inside the deployment
is the SSRF risk, kept to one place. Here, for the URL and every redirect:

- the address rules of docflow.shared.url_safety: the host is resolved once, every
  address it resolves to is checked, and the connection goes to a checked address
  (the URL is rewritten to it; `Host` and TLS's SNI and certificate check keep the
  name), so the name is never resolved again between the check and the connect (DNS
  rebinding). Proxies from the environment are ignored for the same reason;
- redirects are followed by hand, each checked like the first URL, at most
  DOCFLOW_FETCH_MAX_REDIRECTS of them;
- time: DOCFLOW_FETCH_CONNECT_TIMEOUT_SECONDS per connect, _READ_ per read, _TOTAL_
  for the whole fetch (redirects included, checked between reads, so a server that
  drips a byte at a time is cut off too);
- size: DOCFLOW_MAX_UPLOAD_BYTES, as for an upload: a declared Content-Length over it
  is refused before the body is read, and the body (decompressed) is counted as it
  streams in and abandoned at the first byte over;
- the type is judged by content (docflow.shared.content_types.sniff), the server's
  Content-Type only telling an HTML page that opens unusually from plain text.

Failures are PipelineErrors with url_* codes: transient ones (connect errors, 5xx,
408, 429, timeouts, a resolver failing for now) are retried by the stage's retry
policy, permanent ones (a refused address, another 4xx, too large, unsupported, a
host that does not exist, a bad certificate) fail the document at once.
"""

import email.message
import logging
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
import structlog

from docflow.shared.content_types import HTML, SNIFF_BYTES, TEXT_TYPES, looks_like_html, sniff
from docflow.shared.errors import ErrorCode, PermanentError, TransientError
from docflow.shared.filenames import FALLBACK_FILENAME, filename_from_url, sanitize_filename
from docflow.shared.settings import Settings
from docflow.shared.url_safety import (
    ParsedUrl,
    ResolutionFailed,
    Resolver,
    UrlRefused,
    parse_url,
    resolve_checked,
    system_resolver,
)

log = structlog.get_logger(__name__)
# httpx logs every request's full URL at INFO: a presigned URL's query holds its
# signature, which has no place in logs. Failures are logged by the task, without it.
logging.getLogger("httpx").setLevel(logging.WARNING)

USER_AGENT = "docflow-fetch/1.0 (+https://github.com/docflow)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Worth asking again later: the server is overloaded, restarting or rate limiting.
TRANSIENT_STATUSES = frozenset({408, 425, 429})
_HTML_MEDIA_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str  # a ContentType's value, or HTML
    filename: str
    url: str  # where the body came from (after redirects)


def fetch(url: str, settings: Settings, resolver: Resolver = system_resolver,
          verify: ssl.SSLContext | bool = True) -> Fetched:
    """The document at `url`, its judged type and a file name; PipelineError otherwise.
    `verify`: how TLS certificates are checked (the default CAs; tests pass their own)."""
    deadline = time.monotonic() + settings.fetch_total_timeout_seconds
    current = url
    with httpx.Client(trust_env=False, follow_redirects=False, verify=verify,
                      headers={"User-Agent": USER_AGENT, "Accept": "*/*"}) as client:
        for _ in range(settings.fetch_max_redirects + 1):
            parsed = _parsed(current)
            response = _send(client, parsed, _addresses(parsed, settings, resolver), settings, deadline)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    current = urljoin(current, location.strip())
                    log.info("fetch redirected", status_code=response.status_code)
                    continue
                _check_status(response)
                data = _read_bounded(response, settings.max_upload_bytes, deadline,
                                     settings.fetch_total_timeout_seconds)
                return _judged(data, response, parsed)
            finally:
                response.close()
    raise PermanentError(ErrorCode.URL_HTTP_ERROR,
                         f"more than {settings.fetch_max_redirects} redirects (DOCFLOW_FETCH_MAX_REDIRECTS)")


def _parsed(url: str) -> ParsedUrl:
    try:
        return parse_url(url)
    except UrlRefused as exc:
        raise PermanentError(ErrorCode.URL_REFUSED, f"{exc} (URL {_shown(url)})") from None


def _addresses(parsed: ParsedUrl, settings: Settings, resolver: Resolver) -> list:
    try:
        return resolve_checked(parsed, settings.allow_private_urls, resolver)
    except UrlRefused as exc:
        raise PermanentError(ErrorCode.URL_REFUSED, str(exc)) from None
    except ResolutionFailed as exc:
        error = PermanentError if exc.permanent else TransientError
        raise error(ErrorCode.URL_UNREACHABLE, str(exc)) from None


def _timeout(settings: Settings, deadline: float, total: float) -> httpx.Timeout:
    left = _time_left(deadline, total)
    return httpx.Timeout(connect=min(settings.fetch_connect_timeout_seconds, left),
                         read=min(settings.fetch_read_timeout_seconds, left), write=left, pool=left)


def _time_left(deadline: float, total: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransientError(ErrorCode.URL_TIMEOUT,
                             f"the fetch took longer than {total:g} s (DOCFLOW_FETCH_TOTAL_TIMEOUT_SECONDS)")
    return left


def _send(client: httpx.Client, parsed: ParsedUrl, addresses: list, settings: Settings,
          deadline: float) -> httpx.Response:
    """GET the URL from the first of its checked addresses that answers."""
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" and not parsed.host_is_ip else {}
    failure: Exception | None = None
    for address in addresses:
        request = client.build_request(
            "GET", parsed.with_address(address), headers={"Host": parsed.host_header}, extensions=extensions,
            timeout=_timeout(settings, deadline, settings.fetch_total_timeout_seconds))
        try:
            return client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise _timed_out(exc, settings) from None
        except httpx.ConnectError as exc:
            if _bad_certificate(exc):
                raise PermanentError(ErrorCode.URL_UNREACHABLE,
                                     f"the TLS certificate of {parsed.host} is not valid: {exc}") from None
            failure = exc
        except httpx.HTTPError as exc:
            raise TransientError(ErrorCode.URL_UNREACHABLE,
                                 f"{parsed.host} did not answer properly: {type(exc).__name__}: {exc}") from None
    raise TransientError(ErrorCode.URL_UNREACHABLE, f"could not connect to {parsed.host}: {failure}")


def _bad_certificate(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _timed_out(exc: httpx.TimeoutException, settings: Settings) -> TransientError:
    if isinstance(exc, httpx.ConnectTimeout):
        why = f"no connection within {settings.fetch_connect_timeout_seconds:g} s"
    elif isinstance(exc, httpx.ReadTimeout):
        why = f"the server sent nothing for {settings.fetch_read_timeout_seconds:g} s"
    else:
        why = f"{type(exc).__name__}"
    return TransientError(ErrorCode.URL_TIMEOUT, f"the server was too slow: {why}")


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    what = f"the server answered {code} {response.reason_phrase}".rstrip()
    if code >= 500 or code in TRANSIENT_STATUSES:
        raise TransientError(ErrorCode.URL_HTTP_ERROR, what)
    if code in REDIRECT_STATUSES:
        what += " without a Location"
    raise PermanentError(ErrorCode.URL_HTTP_ERROR, what)


def _too_large(limit: int) -> PermanentError:
    return PermanentError(ErrorCode.URL_TOO_LARGE,
                          f"the document is larger than {limit} bytes (DOCFLOW_MAX_UPLOAD_BYTES)")


def _read_bounded(response: httpx.Response, limit: int, deadline: float, total: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and "content-encoding" not in response.headers:
        raise _too_large(limit)
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
            _time_left(deadline, total)
    except httpx.TimeoutException as exc:
        raise TransientError(ErrorCode.URL_TIMEOUT, f"the server was too slow: {type(exc).__name__}") from None
    except httpx.DecodingError as exc:
        raise PermanentError(ErrorCode.URL_HTTP_ERROR, f"the server's response could not be decoded: {exc}") from None
    except httpx.HTTPError as exc:
        raise TransientError(ErrorCode.URL_UNREACHABLE,
                             f"the connection broke while reading: {type(exc).__name__}: {exc}") from None
    return bytes(body)


def _judged(data: bytes, response: httpx.Response, parsed: ParsedUrl) -> Fetched:
    if not data:
        raise PermanentError(ErrorCode.EMPTY_DOCUMENT, "the server sent an empty body")
    filename = filename_for(response.headers.get("content-disposition"), parsed)
    head = data[:SNIFF_BYTES]
    content_type = sniff(head, filename)
    declared = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in TEXT_TYPES and (looks_like_html(head) or (declared in _HTML_MEDIA_TYPES and b"<" in head)):
        content_type = HTML
    if content_type is None:
        raise PermanentError(ErrorCode.UNSUPPORTED_TYPE,
                             "the document at the URL is not a supported type (judged by content; the server "
                             f"called it {declared or 'nothing'!r})")
    return Fetched(data=data, content_type=str(content_type), filename=filename, url=parsed.url)


def filename_for(content_disposition: str | None, parsed: ParsedUrl) -> str:
    """The name the server gives (Content-Disposition, RFC 6266 filename* included), else
    the URL path's last segment, else its host; cleaned like an upload's name."""
    if content_disposition:
        message = email.message.Message()
        message["content-disposition"] = content_disposition
        try:
            given = message.get_filename()
        except (ValueError, LookupError):
            given = None
        if given and sanitize_filename(given) != FALLBACK_FILENAME:
            return sanitize_filename(given)
    return filename_from_url(parsed.url)


def _shown(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[:limit] + "..."

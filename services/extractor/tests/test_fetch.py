"""Documents submitted as a URL: the extract task fetches them from a local HTTP server.

The pages are served on 127.0.0.1 (DOCFLOW_ALLOW_PRIVATE_URLS=true), and
`only_loopback_connections` fails a test that opens a socket to anything else: a
redirect to a metadata address must be refused before any connection is tried.
"""

import gzip
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fpdf import FPDF

from docflow.extractor.fetch import fetch
from docflow.extractor.tasks import app, extract_document
from docflow.shared import artifacts, metrics
from docflow.shared.content_types import HTML, URL_PENDING, ContentType
from docflow.shared.errors import ErrorCode, PermanentError, TransientError
from docflow.shared.messages import PipelineMessage, artifact_prefix
from docflow.shared.names import Task
from docflow.shared.settings import Settings, get_settings
from docflow.shared.status import DocumentRecord, DocumentStatus, StatusStore, utcnow
from docflow.shared.storage import LocalStorage

TENANT = "acme"
ARTICLE = ("The lighthouse keeper climbed the spiral stairs of the granite tower every evening "
           "to light the great lamp that warned ships away from the northern reef. ") * 12
NAV = "Home | Products | Pricing | About us | Careers | Contact | Sign in"
FOOTER = "Copyright 2026 Example Corporation. All rights reserved. Privacy policy. Terms of use."
PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lighthouses</title></head>
<body>
<nav><ul>{''.join(f'<li><a href="/{w}">{w}</a></li>' for w in NAV.split(' | '))}</ul></nav>
<main><article><h1>Keepers of the northern light</h1>
<p>{ARTICLE}</p>
<p>Fog rolled over the cliffs while the keeper wrote the night's log.</p>
</article></main>
<footer><p>{FOOTER}</p></footer>
</body></html>""".encode()

Handler = Callable[[BaseHTTPRequestHandler], None]


def pdf_bytes() -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Glaciers carve valleys over thousands of years. " * 20)
    return bytes(pdf.output())


class PageServer:
    """A local HTTP server: path -> handler; counts the requests to each path."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, int] = {}
        self.hosts: list[str] = []
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                server.hosts.append(self.headers.get("Host", ""))
                route = server.routes.get(path)
                if route is None:
                    send(self, 404, b"not here", "text/plain")
                else:
                    try:
                        route(self)
                    except (BrokenPipeError, ConnectionResetError):
                        pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def send(handler: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str,
         headers: dict[str, str] | None = None) -> None:
    handler.send_response(code)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def pages():
    server = PageServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(autouse=True)
def only_loopback_connections(monkeypatch):
    """Fail the test if any socket connects to an address other than 127.0.0.1."""
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(real):
        def guarded(sock, address, *args):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] != "127.0.0.1":
                attempts.append(address)
                raise AssertionError(f"the test tried to connect to {address!r}")
            return real(sock, address, *args)
        return guarded

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    yield
    assert not attempts, f"connections attempted to {attempts}"


@pytest.fixture
def stage(monkeypatch, tmp_path, redis_server, redis_client):
    """The extract task on this test's Redis and storage, allowed to fetch from 127.0.0.1;
    short time limits and one retry keep the failing cases quick."""
    for name, value in {"REDIS_URL": redis_server.url, "STORAGE_PATH": str(tmp_path / "storage"),
                        "ALLOW_PRIVATE_URLS": "true", "MAX_RETRIES": "1",
                        "FETCH_READ_TIMEOUT_SECONDS": "0.5", "FETCH_TOTAL_TIMEOUT_SECONDS": "5",
                        "MAX_UPLOAD_BYTES": str(256 * 1024)}.items():
        monkeypatch.setenv(f"DOCFLOW_{name}", value)
    task = app.tasks[Task.EXTRACT.value]

    def forget_cached_settings_and_connections():
        get_settings.cache_clear()
        task.reset_resources()

    forget_cached_settings_and_connections()
    yield StatusStore(redis_client), LocalStorage(tmp_path / "storage")
    forget_cached_settings_and_connections()


def submit_url(status: StatusStore, url: str) -> dict:
    """What the gateway does for {"url": ...}: a record awaiting its fetch, and the message."""
    document_id = uuid.uuid4().hex
    original_key = f"{artifact_prefix(TENANT, document_id)}original"
    now = utcnow()
    status.create(DocumentRecord(document_id=document_id, tenant=TENANT, filename="page", content_type=URL_PENDING,
                                 size_bytes=0, original_key=original_key, source_url=url,
                                 created_at=now, updated_at=now))
    return PipelineMessage(document_id=document_id, tenant=TENANT, version=1, content_type=URL_PENDING,
                           original_key=original_key).model_dump()


def fetches(outcome: str) -> float:
    """docflow_url_fetches_total{outcome} as this process's registry counts it now."""
    return metrics.REGISTRY.get_sample_value("docflow_url_fetches_total", {"outcome": outcome}) or 0.0


def failed_with(status: StatusStore, message: dict, code: ErrorCode) -> DocumentRecord:
    result = extract_document.apply(args=[message])
    assert result.failed()
    record = status.get(message["document_id"])
    assert record.status == DocumentStatus.FAILED, record
    assert record.error.code == code, record.error
    assert record.error.stage == "extract"
    return record


def test_an_html_page_is_fetched_stored_and_reduced_to_its_main_text(stage, pages):
    status, storage = stage
    pages.routes["/articles/lighthouses.html"] = lambda h: send(h, 200, PAGE, "text/html; charset=utf-8")
    message = submit_url(status, pages.url("/articles/lighthouses.html"))
    fetched_before = fetches("ok")

    result = extract_document.apply(args=[message])

    assert result.successful(), result.traceback
    assert fetches("ok") == fetched_before + 1, "the fetch is counted by its outcome"
    returned = result.get()
    assert returned["content_type"] == HTML, "the later stages see the judged type"
    record = status.get(message["document_id"])
    assert (record.content_type, record.size_bytes, record.filename) == (HTML, len(PAGE), "lighthouses.html")
    assert record.source_url == pages.url("/articles/lighthouses.html")
    assert storage.get(message["original_key"]) == PAGE, "the page is stored as fetched"
    text = " ".join(c.text for c in artifacts.load_chunks(storage.get(returned["chunks_key"])))
    assert "lighthouse keeper climbed the spiral stairs" in text
    assert "Fog rolled over the cliffs" in text
    assert "Careers" not in text and "Pricing" not in text, "navigation is not content"
    assert "All rights reserved" not in text, "nor is the footer"
    assert record.chunks and record.chunks >= 2


def test_a_retry_of_a_fetched_document_reads_the_stored_original_instead_of_fetching(stage, pages):
    status, storage = stage
    pages.routes["/page"] = lambda h: send(h, 200, PAGE, "text/html")
    message = submit_url(status, pages.url("/page"))
    assert extract_document.apply(args=[message]).successful()
    status.update(message["document_id"], 1, status=DocumentStatus.EXTRACTING)  # as a redelivery finds it

    again = extract_document.apply(args=[message])

    assert again.successful(), again.traceback
    assert pages.hits["/page"] == 1
    assert again.get()["content_type"] == HTML


def test_a_pdf_by_url_is_judged_by_its_bytes_and_named_by_content_disposition(stage, pages):
    status, storage = stage
    pdf = pdf_bytes()
    pages.routes["/download"] = lambda h: send(
        h, 200, pdf, "application/octet-stream",
        {"Content-Disposition": "attachment; filename*=UTF-8''glacier%20report.pdf"})
    message = submit_url(status, pages.url("/download?id=7"))

    result = extract_document.apply(args=[message])

    assert result.successful(), result.traceback
    record = status.get(message["document_id"])
    assert (record.content_type, record.filename, record.pages) == (ContentType.PDF, "glacier report.pdf", 1)
    chunks = artifacts.load_chunks(storage.get(result.get()["chunks_key"]))
    assert "Glaciers carve valleys" in chunks[0].text and chunks[0].page == 1


def test_a_gzip_encoded_text_is_decoded_and_counted_decoded(stage, pages):
    body = gzip.compress(b"Plain notes about orchards and apple harvests.\n" * 20)
    pages.routes["/notes.txt"] = lambda h: send(h, 200, body, "text/plain", {"Content-Encoding": "gzip"})

    fetched = fetch(pages.url("/notes.txt"), get_settings())

    assert fetched.content_type == ContentType.TEXT and fetched.filename == "notes.txt"
    assert fetched.data.startswith(b"Plain notes about orchards")


def test_a_redirect_to_a_metadata_address_fails_url_refused_without_connecting(stage, pages):
    status, _ = stage
    pages.routes["/moved"] = lambda h: send(h, 302, b"", "text/plain",
                                            {"Location": "http://169.254.169.254/latest/meta-data/iam/"})
    message = submit_url(status, pages.url("/moved"))

    record = failed_with(status, message, ErrorCode.URL_REFUSED)

    assert "169.254.169.254" in record.error.message and "metadata" in record.error.message
    assert pages.hits["/moved"] == 1, "a permanent failure is not retried"


def test_redirects_are_followed_and_each_is_checked(stage, pages):
    pages.routes["/old"] = lambda h: send(h, 301, b"", "text/plain", {"Location": "/new"})
    pages.routes["/new"] = lambda h: send(h, 200, PAGE, "text/html")
    assert fetch(pages.url("/old"), get_settings()).filename == "new"

    pages.routes["/loop"] = lambda h: send(h, 302, b"", "text/plain", {"Location": "/loop"})
    with pytest.raises(PermanentError, match="redirects") as failure:
        fetch(pages.url("/loop"), get_settings())
    assert failure.value.code == ErrorCode.URL_HTTP_ERROR
    assert pages.hits["/loop"] == get_settings().fetch_max_redirects + 1

    pages.routes["/to-ftp"] = lambda h: send(h, 302, b"", "text/plain", {"Location": "ftp://127.0.0.1/x"})
    with pytest.raises(PermanentError, match="only http and https") as failure:
        fetch(pages.url("/to-ftp"), get_settings())
    assert failure.value.code == ErrorCode.URL_REFUSED


def test_loopback_is_refused_unless_private_urls_are_allowed(stage, pages):
    pages.routes["/page"] = lambda h: send(h, 200, PAGE, "text/html")
    with pytest.raises(PermanentError, match="loopback") as failure:
        fetch(pages.url("/page"), Settings(allow_private_urls=False))
    assert failure.value.code == ErrorCode.URL_REFUSED
    assert "/page" not in pages.hits


def test_the_connection_goes_to_the_address_checked_not_a_second_lookup(stage, pages):
    """DNS rebinding: the name resolves to an allowed address when checked and to a
    metadata address afterwards; the fetch must connect where it checked, once."""
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    lookups: list[str] = []

    def rebinding_resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    pages.routes["/page"] = lambda h: send(h, 200, PAGE, "text/html")
    fetched = fetch(pages.url("/page", host="docs.example"), get_settings(), resolver=rebinding_resolver)

    assert fetched.content_type == HTML
    assert lookups == ["docs.example"]
    assert pages.hosts == [f"docs.example:{pages.port}"], "the server still sees the name it was asked by"


def test_a_body_over_the_limit_fails_url_too_large(stage, pages):
    status, _ = stage
    limit = get_settings().max_upload_bytes
    big = b"a" * (limit + 1)
    pages.routes["/declared"] = lambda h: send(h, 200, big, "text/plain")

    def undeclared(h):  # no Content-Length: counted as it streams, abandoned at the limit
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Connection", "close")
        h.end_headers()
        for _ in range(64):
            h.wfile.write(b"b" * (limit // 16))

    pages.routes["/streamed"] = undeclared
    record = failed_with(status, submit_url(status, pages.url("/declared")), ErrorCode.URL_TOO_LARGE)
    assert str(limit) in record.error.message
    failed_with(status, submit_url(status, pages.url("/streamed")), ErrorCode.URL_TOO_LARGE)
    assert pages.hits == {"/declared": 1, "/streamed": 1}, "too large is permanent: no retry"


def test_a_slow_server_fails_url_timeout_after_its_retries(stage, pages):
    status, _ = stage

    def silent(h):
        time.sleep(1.5)  # longer than the read timeout (0.5 s)
        send(h, 200, b"too late", "text/plain")

    pages.routes["/slow"] = silent
    started = time.monotonic()
    record = failed_with(status, submit_url(status, pages.url("/slow")), ErrorCode.URL_TIMEOUT)
    assert "too slow" in record.error.message
    assert pages.hits["/slow"] == 2, "a timeout is transient: retried (DOCFLOW_MAX_RETRIES=1)"
    assert time.monotonic() - started < 3.0


def test_a_server_dripping_bytes_is_cut_off_by_the_total_limit(stage, pages):
    def drip(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Connection", "close")
        h.end_headers()
        for _ in range(40):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(0.1)

    pages.routes["/drip"] = drip
    with pytest.raises(TransientError, match="DOCFLOW_FETCH_TOTAL_TIMEOUT_SECONDS") as failure:
        fetch(pages.url("/drip"), get_settings().model_copy(update={"fetch_total_timeout_seconds": 1.0}))
    assert failure.value.code == ErrorCode.URL_TIMEOUT


def test_a_404_fails_the_document_at_once(stage, pages, redis_client):
    status, _ = stage
    message = submit_url(status, pages.url("/missing.pdf"))
    failed_before = fetches(ErrorCode.URL_HTTP_ERROR.value)

    record = failed_with(status, message, ErrorCode.URL_HTTP_ERROR)

    assert "404" in record.error.message
    assert pages.hits["/missing.pdf"] == 1, "a 404 is permanent: not retried"
    assert fetches(ErrorCode.URL_HTTP_ERROR.value) == failed_before + 1, "a failed fetch is counted by its code"
    assert record.content_type == URL_PENDING, "nothing was fetched"


def test_a_503_is_retried_and_the_document_extracted_when_the_server_recovers(stage, pages):
    status, _ = stage
    answers = iter([503])

    def flaky(h):
        code = next(answers, 200)
        if code == 503:
            send(h, 503, b"busy", "text/plain", {"Retry-After": "1"})
        else:
            send(h, 200, PAGE, "text/html")

    pages.routes["/flaky"] = flaky
    message = submit_url(status, pages.url("/flaky"))

    result = extract_document.apply(args=[message])

    assert result.successful(), result.traceback
    assert pages.hits["/flaky"] == 2
    record = status.get(message["document_id"])
    assert record.content_type == HTML and record.attempts == 2


def test_a_host_that_does_not_resolve_fails_permanently(stage):
    def nxdomain(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(PermanentError, match="could not be resolved") as failure:
        fetch("https://no-such-host.example/doc.pdf", get_settings(), resolver=nxdomain)
    assert failure.value.code == ErrorCode.URL_UNREACHABLE


def test_a_refused_connection_is_transient(stage):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(TransientError) as failure:
            fetch(f"http://127.0.0.1:{port}/", get_settings())
    assert failure.value.code == ErrorCode.URL_UNREACHABLE


def test_unsupported_and_empty_bodies_fail_permanently(stage, pages):
    pages.routes["/app.exe"] = lambda h: send(h, 200, b"MZ\x90\x00\x03" + bytes(range(256)) * 4,
                                              "application/octet-stream")
    pages.routes["/empty"] = lambda h: send(h, 200, b"", "text/plain")
    with pytest.raises(PermanentError) as failure:
        fetch(pages.url("/app.exe"), get_settings())
    assert failure.value.code == ErrorCode.UNSUPPORTED_TYPE
    with pytest.raises(PermanentError) as failure:
        fetch(pages.url("/empty"), get_settings())
    assert failure.value.code == ErrorCode.EMPTY_DOCUMENT


def test_a_page_without_text_fails_empty_document(stage, pages):
    status, _ = stage
    scripts_only = b"<!DOCTYPE html><html><head><script>var app = 1;</script></head><body></body></html>"
    pages.routes["/app"] = lambda h: send(h, 200, scripts_only, "text/html")
    record = failed_with(status, submit_url(status, pages.url("/app")), ErrorCode.EMPTY_DOCUMENT)
    assert "no main text" in record.error.message


def tls_contexts(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a certificate for `name`, client context trusting its CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool, san: str | None = None):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False), critical=True)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("docflow test CA", ca_key, "docflow test CA", ca_key, ca=True)
    leaf = certificate(name, leaf_key, "docflow test CA", ca_key, ca=False, san=name)
    pem = serialization.Encoding.PEM
    with tempfile.TemporaryDirectory() as folder:
        chain, key = Path(folder, "chain.pem"), Path(folder, "key.pem")
        chain.write_bytes(leaf.public_bytes(pem))
        key.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(chain, key)
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


def test_https_connects_to_the_checked_address_and_verifies_the_name(stage, pages):
    """The request goes to 127.0.0.1, but TLS's SNI and certificate check use the URL's
    name: a certificate for another name is refused, permanently."""
    server_tls, client_tls = tls_contexts("docs.example")
    pages.httpd.socket = server_tls.wrap_socket(pages.httpd.socket, server_side=True)
    pages.routes["/report.pdf"] = lambda h: send(h, 200, pdf_bytes(), "application/pdf")

    def resolver(host: str, port: int) -> list[str]:
        return {"docs.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}[host]

    fetched = fetch(f"https://docs.example:{pages.port}/report.pdf", get_settings(), resolver, verify=client_tls)

    assert fetched.content_type == ContentType.PDF and fetched.filename == "report.pdf"
    assert pages.hosts == [f"docs.example:{pages.port}"]
    with pytest.raises(PermanentError, match="certificate") as failure:
        fetch(f"https://other.example:{pages.port}/report.pdf", get_settings(), resolver, verify=client_tls)
    assert failure.value.code == ErrorCode.URL_UNREACHABLE

"""A document submitted as a URL, through the real stack: the gateway records it, the
extractor fetches the page from a local server (DOCFLOW_ALLOW_PRIVATE_URLS=true on the
e2e stack), reduces it to its main text, and the document ends completed and searchable."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ARTICLE = ("Basalt columns form when a thick lava flow cools slowly and contracts, cracking into "
           "hexagonal pillars like those of the Giant's Causeway. ") * 8
PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Columnar basalt</title></head>
<body>
<nav><a href="/">Home</a> <a href="/shop">Shop</a> <a href="/newsletter">Newsletter signup</a></nav>
<article><h1>How columnar basalt forms</h1><p>{ARTICLE}</p>
<p>Geologists measure the columns' angles to reconstruct how the flow cooled.</p></article>
<footer>Copyright 2026 Rock Facts Ltd. Cookie settings.</footer>
</body></html>""".encode()


@pytest.fixture
def page_server():
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            if self.path == "/geology/basalt":
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)
            else:
                self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_a_page_submitted_by_url_is_fetched_extracted_and_searchable(api_a, page_server):
    base, hits = page_server
    url = f"{base}/geology/basalt"

    response = api_a.http.post("/v1/documents", json={"url": url, "metadata": {"topic": "geology"}})

    assert response.status_code == 202, response.text
    document_id = response.json()["document_id"]
    record = api_a.wait_final(document_id)
    assert record["status"] == "completed", record
    assert record["source_url"] == url
    assert record["content_type"] == "text/html" and record["size_bytes"] == len(PAGE)
    assert record["filename"] == "basalt" and record["metadata"] == {"topic": "geology"}
    assert hits == ["/geology/basalt"], "fetched once, by the extractor"

    results = api_a.search("how does columnar basalt form hexagonal pillars", top_k=5,
                           filter={"topic": "geology"})
    mine = [hit for hit in results if hit["document_id"] == document_id]
    assert mine, results
    assert "hexagonal pillars" in mine[0]["text"]
    assert all("Newsletter signup" not in hit["text"] and "Cookie settings" not in hit["text"] for hit in mine)


def test_a_url_that_answers_404_fails_with_its_reason(api_a, page_server):
    base, _ = page_server
    response = api_a.http.post("/v1/documents", json={"url": f"{base}/gone.pdf"})
    assert response.status_code == 202, response.text

    record = api_a.wait_final(response.json()["document_id"])

    assert record["status"] == "failed"
    assert record["error"]["code"] == "url_http_error" and "404" in record["error"]["message"]

"""POST /v1/documents: accept, store, record and enqueue — or refuse with a reason."""

import os
from pathlib import Path

import pytest

from docflow.shared.names import Queue, Task


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def raw_multipart(filename: str, data: bytes, boundary: str = "docflowboundary") -> tuple[bytes, str]:
    """A hand-built body: clients (httpx too) escape odd file names; attackers do not."""
    head = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_upload_is_accepted_stored_recorded_and_enqueued_once(gateway, broker):
    response = gateway.upload(metadata='{"source": "crm", "tags": ["a"]}')

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert len(accepted["document_id"]) == 32 and accepted["task_id"]

    document_id = accepted["document_id"]
    original = gateway.storage_root / f"tenants/tenant-a/documents/{document_id}/original"
    assert original.read_bytes() == gateway.TEXT

    record = gateway.get(f"/v1/documents/{document_id}").json()
    assert record["status"] == "queued"
    assert record["progress"] == 0
    assert record["filename"] == "notes.txt"
    assert record["content_type"] == "text/plain"
    assert record["size_bytes"] == len(gateway.TEXT)
    assert record["metadata"] == {"source": "crm", "tags": ["a"]}
    assert record["task_id"] == accepted["task_id"]
    assert record["version"] == 1
    assert record["error"] is None

    assert broker.length(Queue.EXTRACT.value) == 1
    assert broker.length(Queue.EMBED.value) == 0 and broker.length(Queue.INDEX.value) == 0


def test_enqueued_message_is_a_claim_check_for_the_whole_chain(gateway, broker):
    accepted = gateway.accepted()
    [message] = broker.messages(Queue.EXTRACT.value)

    assert message.task == Task.EXTRACT.value
    assert message.task_id == f"{accepted['task_id']}.extract"
    [pipeline_message] = message.args
    assert pipeline_message == {
        "document_id": accepted["document_id"], "tenant": "tenant-a", "version": 1,
        "content_type": "text/plain",
        "original_key": f"tenants/tenant-a/documents/{accepted['document_id']}/original",
        "chunks_key": None, "embeddings_key": None,
        # Filled in by the embedder, for the indexer (docflow.shared.embedding_models).
        "embedding_model": None, "embedding_runtime": None,
    }
    # The rest of the chain travels with it, by name, with derived ids.
    assert [(s["task"], s["options"]["task_id"]) for s in reversed(message.chain)] == [
        (Task.EMBED.value, f"{accepted['task_id']}.embed"),
        (Task.INDEX.value, f"{accepted['task_id']}.index"),
    ]
    assert message.size < 4096
    assert b"quick brown fox" not in message.raw.encode()
    assert "quick brown fox" not in str(message.body)
    # What the workers read from the headers (docflow.shared.tracing), and a short
    # argument repr for monitoring tools instead of the whole message.
    assert {"request_id", "accepted_at", "enqueued_at"} <= message.headers.keys()
    assert message.headers["argsrepr"] == f"(document_id='{accepted['document_id']}', version=1)"


def test_uploads_are_enqueued_again_after_a_redis_restart(gateway, broker, redis_server):
    """The producer and the Redis clients keep their connections between uploads; a
    restart drops them all, and the next upload must reconnect, not fail."""
    first = gateway.accepted()
    redis_server.stop()
    redis_server.start()  # same port; AOF keeps what was accepted
    second = gateway.accepted()

    queued = [message.task_id for message in broker.messages(Queue.EXTRACT.value)]
    assert queued == [f"{first['task_id']}.extract", f"{second['task_id']}.extract"]
    assert gateway.get(f"/v1/documents/{second['document_id']}").json()["status"] == "queued"


def test_metadata_must_be_a_json_object(gateway, broker):
    for bad, reason in [("{not json", "metadata must be a JSON object"),
                        ("[1, 2]", "metadata must be a JSON object, not list"),
                        ('"text"', "metadata must be a JSON object, not str")]:
        response = gateway.upload(metadata=bad)
        assert response.status_code == 422, bad
        assert response.json()["detail"].startswith(reason)
    assert broker.length(Queue.EXTRACT.value) == 0
    assert stored_files(gateway.storage_root) == []


def test_oversized_upload_is_413_and_leaves_nothing(make_gateway, broker):
    gateway = make_gateway(max_upload_bytes=100)
    response = gateway.upload(data=b"x" * 101)
    assert response.status_code == 413
    assert response.json()["detail"] == "file too large: the limit is 100 bytes"
    assert broker.length(Queue.EXTRACT.value) == 0
    assert stored_files(gateway.storage_root) == []


def test_upload_at_exactly_the_limit_is_accepted(make_gateway):
    gateway = make_gateway(max_upload_bytes=100)
    assert gateway.upload(data=b"y" * 100).status_code == 202


def test_oversized_declared_length_is_refused_before_reading(make_gateway):
    gateway = make_gateway(max_upload_bytes=100)
    body, content_type = raw_multipart("big.txt", b"z" * 50)
    response = gateway.client.post("/v1/documents", content=body, headers={
        **gateway.auth(), "Content-Type": content_type, "Content-Length": str(10 * 1024 * 1024)})
    assert response.status_code == 413


def test_empty_file_is_400(gateway):
    response = gateway.upload(data=b"")
    assert response.status_code == 400
    assert response.json() == {"detail": "the file is empty"}


def test_binary_named_pdf_is_415_with_the_supported_types(gateway, broker):
    response = gateway.upload(data=os.urandom(2048) + b"\x00\x01", filename="report.pdf")
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert "unsupported document type" in detail
    assert "application/pdf" in detail and "text/markdown" in detail
    assert broker.length(Queue.EXTRACT.value) == 0
    assert stored_files(gateway.storage_root) == []


def test_type_is_judged_by_content(gateway, pdf_of_pages):
    accepted = gateway.accepted(data=pdf_of_pages(1), filename="scan.txt")
    record = gateway.get(f"/v1/documents/{accepted['document_id']}").json()
    assert record["content_type"] == "application/pdf"
    markdown = gateway.accepted(data=b"# Title\n\nSome *markdown*.\n", filename="readme.md")
    assert gateway.get(f"/v1/documents/{markdown['document_id']}").json()["content_type"] == "text/markdown"


def test_request_without_file_field_is_422(gateway):
    response = gateway.post("/v1/documents", files={"other": ("x.txt", b"hello", "text/plain")})
    assert response.status_code == 422
    assert "missing form field 'file'" in response.json()["detail"]


def test_file_field_sent_as_text_is_422(gateway):
    body = (b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
            b"just text\r\n--b--\r\n")
    response = gateway.client.post("/v1/documents", content=body, headers={
        **gateway.auth(), "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 422
    assert "must be a file upload" in response.json()["detail"]


def test_two_files_are_422(gateway):
    response = gateway.post("/v1/documents", files=[("file", ("a.txt", b"one", "text/plain")),
                                                      ("file", ("b.txt", b"two", "text/plain"))])
    assert response.status_code == 422
    assert "exactly one 'file'" in response.json()["detail"]


def test_non_multipart_body_is_415(gateway):
    response = gateway.client.post("/v1/documents", content=b"file=hello", headers={
        **gateway.auth(), "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_a_file_sent_as_json_is_422_pointing_to_multipart(gateway):
    # JSON bodies name a document by URL (test_url_documents.py); a file in one is refused
    # with the way to upload it.
    response = gateway.post("/v1/documents", json={"file": "hello"})
    assert response.status_code == 422
    assert "multipart/form-data" in response.json()["detail"]


def test_malformed_multipart_is_400(gateway):
    response = gateway.client.post("/v1/documents", content=b"--b\r\nnot a header line\r\n\r\n", headers={
        **gateway.auth(), "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed multipart body")


def test_a_body_cut_off_inside_the_file_is_400_and_stores_nothing(gateway):
    """python-multipart's finalize() accepts a body that stops inside a part: the cut
    file must not become a document."""
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="cut.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nthe first half of a document and then noth")
    response = gateway.client.post("/v1/documents", content=body, headers={
        **gateway.auth(), "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 400
    assert "closing boundary" in response.json()["detail"]
    assert gateway.get("/v1/documents").json()["total"] == 0


@pytest.mark.parametrize(("raw_name", "stored_name"), [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("C:\\Users\\eve\\report.txt", "report.txt"),
    ("evil\x00name\x1b[31m.txt", "evilname[31m.txt"),
    ("invoice\u202etxt.exe.txt", "invoicetxt.exe.txt"),
    ("..", "upload"),
    ("", "upload"),
    ("a" * 400 + ".md", "a" * 252 + ".md"),
])
def test_filename_is_sanitised(gateway, raw_name, stored_name):
    body, content_type = raw_multipart(raw_name, b"plain text body\n")
    response = gateway.client.post("/v1/documents", content=body,
                                   headers={**gateway.auth(), "Content-Type": content_type})
    assert response.status_code == 202, response.text
    record = gateway.get(f"/v1/documents/{response.json()['document_id']}").json()
    assert record["filename"] == stored_name
    # The original is stored under a fixed key whatever the client called it.
    assert record["document_id"] in str(next(gateway.storage_root.rglob("original")))


@pytest.mark.parametrize(("raw_name", "extension"), [
    ("n" * 5000 + ".txt", ".txt"),          # over python-multipart's 4 KiB header line
    ("文" * 7000 + ".md", ".md"),            # 21 KB of UTF-8
])
def test_a_file_name_of_several_kilobytes_is_shortened_not_refused(gateway, raw_name, extension):
    """A 4 KB name was a 400 "malformed multipart" (the part's header line was over
    python-multipart's default limit) instead of being shortened to 255 bytes."""
    body, content_type = raw_multipart(raw_name, b"plain text body\n")
    response = gateway.client.post("/v1/documents", content=body,
                                   headers={**gateway.auth(), "Content-Type": content_type})
    assert response.status_code == 202, response.text[:300]
    stored = gateway.get(f"/v1/documents/{response.json()['document_id']}").json()["filename"]
    assert stored.endswith(extension) and 250 <= len(stored.encode()) <= 255
    assert raw_name.startswith(stored.removesuffix(extension))


def test_a_part_header_beyond_any_file_name_is_still_refused(gateway):
    body, content_type = raw_multipart("n" * 100_000 + ".txt", b"plain text body\n")
    response = gateway.client.post("/v1/documents", content=body,
                                   headers={**gateway.auth(), "Content-Type": content_type})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed multipart body")

"""Bad input gets a clear answer: a 4xx with a reason at upload, or `failed` with a
specific code -- never a 500, never a hung or crashed worker.

Every file here goes through the real gateway and workers of the session stack;
the hostile ones (docflow.devstack.hostile) are small on the wire and built to
exhaust a naive reader. services/extractor/tests/test_bombs.py pins the same cases
at the reader, including that nothing is inflated before it is refused.
"""

import pytest

from docflow.devstack import hostile, samples
from docflow.shared.names import Stage

BY_CONTENT = "judged by content"
REFUSED_AT_UPLOAD = {
    "empty": ("empty.txt", b"", 400, "empty"),
    "not a document (random bytes named .pdf)": ("scan.pdf", bytes(range(256)) * 64, 415, BY_CONTENT),
    "a DOCX that is not a zip": ("letter.docx", b"Dear team, " + bytes(range(256)) * 8, 415, BY_CONTENT),
    "an executable named .txt": ("notes.txt", b"\x7fELF\x02\x01\x01" + b"\x00" * 4000, 415, BY_CONTENT),
}

FAILED_WITH = {
    "corrupt PDF": ("corrupt.pdf", hostile.corrupt_pdf, "corrupt_file"),
    "truncated PDF": ("truncated.pdf", hostile.truncated_pdf, "corrupt_file"),
    "encrypted PDF": ("locked.pdf", hostile.encrypted_pdf, "encrypted_file"),
    "PDF stream inflating past pypdf's limit": ("bomb.pdf", hostile.flate_bomb_pdf, "too_large"),
    "truncated DOCX": ("cut.docx", hostile.truncated_docx, "corrupt_file"),
    "DOCX zip bomb": ("bomb.docx", hostile.zip_bomb_docx, "too_large"),
    "DOCX XML entity bomb (billion laughs)": ("laughs.docx", hostile.entity_bomb_docx, "corrupt_file"),
    "image over Pillow's pixel limit": ("huge.png", hostile.pixel_bomb_png, "too_large"),
    "scanned PDF whose image is over that limit": ("huge-scan.pdf", hostile.pixel_bomb_pdf, "too_large"),
    "text that is not decodable": ("mixed.txt", hostile.undecodable_text, "undecodable_text"),
}


@pytest.mark.parametrize("case", list(REFUSED_AT_UPLOAD))
def test_refused_at_upload_with_a_reason(api_a, case):
    filename, data, status, reason = REFUSED_AT_UPLOAD[case]
    response = api_a.http.post("/v1/documents", files={"file": (filename, data)})
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]


def test_over_the_size_limit_is_413_before_the_body_is_read(api_a, stack):
    limit = stack.settings().max_upload_bytes
    response = api_a.http.post("/v1/documents", files={"file": ("big.txt", b"a" * (limit + 1))})
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]


@pytest.fixture(scope="module")
def failed(api_a) -> dict[str, dict]:
    """Upload every bad file at once, then wait for each to end."""
    ids = {case: api_a.upload(filename, make()) for case, (filename, make, _) in FAILED_WITH.items()}
    return {case: api_a.wait_final(document_id, timeout=240) for case, document_id in ids.items()}


@pytest.mark.parametrize("case", list(FAILED_WITH))
def test_fails_at_once_with_a_specific_code(failed, case):
    record = failed[case]
    assert record["status"] == "failed", record
    assert record["error"]["code"] == FAILED_WITH[case][2], record["error"]
    assert record["error"]["stage"] == "extract" and record["error"]["message"]
    assert record["attempts"] == 1, "bad input is not retried"


def test_the_workers_survive_and_keep_serving(stack, api_a, failed):
    for stage in Stage:
        assert stack.workers[stage].alive(), f"the {stage.value} worker died"
    document_id = api_a.upload("after.txt", samples.text(["Bad input leaves the pipeline working."]))
    assert api_a.wait_final(document_id)["status"] == "completed"


def raw_upload(api, filename: bytes, data: bytes):
    """A multipart upload with the file name's bytes exactly as given: no client
    escaping (httpx would percent-encode CR, LF and NUL). Always a new document
    (on_duplicate=new): the cases share their bytes and differ only by name."""
    boundary = b"docflow-hostile-name"
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + filename +
            b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data + b"\r\n--" + boundary + b"--\r\n")
    return api.http.post("/v1/documents", params={"on_duplicate": "new"}, content=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"})


@pytest.mark.parametrize(("raw_name", "shown"), [
    (b"../../../../etc/passwd", "passwd"),
    (b"..\\..\\windows\\system32\\evil.txt", "evil.txt"),
    (b"/var/lib/docflow/storage/tenants/tenant-b/x.txt", "x.txt"),
    (b"report\x00.txt", "report.txt"),
    (b"\x1b[31mred\x1b[0m\xe2\x80\xaetxt.exe", "[31mred[0mtxt.exe"),  # ANSI escapes, RIGHT-TO-LEFT OVERRIDE
    # CR LF ends the header early: the unterminated value keeps its opening quote, and
    # the "header" after it is one more part header, ignored.
    (b"notes.txt\r\nX-Injected: yes", '"notes.txt'),
])
def test_a_hostile_file_name_is_stored_as_harmless_display_text(stack, api_a, raw_name, shown):
    response = raw_upload(api_a, raw_name, b"Plain text with a hostile name.")
    assert response.status_code == 202, response.text
    record = api_a.document(response.json()["document_id"])
    assert record["filename"] == shown
    assert not any(ord(ch) < 32 or 0x202A <= ord(ch) <= 0x202E for ch in record["filename"])
    # The name never reaches a path: the original is stored under a fixed key.
    folder = stack.data_dir / "storage" / "tenants" / api_a.tenant / "documents" / record["document_id"]
    assert [p.name for p in folder.iterdir() if p.is_file()] == ["original"]
    assert not list(stack.data_dir.rglob("passwd")) and not list(stack.data_dir.rglob("evil.txt"))

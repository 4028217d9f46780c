"""A magic number is a guess, and a guess never overrides a file that decodes as text:
text that happens to begin like a BMP, GIF, executable, PDF... is accepted, extracted
and found; real files of the supported formats are still recognised as themselves.

Issue 16's defect ("BMP receptor…" refused as a BMP image) and issue 15's list of
other short signatures. Real gateway and workers (the session stack).
"""

import io

import httpx
import pytest
from PIL import Image

from docflow.devstack import samples

ABSTRACTS = {
    "BM": "BMP receptor signalling patterns the dorsal-ventral axis of the zebrafish embryo.",
    "BMAL1": "BMAL1 and CLOCK form a heterodimer that drives circadian transcription in the liver.",
    "GIF8": "GIF89a added animation and transparency to the graphics interchange format.",
    "MZ": "MZ twins (monozygotic) share nearly all of their genome.",
    "ID3": "ID3 tags carry the title and artist of an audio track.",
    "OggS": "OggS is the capture pattern at the start of every Ogg page.",
    "fLaC": "fLaC streams hold losslessly compressed audio frames.",
    "RTF": "{\\rtf1\\ansi\\deff0 Minutes of the steering committee meeting}",
    "PostScript": "%!PS-Adobe-3.0 programs describe pages for laser printers.",
    "BZh": "BZh ratings were given to the wine cellar's oldest bottles.",
    "8BPS": "8BPS layered artwork was exported for the annual report.",
    "MSCF": "MSCF cabinet archives were used by old Windows installers.",
    "SQLite": "SQLite format 3 is the string at the start of every database file.",
    "PDF": "%PDF-1.7 is the version most documents in the archive declare.",
}
UTF16_WITHOUT_BOM = "BMP receptors without a byte-order mark, in UTF-16 little-endian."


@pytest.fixture(scope="module")
def uploaded(api_a) -> dict[str, httpx.Response]:
    files = {case: text.encode() for case, text in ABSTRACTS.items()}
    files["UTF-16LE"] = UTF16_WITHOUT_BOM.encode("utf-16-le")
    return {case: api_a.http.post("/v1/documents", files={"file": (f"{case}.txt", data)})
            for case, data in files.items()}


@pytest.mark.parametrize("case", [*ABSTRACTS, "UTF-16LE"])
def test_text_with_a_weak_magic_number_is_accepted_and_found(api_a, uploaded, case):
    text = ABSTRACTS.get(case, UTF16_WITHOUT_BOM)
    assert uploaded[case].status_code == 202, uploaded[case].text
    document_id = uploaded[case].json()["document_id"]
    record = api_a.wait_final(document_id)
    assert (record["status"], record["content_type"], record["error"]) == ("completed", "text/plain", None)
    hits = api_a.search(text, top_k=20)
    assert text in [hit["text"] for hit in hits if hit["document_id"] == document_id]


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    samples.text_image("Invoice 4711", width=600).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(("name", "make", "content_type"), [
    ("paper.txt", lambda: samples.pdf(["A real PDF is still a PDF."]), "application/pdf"),
    ("scan.txt", lambda: _image("PNG"), "image/png"),
    ("photo.txt", lambda: _image("JPEG"), "image/jpeg"),
    ("fax.txt", lambda: _image("TIFF"), "image/tiff"),
    ("letter.txt", lambda: samples.docx(["A real DOCX is still a DOCX."]),
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
])
def test_real_files_are_still_recognised_by_their_structure(api_a, name, make, content_type):
    document_id = api_a.upload(name, make())
    assert api_a.document(document_id)["content_type"] == content_type


def test_real_binary_files_of_other_formats_are_still_refused(api_a):
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    response = api_a.http.post("/v1/documents", files={"file": ("image.txt", gif.getvalue())})
    assert response.status_code == 415, response.text

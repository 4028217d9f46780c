"""Big PDFs fan out on real workers: a chord of page ranges on the extract queue, merged,
then embedded and indexed like any other document.

This module runs its own stack with a low fan-out threshold (6 pages, ranges of 3) and
two extractor processes, so the ranges really run in parallel; the hashing embedder
keeps it quick (the chord is the extractor's business, not the model's).
"""

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject, StreamObject

from docflow.devstack import samples
from docflow.devstack.redis_server import RedisServer
from docflow.devstack.stack import LocalStack
from docflow.extractor.chunking import chunk_pages
from docflow.extractor.readers.pdf import read_pdf
from docflow.shared.messages import PipelineMessage
from docflow.shared.names import Stage
from docflow.shared.settings import Settings

from .conftest import FINAL, KEY_A, STACK_ENV, TENANT_A, Api

FANOUT_ENV = {**STACK_ENV, "DOCFLOW_EMBEDDER": "hash",
              "DOCFLOW_FANOUT_MIN_PAGES": "6", "DOCFLOW_FANOUT_RANGE_PAGES": "3"}
TOPICS = ["lighthouses", "glaciers", "orchards", "volcanoes", "harbours", "meadows", "bridges"]


def page_text(number: int) -> str:
    topic = TOPICS[number % len(TOPICS)]
    sentences = 6 + 20 * (number % 3)  # one to several chunks per page
    return " ".join(f"Page {number} line {i} tells of {topic} and the people who keep them."
                    for i in range(sentences))


def text_pdf(pages: int) -> bytes:
    return samples.pdf([page_text(number) for number in range(1, pages + 1)])


@pytest.fixture(scope="module")
def fanout_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(data_dir=Path(tmp_path_factory.mktemp("fanout-stack")), env=FANOUT_ENV)
    try:
        local.redis = RedisServer(local.data_dir / "redis").start()
        local.redis_url = local.redis.url
        local.start_worker(Stage.EXTRACT, concurrency=2)
        local.start_worker(Stage.EMBED)
        local.start_worker(Stage.INDEX)
        local.start_gateway()
        for stage in Stage:
            local.wait_for_worker(stage)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def api(fanout_stack: LocalStack) -> Api:
    return Api(fanout_stack.gateway_url, KEY_A, TENANT_A)


def stored_artifact(stack: LocalStack, record: dict, artifact: str) -> bytes:
    msg = PipelineMessage(document_id=record["document_id"], tenant=TENANT_A, version=record["version"],
                          content_type=record["content_type"], original_key="unused")
    return (stack.data_dir / "storage" / msg.key(artifact)).read_bytes()


def test_a_big_pdf_is_chunked_exactly_as_one_task_would(fanout_stack, api):
    original = text_pdf(14)
    document_id = api.upload("atlas.pdf", original)
    record = api.wait_final(document_id, timeout=120)

    assert record["status"] == "completed", record
    assert record["pages"] == 14
    fanned = json.loads(stored_artifact(fanout_stack, record, "chunks.json"))
    settings = Settings()
    single = chunk_pages(read_pdf(original, settings, lambda done, total: None),
                         settings.chunk_tokens, settings.chunk_overlap_tokens)
    assert fanned == [chunk.model_dump() for chunk in single]
    assert record["chunks"] == record["vectors"] == len(single)

    hits = api.search("Page 13 line 2 tells of bridges", top_k=3)
    assert any(hit["document_id"] == document_id and hit["page"] == 13 for hit in hits), hits
    # The chord took over the extract task's id: the chain reports every stage as usual.
    task = api.http.get(f"/v1/tasks/{record['task_id']}").json()
    assert [stage["state"] for stage in task["stages"]] == ["SUCCESS"] * 3, task


def test_progress_counts_pages_across_ranges_and_never_goes_back(api):
    document_id = api.upload("long.pdf", text_pdf(90))
    seen: list[tuple[str, int, int | None]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = api.document(document_id)
        seen.append((record["status"], record["progress"], record["pages"]))
        if record["status"] in FINAL:
            break
        time.sleep(0.02)

    assert seen[-1][0] == "completed", seen[-1]
    progress = [value for _, value, _ in seen]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    extracting = [(value, pages) for status, value, pages in seen if status == "extracting"]
    assert any(0 < value < 40 for value, _ in extracting), f"no pages-done progress seen: {seen}"
    assert all(pages in (None, 90) for _, pages in extracting)


def pdf_with_a_broken_page(pages: int, broken: int) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(pages))))
    contents = StreamObject()
    contents._data = b"q Q"
    contents[NameObject("/Filter")] = NameObject("/NoSuchDecode")  # no reader can decode it
    writer.pages[broken - 1][NameObject("/Contents")] = writer._add_object(contents)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_failed_range_fails_the_document_with_the_ranges_error(api):
    document_id = api.upload("damaged.pdf", pdf_with_a_broken_page(pages=12, broken=8))
    record = api.wait_final(document_id, timeout=120)

    assert record["status"] == "failed", record
    assert record["error"]["code"] == "corrupt_file"
    assert record["error"]["stage"] == "extract"
    assert "Unsupported filter /NoSuchDecode" in record["error"]["message"]
    assert record["vectors"] is None, "nothing after the failed stage ran"
    # The failed range also failed the extract stage's own task id (the chord's merge
    # never ran), so the run's status shows where it stopped; embedding never started.
    task = api.http.get(f"/v1/tasks/{record['task_id']}").json()
    assert task["state"] == "FAILURE", task
    assert [stage["state"] for stage in task["stages"][:2]] == ["FAILURE", "PENDING"], task

"""The console at /console, used as a person would: a key typed in, files picked with
the file input, a search run and a hit opened, a dead letter replayed by an operator.
Each main view is saved as a screenshot in docs/ (linked from the README).

Everything a user or a document controls is rendered as text: the XSS test uploads a
file named like an <img> tag, with such metadata and text, and checks that no script
ran (no dialog) and no element was injected.
"""

import json
import random
import re
import string
import uuid

import httpx
from playwright.sync_api import expect

from docflow.devstack import hostile, samples
from docflow.devstack.faults import unavailable, wait_for

from .conftest import KEY, LIMITED_KEY, SEARCHES_PER_MINUTE, WAIT_MS
from tests.e2e.conftest import ADMIN_KEY

# Every DOM change of the list's rows, as [document id, status, progress], recorded by
# the page itself: rows are replaced on each change, so each added row is one step.
RECORD_ROWS = """() => {
  window.rowHistory = [];
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      for (const node of mutation.addedNodes) {
        if (node.nodeType === 1 && node.dataset.documentId) {
          window.rowHistory.push([node.dataset.documentId, node.dataset.status, Number(node.dataset.progress)]);
        }
      }
    }
  }).observe(document.getElementById("documents"), { childList: true });
}"""


def unique(word: str) -> str:
    return f"{word}-{uuid.uuid4().hex[:8]}"


def unique_word(word: str) -> str:
    """One word to the search's tokenizer (letters only), found in no other document."""
    return word + "".join(random.choices(string.ascii_lowercase, k=8))


def file_payload(name: str, data: bytes, mime: str) -> dict:
    return {"name": name, "mimeType": mime, "buffer": data}


def test_the_console_is_served_with_a_strict_content_security_policy(console_stack):
    page = httpx.get(f"{console_stack.gateway_url}/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{console_stack.gateway_url}/console/console.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == policy
    for name in ("conftest.py", "..%2Fmain.py", "missing.js"):
        assert httpx.get(f"{console_stack.gateway_url}/console/{name}").status_code == 404


def test_a_refused_key_shows_an_error_and_is_not_kept(console):
    page = console.open("not-a-key")
    expect(page.locator("#alert")).to_be_visible()
    expect(page.locator("#alert-text")).to_contain_text("Key refused")
    expect(page.locator("#key-state")).to_contain_text("Key refused")
    expect(page.locator("#key-view")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0
    assert console.dialogs == []


def test_three_files_picked_by_the_file_input_move_to_completed(console, api):
    page = console.open(KEY)
    expect(page.locator("#live")).to_have_attribute("data-mode", "live")
    page.evaluate(RECORD_ROWS)
    words = unique("pelican")
    files = [
        file_payload(f"{words}-report.pdf", samples.pdf([f"Page one of the {words} report.",
                                                          "Page two: the harbour ledger."]), "application/pdf"),
        file_payload(f"{words}-letter.docx", samples.docx([f"Dear {words} team,", "The ferry runs at nine."]),
                     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        file_payload(f"{words}-notes.txt", samples.text([f"Notes on {words}: herons at the weir."]), "text/plain"),
    ]
    page.set_input_files("#file-input", files)

    for file in files:
        expect(console.row(file["name"])).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
        expect(console.row(file["name"]).locator("progress")).to_have_attribute("value", "100")
    ids = {file["name"]: console.row(file["name"]).get_attribute("data-document-id") for file in files}
    history = page.evaluate("() => window.rowHistory")
    for name, document_id in ids.items():
        steps = [progress for row_id, _, progress in history if row_id == document_id]
        assert steps == sorted(steps), f"{name}: progress went backwards: {steps}"
        assert steps[0] < 100 and steps[-1] == 100, f"{name}: {steps}"
        assert any(0 < p < 100 for p in steps), f"{name}: the bar never showed a step between: {steps}"
        assert api.document(document_id)["status"] == "completed"
    console.screenshot("documents")


def test_a_corrupt_pdf_fails_showing_its_error_code(console):
    page = console.open(KEY)
    name = unique("broken") + ".pdf"
    page.set_input_files("#file-input", [file_payload(name, hostile.corrupt_pdf(), "application/pdf")])
    row = console.row(name)
    expect(row).to_have_attribute("data-status", "failed", timeout=WAIT_MS)
    expect(row.locator(".error-code")).to_have_text("corrupt_file")
    expect(row.locator(".doc-error")).to_contain_text("stage: extract")
    row.locator("button.doc-name").click()  # its text was never stored: the document view says why
    expect(page.locator("#chunks-section")).to_have_attribute("data-state", "waiting")
    expect(page.locator("#chunks-section .state")).to_contain_text("failed (corrupt_file at extract")


def test_a_search_finds_a_document_and_opens_it_at_the_hit(console, api):
    word = unique_word("quokka")
    name = f"{word}-field-notes.txt"
    document_id = api.upload(name, samples.text([
        f"The {word} colony on the island was counted at dawn.",
        "Rangers logged the tides and the wind for the survey."]))
    assert api.wait_final(document_id)["status"] == "completed"

    page = console.open(KEY)
    page.click("#nav button[data-view=search]")
    page.fill("#query", f"{word} colony")
    page.select_option("#mode", "hybrid")
    page.click("#search-form button[type=submit]")
    hit = page.locator("li.hit", has=page.locator(".hit-name", has_text=name)).first
    expect(hit).to_be_visible()
    expect(hit.locator("mark").first).to_have_text(word)
    console.screenshot("search")

    hit.locator("button.hit-open").click()
    expect(page.locator("#document-view")).to_be_visible()
    expect(page.locator("#document-title")).to_have_text(name)
    expect(page.locator("#matched-chunk .chunk-text")).to_contain_text(f"The {word} colony")
    expect(page.locator("#matched-chunk mark").first).to_have_text(word)
    current = page.locator("#chunks-section li.current")  # the document's chunks, at the hit
    expect(current).to_have_attribute("data-chunk-index", page.locator("#matched-chunk").get_attribute(
        "data-chunk-index"))
    expect(current.locator("mark").first).to_have_text(word)
    expect(page.locator("#timeline li[data-type=completed]")).to_have_count(1)
    expect(page.locator("#detail-summary dd").first).to_have_text(document_id)
    console.screenshot("document")


def test_names_metadata_and_text_are_shown_as_text_never_run(console, api):
    attack = "<img src=x onerror=alert(1)>"
    name = attack + ".txt"
    metadata = {"title": attack, "<script>alert(2)</script>": "<svg onload=alert(3)>"}
    marker = unique_word("zebrafish")
    text = f"{marker} {attack} <script>alert(4)</script> <svg onload=alert(5)> end"

    page = console.open(KEY)
    page.fill("#upload-metadata", json.dumps(metadata))
    page.set_input_files("#file-input", [file_payload(name, text.encode(), "text/plain")])
    row = console.row(name)
    expect(row).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
    expect(row.locator(".doc-name")).to_have_text(name)

    page.click("#nav button[data-view=search]")
    page.fill("#query", marker)
    page.click("#search-form button[type=submit]")
    hit = page.locator("li.hit", has=page.locator(".hit-name", has_text=name)).first
    expect(hit.locator(".hit-text")).to_contain_text(attack)
    hit.locator("button.hit-open").click()
    expect(page.locator("#document-title")).to_have_text(name)
    expect(page.locator("pre.metadata")).to_contain_text('"<script>alert(2)</script>": "<svg onload=alert(3)>"')
    expect(page.locator("#matched-chunk .chunk-text")).to_contain_text("<script>alert(4)</script>")

    page.wait_for_timeout(500)  # an injected onerror/onload would have fired by now
    assert console.dialogs == []
    assert page.locator("img").count() == 0
    assert page.locator("svg").count() == 0
    assert page.locator("script").count() == 1, "only the console's own module script"
    assert page.evaluate("() => document.querySelectorAll('[onerror], [onload]').length") == 0


def test_an_operator_replays_a_dead_letter(console, console_stack, api, admin):
    vector_store = console_stack.data_dir / "lancedb"
    vector_store.mkdir(exist_ok=True)
    with unavailable(vector_store):
        document_id = api.upload(unique("outage") + ".txt", samples.text(["Otters fish below the weir."]))
        failed = api.wait_final(document_id, timeout=60)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "vector_store_unavailable")
    wait_for(lambda: [d for d in admin.dead_letters() if d["document_id"] == document_id], 30, "its dead letter")

    page = console.open(ADMIN_KEY)
    expect(page.locator("#admin-view")).to_be_visible()
    expect(page.locator("#nav button[data-view=documents]")).to_be_hidden()
    letter = page.locator(f"li.letter[data-document-id='{document_id}']")
    expect(letter.locator(".error-code")).to_have_text("vector_store_unavailable")
    expect(page.locator("#queues tbody tr")).not_to_have_count(0)
    expect(page.locator("#workers tbody tr").first).to_contain_text("@")
    console.screenshot("admin")

    letter.get_by_role("button", name="Replay").click()
    expect(page.locator("#alert-text")).to_contain_text(f"document {document_id} is back in flight")
    expect(letter).to_have_count(0)
    assert api.wait_final(document_id, timeout=60)["status"] == "completed"


def test_the_list_fits_a_phone_screen(phone, api):
    if not api.http.get("/v1/documents", params={"limit": 1}).json()["total"]:
        api.upload(unique("phone") + ".txt", samples.text(["A document to list on a phone."]))
    page = phone.open(KEY)
    expect(page.locator("li.doc").first).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"
    box = page.locator("li.doc").first.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    phone.screenshot("phone")


def tab_to(page, selector: str, presses: int = 40) -> None:
    """Press Tab until the element matching `selector` (once it is shown) has the focus."""
    page.locator(selector).first.wait_for()
    for _ in range(presses):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} never took the focus by Tab")


def test_the_keyboard_alone_signs_in_searches_and_opens_a_hit(console, api):
    word = unique_word("ibis")
    document_id = api.upload(f"{word}.txt", samples.text([f"The {word} feeds on the mudflats at low tide."]))
    assert api.wait_final(document_id)["status"] == "completed"
    page = console.open()
    tab_to(page, "#key-input")
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#documents-view")).to_be_visible()
    tab_to(page, "#nav button[data-view=search]")
    page.keyboard.press("Enter")
    expect(page.locator("#query")).to_be_focused()
    page.keyboard.type(word)
    page.keyboard.press("Enter")
    tab_to(page, "li.hit button.hit-open")
    page.keyboard.press("Enter")
    expect(page.locator("#document-title")).to_have_text(f"{word}.txt")


def test_a_gateway_that_goes_away_is_said_so_and_the_list_is_polled_until_it_is_back(console, console_stack, api):
    page = console.open(KEY)
    expect(page.locator("#live")).to_have_attribute("data-mode", "live")
    console_stack.gateway.stop(timeout=5)
    try:
        expect(page.locator("#live")).to_have_attribute("data-mode", "polling")
        page.click("#refresh-documents")
        expect(page.locator("#alert-text")).to_contain_text("The gateway cannot be reached")
        expect(page.locator("#documents-state")).to_contain_text("The gateway cannot be reached")
    finally:
        console_stack.start_gateway()
    name = unique("after-the-outage") + ".txt"
    api.upload(name, samples.text(["Uploaded once the gateway was back."]))
    expect(console.row(name)).to_be_visible()  # by polling, or by the stream reopened
    expect(page.locator("#live")).to_have_attribute("data-mode", "live")


def test_a_rate_limited_search_says_when_to_retry(console, console_stack):
    spender = httpx.Client(base_url=console_stack.gateway_url, headers={"Authorization": f"Bearer {LIMITED_KEY}"})
    for _ in range(SEARCHES_PER_MINUTE * 2):
        if spender.post("/v1/search", json={"query": "anything"}).status_code == 429:
            break
    else:
        raise AssertionError("the search budget was never spent")
    page = console.open(LIMITED_KEY)
    page.click("#nav button[data-view=search]")
    page.fill("#query", "anything")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#search-state")).to_have_attribute("data-kind", "error")
    told = re.compile(r"Too many requests: retry in \d+ s\.")
    expect(page.locator("#search-state")).to_have_text(told)
    expect(page.locator("#alert-text")).to_have_text(told)


def test_a_dropped_file_is_uploaded_then_reprocessed_and_deleted_from_its_row(console, api):
    page = console.open(KEY)
    name = unique("dropped") + ".txt"
    page.evaluate("""([name, text]) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([text], name, { type: "text/plain" }));
      document.getElementById("drop-zone").dispatchEvent(
        new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [name, "Dropped on the console: cormorants dry their wings on the pier."])
    row = console.row(name)
    expect(row).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
    document_id = row.get_attribute("data-document-id")

    page.evaluate(RECORD_ROWS)
    row.get_by_role("button", name="Reprocess").click()
    wait_for(lambda: api.document(document_id)["version"] == 2, 30, "the second version")
    assert api.wait_final(document_id)["status"] == "completed"
    wait_for(lambda: page.evaluate("() => window.rowHistory").count([document_id, "completed", 100]) >= 1, 30,
             "the second version's completion in the row")
    statuses = [status for row_id, status, _ in page.evaluate("() => window.rowHistory") if row_id == document_id]
    assert statuses[0] != "completed" and statuses[-1] == "completed", statuses

    delete = row.get_by_role("button", name="Delete")
    delete.click()
    row.get_by_role("button", name="Really delete?").click()
    expect(row).to_have_count(0)
    assert api.http.get(f"/v1/documents/{document_id}").status_code == 404


def test_an_opened_document_shows_its_chunks_and_pages_paged(console, api):
    word = unique_word("albatross")
    sections = [f"Section {n} of the {word} almanac. " + "The tide tables list the hour of each high water "
                "at the harbour, and the keeper notes the wind, the swell and the birds on the cliffs. " * 7
                for n in range(1, 27)]
    name = f"{word}-almanac.txt"
    page = console.open(KEY)
    page.set_input_files("#file-input", [file_payload(name, samples.text(sections), "text/plain")])
    # Opened as soon as it is accepted: the chunks appear when the extractor has stored
    # them (the document's events say so), or straight away if it already has.
    row = console.row(name)
    expect(row).to_have_attribute("data-document-id", re.compile(r"^\w+$"))
    document_id = row.get_attribute("data-document-id")
    row.locator("button.doc-name").click()
    expect(page.locator("#document-title")).to_have_text(name)
    chunks = page.locator("#chunks-section")
    expect(chunks).to_have_attribute("data-state", "shown", timeout=WAIT_MS)

    stored = api.http.get(f"/v1/documents/{document_id}/chunks", params={"limit": 100}).json()
    total, texts = stored["total"], [chunk["text"] for chunk in stored["chunks"]]
    assert 20 < total <= 40, f"{total} chunks: the text should make two pages of 20"
    expect(chunks.locator(".pager-info")).to_have_text(f"1–20 of {total}")
    expect(chunks.locator("li.chunk .chunk-text")).to_have_text(texts[:20])
    expect(chunks.locator("button.previous")).to_be_disabled()

    chunks.locator("button.next").click()
    expect(chunks.locator(".pager-info")).to_have_text(f"21–{total} of {total}")
    expect(chunks.locator("li.chunk .chunk-text")).to_have_text(texts[20:])
    expect(chunks.locator("li.chunk").last).to_have_attribute("data-chunk-index", str(total - 1))
    expect(chunks.locator("button.next")).to_be_disabled()
    chunks.locator("button.previous").click()
    expect(chunks.locator("li.chunk .chunk-text").first).to_have_text(texts[0])

    pages = page.locator("#pages-section")
    expect(pages.locator(".pager-info")).to_have_text("1–1 of 1")
    expect(pages.locator("li.page .where")).to_have_text("part 1 (this format has no fixed pages)")
    expect(pages.locator("li.page .page-text")).to_contain_text(f"Section 26 of the {word} almanac.")

    # A reprocess makes version 2 current: the view shows its text once it is stored.
    page.locator("#detail-summary").get_by_role("button", name="Reprocess").click()
    expect(chunks.locator("h3")).to_have_text("Chunks (version 2)", timeout=WAIT_MS)
    expect(chunks.locator("li.chunk .chunk-text")).to_have_text(texts[:20])
    assert console.dialogs == []

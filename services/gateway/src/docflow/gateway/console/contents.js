// A document's text in the document view: its pages and its chunks, 20 at a time
// (GET /v1/documents/{id}/pages and /chunks, the current version's stored artifacts).
//
// Text goes in as text nodes only (dom.js). A document not extracted yet answers 409:
// the section says so, and loads itself when the document's state shows its text
// was stored (its chunk count is known) or a reprocess made another version current.

import { ApiError, query, request } from "/console/api.js";
import { button, describe, el, fill, highlighted } from "/console/dom.js";

const PAGE_SIZE = 20;
const NOT_YET = new Set(["queued", "extracting"]);

// kind: "pages" or "chunks"; one section of each per open document.
class ContentsSection {
  constructor(kind, title, documentId, hit) {
    this.kind = kind;
    this.documentId = documentId;
    this.hit = hit; // the search hit the document was opened from, or null
    this.offset = hit && kind === "chunks" ? Math.floor(hit.chunk_index / PAGE_SIZE) * PAGE_SIZE : 0;
    this.total = 0;
    this.version = null; // the version shown, or asked for when it was not extracted yet
    this.waitingAt = null; // the status the document had when it had no text yet
    this.loading = false;
    this.changedWhileLoading = null; // the newest state told while a request was out
    this.closed = false;
    this.state = el("p", { class: "state", "aria-live": "polite" });
    this.list = el("ol", { class: "contents-list " + kind });
    this.info = el("span", { class: "pager-info" });
    this.versionLabel = el("span", { class: "count" });
    this.previous = el("button", { type: "button", class: "previous", onclick: () => this.move(-PAGE_SIZE) },
      "Previous");
    this.next = el("button", { type: "button", class: "next", onclick: () => this.move(PAGE_SIZE) }, "Next");
    this.node = el("section", { id: kind + "-section", class: "contents", "aria-label": title },
      el("h3", {}, title, " ", this.versionLabel), this.state, this.list,
      el("div", { class: "pager" }, this.previous, this.info, this.next));
    this.renderPager();
  }

  move(step) {
    this.offset = Math.max(0, this.offset + step);
    this.load();
  }

  async load(doc = null) {
    this.loading = true;
    this.previous.disabled = this.next.disabled = true;
    this.setState("Loading the " + this.kind + "…");
    this.node.dataset.state = "loading";
    const asked = doc ? doc.version : this.version;
    try {
      const answer = await request("GET", query(
        "/v1/documents/" + encodeURIComponent(this.documentId) + "/" + this.kind,
        { offset: this.offset, limit: PAGE_SIZE }));
      if (this.closed) return;
      this.version = answer.version;
      this.versionLabel.textContent = "(version " + answer.version + ")";
      this.waitingAt = null;
      this.total = answer.total;
      const entries = answer[this.kind];
      fill(this.list, entries.map((entry, at) => this.kind === "chunks" ? this.chunkItem(entry)
        : this.pageItem(entry, answer.offset + at)));
      if (!answer.total) this.setState("No " + this.kind + ": no text was found in this document.");
      else if (!entries.length) this.setState("Nothing here: there are " + answer.total + " " + this.kind + ".");
      else this.setState("");
      this.node.dataset.state = "shown";
    } catch (error) {
      if (this.closed || (error && error.name === "AbortError")) return;
      this.list.replaceChildren();
      this.versionLabel.textContent = "";
      this.total = 0;
      if (error instanceof ApiError && error.status === 409) {
        this.version = asked;
        this.waitingAt = doc ? doc.status : "unknown";
        this.setState(error.detail); // why there is no text (yet), from the gateway
        this.node.dataset.state = "waiting";
      } else {
        this.setState("The " + this.kind + " cannot be shown: " + describe(error), "error");
        this.state.append(" ", button("Retry", () => this.load()));
        this.node.dataset.state = "error";
      }
    } finally {
      this.loading = false;
      if (!this.closed) this.renderPager();
    }
    const changed = this.changedWhileLoading;
    this.changedWhileLoading = null;
    if (changed) this.documentChanged(changed);
  }

  // The document's state changed (an event, an action): load again if the text shown
  // is another version's, or if it had none and now has been extracted.
  documentChanged(doc) {
    if (this.closed) return;
    if (this.loading) { // judged once the answer is in: it may be older than this state
      this.changedWhileLoading = doc;
      return;
    }
    const otherVersion = this.version !== null && doc.version !== null && doc.version !== undefined &&
      doc.version !== this.version;
    const extracted = this.waitingAt !== null && doc.status !== this.waitingAt && !NOT_YET.has(doc.status) &&
      doc.chunks !== null && doc.chunks !== undefined;
    if (otherVersion) this.offset = 0;
    if (otherVersion || extracted) this.load(doc);
  }

  chunkItem(chunk) {
    const where = ["chunk " + chunk.index];
    if (chunk.page !== null && chunk.page !== undefined) where.push("page " + chunk.page);
    const isHit = this.hit && this.hit.chunk_index === chunk.index;
    // The hit's highlights fit this text only if it is the text the hit was found in.
    const text = isHit && this.hit.text === chunk.text
      ? highlighted(chunk.text, this.hit.highlights) : chunk.text;
    return el("li", { class: "chunk" + (isHit ? " current" : ""), "data-chunk-index": chunk.index,
                      "aria-current": isHit ? "true" : null },
      el("p", { class: "where" }, where.join(" · ") + (isHit ? " · the search hit" : "")),
      el("p", { class: "chunk-text" }, text));
  }

  pageItem(page, position) {
    const label = page.page !== null && page.page !== undefined ? "page " + page.page
      : "part " + (position + 1) + " (this format has no fixed pages)";
    return el("li", { class: "page", "data-page": page.page ?? "" },
      el("p", { class: "where" }, label),
      page.text.trim() ? el("p", { class: "page-text" }, page.text)
        : el("p", { class: "state" }, "(blank page)"));
  }

  renderPager() {
    const shown = this.list.children.length;
    const first = shown ? this.offset + 1 : 0;
    this.info.textContent = shown || this.total
      ? first + "–" + (this.offset + shown) + " of " + this.total : "";
    this.previous.disabled = this.loading || this.offset === 0;
    this.next.disabled = this.loading || this.offset + PAGE_SIZE >= this.total;
  }

  setState(text, kind = "info") {
    this.state.textContent = text;
    this.state.dataset.kind = kind;
    this.state.hidden = !text;
  }
}

// The chunks and pages sections of an open document (the chunks first: they are what
// search finds, and a hit opens them at its chunk).
export function documentContents(doc, hit = null) {
  const sections = [new ContentsSection("chunks", "Chunks", doc.document_id, hit),
    new ContentsSection("pages", "Pages", doc.document_id, null)];
  for (const section of sections) section.load(doc);
  return {
    nodes: sections.map((section) => section.node),
    documentChanged: (changed) => sections.forEach((section) => section.documentChanged(changed)),
    close: () => sections.forEach((section) => { section.closed = true; }),
  };
}

// The Documents view (list, uploads, live progress) and one document's page.
//
// Live progress comes from the tenant's event stream (GET /v1/events, read with fetch
// because EventSource cannot send the key); while the stream is down the list is
// polled instead, and the stream is tried again.

import { ApiError, events, query, request } from "/console/api.js";
import { documentContents } from "/console/contents.js";
import {
  $, bytes, button, confirmingButton, describe, el, fill, highlighted, report, setState, showAlert, sleep, when,
} from "/console/dom.js";

const FINAL = new Set(["completed", "failed", "cancelled"]);
const PAGE_SIZE = 20;
const UPLOADS_AT_ONCE = 3;
const POLL_MS = 2000;
const UPLOAD_RETRIES = 5;

const list = {
  status: "",
  offset: 0,
  total: 0,
  records: new Map(), // document id -> the document as last seen
  rows: new Map(), // document id -> its <li>
};
// Events of documents whose upload has not answered yet: applied when it does, so the
// bar shows every step even of a document that finished before its upload's answer.
const early = new Map();
let uploading = 0;
const live = { controller: null, lastEventId: null, pollTimer: null };
const detail = { id: null, controller: null, record: null, contents: null };

const encode = encodeURIComponent;
const newer = (a, b) => !b || !a || Date.parse(a) >= Date.parse(b);

// --- the list ---------------------------------------------------------------------------
export async function loadDocuments({ quiet = false } = {}) {
  if (!quiet) setState("documents-state", "Loading…");
  try {
    const page = await request("GET", query("/v1/documents", {
      status: list.status, limit: PAGE_SIZE, offset: list.offset,
    }));
    list.total = page.total;
    list.records = new Map(page.documents.map((doc) => [doc.document_id, doc]));
    renderList(page.documents);
  } catch (error) {
    if (quiet) return; // polling: the stream or the next poll will tell
    setState("documents-state", describe(error), "error");
    report(error);
  }
}

function renderList(documents) {
  const ul = $("documents");
  const uploads = [...ul.querySelectorAll("li.upload")]; // still uploading: kept on top
  list.rows = new Map(documents.map((doc) => [doc.document_id, documentRow(doc)]));
  ul.replaceChildren(...uploads, ...list.rows.values());
  renderPager();
  if (!list.total && !uploads.length) {
    setState("documents-state", list.status ? "No " + list.status + " documents." :
      "No documents yet: drop some files above.");
  } else {
    setState("documents-state", "");
  }
}

function renderPager() {
  const first = list.total ? list.offset + 1 : 0;
  $("page-info").textContent = first + "–" + (list.offset + list.rows.size) + " of " + list.total;
  $("newer").disabled = list.offset === 0;
  $("older").disabled = list.offset + PAGE_SIZE >= list.total;
}

// A document that appeared while the list is on screen: on top, counted.
function showNew(doc) {
  list.records.set(doc.document_id, doc);
  const row = documentRow(doc);
  list.rows.set(doc.document_id, row);
  list.total += 1;
  renderPager();
  setState("documents-state", "");
  return row;
}

const plural = (count, word) => count + " " + word + (count === 1 ? "" : "s");

function documentRow(doc) {
  const final = FINAL.has(doc.status);
  const facts = [doc.progress + "%"];
  if (doc.stage) facts.push(doc.stage);
  if (doc.pages !== null && doc.pages !== undefined) facts.push(plural(doc.pages, "page"));
  if (doc.chunks !== null && doc.chunks !== undefined) facts.push(plural(doc.chunks, "chunk"));
  if (doc.created_at) facts.push(when(doc.created_at));
  return el("li", { class: "doc", "data-document-id": doc.document_id, "data-status": doc.status,
                    "data-progress": doc.progress },
    el("div", { class: "doc-head" },
      button(doc.filename, () => openDocument(doc.document_id), { class: "link doc-name" }),
      el("span", { class: "badge status-" + doc.status }, doc.status)),
    el("progress", { max: 100, value: doc.progress, "aria-label": "Progress of " + doc.filename }),
    el("div", { class: "doc-facts" }, facts.join(" · ")),
    doc.error ? errorLine(doc.error) : null,
    el("div", { class: "actions" }, actionsFor(doc, final)));
}

function errorLine(error) {
  return el("p", { class: "doc-error" },
    el("code", { class: "error-code" }, error.code), " ", error.message,
    error.stage ? " (stage: " + error.stage + ")" : "");
}

function actionsFor(doc, final) {
  return [
    final ? null : button("Cancel", () => act(doc.document_id, "cancel")),
    final ? button("Reprocess", () => act(doc.document_id, "reprocess")) : null,
    confirmingButton("Delete", () => act(doc.document_id, "delete")),
  ];
}

async function act(id, action) {
  try {
    if (action === "delete") {
      await request("DELETE", "/v1/documents/" + encode(id));
      forget(id);
      if (detail.id === id) document.dispatchEvent(new CustomEvent("docflow:show", { detail: "documents" }));
    } else {
      await request("POST", "/v1/documents/" + encode(id) + "/" + action);
      await refresh(id);
    }
  } catch (error) {
    report(error);
  }
}

// Show a document's new state wherever it is on screen.
function update(doc) {
  list.records.set(doc.document_id, doc);
  const old = list.rows.get(doc.document_id);
  if (old) {
    const row = documentRow(doc);
    old.replaceWith(row);
    list.rows.set(doc.document_id, row);
  }
  if (detail.id === doc.document_id) {
    detail.record = doc;
    renderSummary(doc);
    if (detail.contents) detail.contents.documentChanged(doc);
  }
}

function forget(id) {
  list.records.delete(id);
  const row = list.rows.get(id);
  if (!row) return;
  row.remove();
  list.rows.delete(id);
  list.total = Math.max(0, list.total - 1);
  renderPager();
}

async function refresh(id) {
  try {
    const doc = await request("GET", "/v1/documents/" + encode(id));
    const known = list.records.get(id);
    // An answer older than the events already shown still brings what events do not
    // carry (the stored name, created_at, attempts): those, with the newer state.
    update(!known || newer(doc.updated_at, known.updated_at) ? doc : withState(doc, known));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) forget(id);
    else report(error);
  }
}

// The fields an event carries, from `state` onto `doc`.
const STATE_FIELDS = ["status", "stage", "progress", "pages", "chunks", "vectors", "version", "error"];
function withState(doc, state, updatedAt = state.updated_at) {
  const merged = { ...doc, updated_at: updatedAt };
  for (const name of STATE_FIELDS) merged[name] = state[name];
  return merged;
}

// A change told by an event: merged into the document as seen (events carry its
// state after the change); an older answer never overwrites a newer state.
function applyEvent(event) {
  const change = event.data;
  const known = list.records.get(change.document_id) || (detail.id === change.document_id && detail.record);
  if (change.type === "deleted") {
    forget(change.document_id);
    return;
  }
  if (!known) {
    if (uploading) {
      const waiting = early.get(change.document_id) || [];
      waiting.push(change);
      early.set(change.document_id, waiting);
    } else if (change.type === "created" && list.offset === 0 && !list.status) {
      adoptNew(change.document_id); // uploaded elsewhere (another tab, the CLI)
    }
    return;
  }
  if (!newer(change.timestamp, known.updated_at)) return;
  update(withState(known, change, change.timestamp));
}

async function adoptNew(id) {
  if (list.records.has(id)) return;
  try {
    const doc = await request("GET", "/v1/documents/" + encode(id));
    if (list.records.has(id)) return;
    $("documents").insertBefore(showNew(doc), $("documents").querySelector("li.doc:not(.upload)"));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) report(error);
  }
}

// --- uploads ----------------------------------------------------------------------------
export function uploadFiles(files) {
  const metadata = $("upload-metadata").value.trim();
  if (metadata) {
    let parsed;
    try {
      parsed = JSON.parse(metadata);
    } catch (error) {
      showAlert("The metadata is not valid JSON: " + error.message);
      return;
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      showAlert("The metadata must be a JSON object, like {\"department\": \"legal\"}.");
      return;
    }
  }
  const ul = $("documents");
  const waiting = [...files].map((file) => ({ file, row: uploadRow(file) }));
  ul.prepend(...waiting.map((item) => item.row));
  setState("documents-state", "");
  uploading += waiting.length;
  const next = async () => {
    for (let item = waiting.shift(); item; item = waiting.shift()) {
      await uploadOne(item.file, item.row, metadata);
      uploading -= 1;
    }
    if (!uploading) adoptLeftovers();
  };
  for (let i = 0; i < UPLOADS_AT_ONCE; i += 1) next();
}

// Uploads are done: documents created meanwhile that none of them answered with were
// uploaded elsewhere (another tab, the CLI), and are shown as such.
function adoptLeftovers() {
  for (const [id, changes] of early) {
    if (changes.some((change) => change.type === "created") && list.offset === 0 && !list.status) adoptNew(id);
  }
  early.clear();
}

function uploadRow(file) {
  return el("li", { class: "doc upload", "data-status": "uploading", "data-upload-name": file.name },
    el("div", { class: "doc-head" },
      el("span", { class: "doc-name" }, file.name),
      el("span", { class: "badge status-uploading" }, "uploading")),
    el("progress", { "aria-label": "Uploading " + file.name }),
    el("div", { class: "doc-facts" }, bytes(file.size)));
}

async function uploadOne(file, row, metadata) {
  for (let attempt = 0; ; attempt += 1) {
    const form = new FormData();
    form.append("file", file, file.name);
    if (metadata) form.append("metadata", metadata);
    try {
      const accepted = await request("POST", "/v1/documents", { form });
      adopt(row, accepted, file);
      return;
    } catch (error) {
      const busy = error instanceof ApiError && (error.status === 429 || error.status === 503);
      if (busy && attempt < UPLOAD_RETRIES) {
        row.querySelector(".doc-facts").textContent = describe(error);
        await sleep((error.retryAfter || 5) * 1000);
        continue;
      }
      row.classList.remove("upload");
      row.dataset.status = "rejected";
      row.querySelector(".badge").textContent = "rejected";
      row.querySelector(".badge").className = "badge status-failed";
      row.querySelector("progress").remove();
      row.querySelector(".doc-facts").replaceWith(el("p", { class: "doc-error" }, describe(error)));
      row.append(el("div", { class: "actions" }, button("Dismiss", () => row.remove())));
      if (error instanceof ApiError && error.status === 401) report(error);
      return;
    }
  }
}

// The upload was accepted: its row becomes the document's, at the state its events
// tell (those that came before this answer are replayed in order), then the record
// fills in what events do not carry (created_at, the stored name).
function adopt(row, accepted, file) {
  const id = accepted.document_id;
  if (list.rows.has(id)) { // already shown: a duplicate of a listed document
    row.remove();
    refresh(id);
    return;
  }
  const doc = {
    document_id: id, filename: file.name, status: accepted.status, progress: 0, stage: null, pages: null,
    chunks: null, vectors: null, version: null, error: null, created_at: null, updated_at: null,
  };
  row.replaceWith(showNew(doc));
  for (const change of early.get(id) || []) applyEvent({ data: change });
  early.delete(id);
  refresh(id);
}

// --- following the tenant's events ------------------------------------------------------
export async function followEvents() {
  stopEvents();
  const controller = new AbortController();
  live.controller = controller;
  live.lastEventId = null;
  let failures = 0;
  while (!controller.signal.aborted) {
    try {
      for await (const event of events("/v1/events", { lastEventId: live.lastEventId, signal: controller.signal })) {
        if (event.event === "open") {
          stopPolling();
          setLive("live", "Live");
          if (failures) loadDocuments({ quiet: true }); // whatever changed while it was down
          failures = 0;
          continue;
        }
        if (event.id) live.lastEventId = event.id;
        if (event.event === "reset") loadDocuments({ quiet: true });
        else if (event.event !== "ready") applyEvent(event);
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) { report(error); return; }
    }
    failures += 1;
    setLive("polling", "Polling (live events unavailable)");
    startPolling();
    await sleep(failures > 3 ? 10000 : 3000, controller.signal);
  }
}

export function stopEvents() {
  if (live.controller) live.controller.abort();
  live.controller = null;
  stopPolling();
  setLive("off", "");
}

function startPolling() {
  if (!live.pollTimer) live.pollTimer = setInterval(() => loadDocuments({ quiet: true }), POLL_MS);
}

function stopPolling() {
  clearInterval(live.pollTimer);
  live.pollTimer = null;
}

function setLive(mode, text) {
  $("live").dataset.mode = mode;
  $("live").textContent = text;
}

// --- controls ---------------------------------------------------------------------------
export function bindDocumentControls() {
  $("status-filter").addEventListener("change", (event) => {
    list.status = event.target.value;
    list.offset = 0;
    loadDocuments();
  });
  $("refresh-documents").addEventListener("click", () => loadDocuments());
  $("newer").addEventListener("click", () => { list.offset = Math.max(0, list.offset - PAGE_SIZE); loadDocuments(); });
  $("older").addEventListener("click", () => { list.offset += PAGE_SIZE; loadDocuments(); });
  for (const id of ["file-input", "folder-input"]) {
    $(id).addEventListener("change", (event) => {
      const files = [...event.target.files].filter((file) => !file.name.startsWith("."));
      if (files.length) uploadFiles(files);
      event.target.value = ""; // the same files may be picked again
    });
  }
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = await droppedFiles(event.dataTransfer);
    if (files.length) uploadFiles(files);
  });
  $("back-to-list").addEventListener("click", () => {
    document.dispatchEvent(new CustomEvent("docflow:show", { detail: "documents" }));
  });
}

// Files and folders dropped: folders are walked (hidden files left out). The entries
// are taken before the first await, while the drop's data is still readable.
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  const files = [];
  const walk = async (entry) => {
    if (entry.name.startsWith(".")) return;
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}

// --- one document -----------------------------------------------------------------------
// `hit`: the search hit it was opened from, shown as the matched chunk, and the
// document's chunks opened at it (contents.js).
export async function openDocument(id, hit = null) {
  closeDocument();
  detail.id = id;
  document.dispatchEvent(new CustomEvent("docflow:show", { detail: "document" }));
  $("document-title").textContent = "Loading…";
  const root = $("document-detail");
  root.replaceChildren(el("p", { class: "state" }, "Loading the document…"));
  let doc;
  try {
    doc = await request("GET", "/v1/documents/" + encode(id));
  } catch (error) {
    $("document-title").textContent = "Document " + id;
    root.replaceChildren(el("p", { class: "state", "data-kind": "error" }, describe(error)));
    report(error);
    return;
  }
  if (detail.id !== id) return;
  detail.record = doc;
  detail.contents = documentContents(doc, hit);
  fill(root, [
    el("div", { id: "detail-summary" }),
    hit ? matchedChunk(hit) : null,
    el("h3", {}, "Metadata"),
    Object.keys(doc.metadata).length
      ? el("pre", { class: "metadata" }, JSON.stringify(doc.metadata, null, 2))
      : el("p", { class: "state" }, "No metadata."),
    doc.metadata_error ? el("p", { class: "doc-error" }, doc.metadata_error) : null,
    el("h3", {}, "Timeline"),
    el("ol", { id: "timeline", class: "timeline" }),
    el("p", { id: "timeline-state", class: "state" }, "Loading the timeline…"),
    detail.contents.nodes]);
  renderSummary(doc);
  if (hit) $("matched-chunk").scrollIntoView({ block: "nearest" });
  followTimeline(id);
}

export function closeDocument() {
  if (detail.controller) detail.controller.abort();
  if (detail.contents) detail.contents.close();
  detail.controller = null;
  detail.id = null;
  detail.record = null;
  detail.contents = null;
}

function renderSummary(doc) {
  const summary = $("detail-summary");
  if (!summary) return;
  $("document-title").textContent = doc.filename;
  const facts = [
    ["Document id", doc.document_id], ["Status", doc.status], ["Stage", doc.stage || "—"],
    ["Progress", doc.progress + "%"], ["Attempts", doc.attempts], ["Version", doc.version],
    ["Served version", doc.served_version ?? "—"], ["Pages", doc.pages ?? "—"], ["Chunks", doc.chunks ?? "—"],
    ["Vectors", doc.vectors ?? "—"], ["Type", doc.content_type], ["Size", bytes(doc.size_bytes)],
    ["Source URL", doc.source_url || "—"],
    ["Embedding", doc.embedding_model ? doc.embedding_model + " (" + (doc.embedding_runtime || "?") + ")" : "—"],
    ["Created", when(doc.created_at)], ["Updated", when(doc.updated_at)], ["Completed", when(doc.completed_at)],
  ];
  fill(summary, [
    el("div", { class: "doc-head" }, el("span", { class: "badge status-" + doc.status }, doc.status)),
    el("progress", { max: 100, value: doc.progress, "aria-label": "Progress" }),
    doc.error ? errorLine(doc.error) : null,
    el("div", { class: "actions" }, actionsFor(doc, FINAL.has(doc.status))),
    el("dl", { class: "facts" }, facts.map(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))]))]);
}

function matchedChunk(hit) {
  const where = ["chunk " + hit.chunk_index];
  if (hit.page !== null && hit.page !== undefined) where.unshift("page " + hit.page);
  return el("section", { id: "matched-chunk", class: "matched", "data-chunk-index": hit.chunk_index },
    el("h3", {}, "Matched chunk"),
    el("p", { class: "where" }, where.join(" · ") + " · score " + hit.score.toFixed(3)),
    el("p", { class: "chunk-text" }, highlighted(hit.text, hit.highlights)));
}

// Every event the tenant's stream still keeps for this document, oldest first, then
// live ones while it is in flight. A document's stream ends at a final event, so a
// reprocessed document is read on from there until a stream brings nothing new.
async function followTimeline(id) {
  const controller = new AbortController();
  detail.controller = controller;
  let after = "0-0";
  let shown = 0;
  try {
    for (let round = 0; round < 50; round += 1) {
      let got = 0;
      for await (const event of events("/v1/documents/" + encode(id) + "/events",
        { lastEventId: after, signal: controller.signal })) {
        if (event.event === "open") continue;
        if (event.id) after = event.id;
        if (event.event === "reset") {
          $("timeline").append(el("li", { class: "reset" }, "Older events were trimmed away."));
          continue;
        }
        got += 1;
        shown += 1;
        $("timeline").append(timelineItem(event.data));
        setState("timeline-state", "");
        if (detail.record && newer(event.data.timestamp, detail.record.updated_at)) {
          update(withState(detail.record, event.data, event.data.timestamp));
        }
      }
      if (!got) break;
    }
    if (!shown) setState("timeline-state", "No events kept for this document.");
  } catch (error) {
    if (controller.signal.aborted || detail.id !== id) return;
    setState("timeline-state", "The timeline is not available: " + describe(error), "error");
  }
}

function timelineItem(change) {
  const parts = [change.type];
  if (change.status && change.status !== change.type) parts.push(change.status);
  if (change.stage) parts.push(change.stage);
  parts.push(change.progress + "%");
  if (change.version) parts.push("v" + change.version);
  return el("li", { "data-type": change.type },
    el("time", { datetime: change.timestamp }, when(change.timestamp)), " ", parts.join(" · "),
    change.error ? [" ", el("code", { class: "error-code" }, change.error.code), " ", change.error.message] : null);
}

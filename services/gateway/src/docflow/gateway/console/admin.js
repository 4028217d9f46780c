// The Admin view (operator keys): queues, workers, and dead letters with replay and
// discard. Refreshed every few seconds while it is on screen.

import { request, query } from "/console/api.js";
import { $, button, confirmingButton, describe, el, report, setState, showAlert, when } from "/console/dom.js";

const REFRESH_MS = 5000;
let timer = null;
let loading = false;

export function bindAdminControls() {
  $("refresh-admin").addEventListener("click", () => loadAdmin());
}

export function startAdmin() {
  stopAdmin();
  loadAdmin({ first: true });
  timer = setInterval(() => loadAdmin(), REFRESH_MS);
}

export function stopAdmin() {
  clearInterval(timer);
  timer = null;
}

async function loadAdmin({ first = false } = {}) {
  if (loading) return;
  loading = true;
  if (first) setState("admin-state", "Loading…");
  try {
    // Workers answer a broadcast (about a second): the other parts do not wait for it.
    const parts = [
      request("GET", "/v1/admin/queues").then(renderQueues),
      request("GET", query("/v1/admin/dead-letters", { limit: 100 })).then(renderDeadLetters),
      request("GET", "/v1/admin/workers").then(renderWorkers),
    ];
    const failed = (await Promise.allSettled(parts)).filter((part) => part.status === "rejected");
    if (failed.length) {
      setState("admin-state", describe(failed[0].reason), "error");
      if (first) report(failed[0].reason);
    } else {
      setState("admin-state", "");
    }
  } finally {
    loading = false;
  }
}

function cells(values) {
  return el("tr", {}, values.map((value) => el("td", {}, value === null || value === undefined ? "—" : String(value))));
}

function renderQueues(report_) {
  $("queues").tBodies[0].replaceChildren(...report_.queues.map((queue) => cells([
    queue.name, queue.stage, queue.backlog, queue.in_flight, queue.consumers,
    queue.oldest_message_age_seconds === null ? null : queue.oldest_message_age_seconds.toFixed(1),
  ])));
}

function renderWorkers(report_) {
  const rows = report_.workers.map((worker) => cells([
    worker.name, worker.stages.join(", "), worker.concurrency, worker.active_tasks,
    worker.embedder ? worker.embedder.model_id || worker.embedder.model : null,
  ]));
  $("workers").tBodies[0].replaceChildren(...(rows.length ? rows : [cells(["No worker answered.", "", "", "", ""])]));
}

function renderDeadLetters(page) {
  $("dead-letter-count").textContent = "(" + page.total + ")";
  const items = page.dead_letters.map(letterItem);
  $("dead-letters").replaceChildren(...(items.length ? items : [el("li", { class: "state" }, "No dead letters.")]));
}

function letterItem(letter) {
  const about = [letter.task_name, "stage " + letter.stage, letter.attempts + " attempts", when(letter.dead_lettered_at)];
  const item = el("li", { class: "letter", "data-letter-id": letter.id, "data-document-id": letter.document_id || "" },
    el("div", { class: "doc-head" },
      el("code", { class: "error-code" }, letter.error_code),
      el("span", { class: "where" }, about.join(" · "))),
    el("p", { class: "doc-error" }, letter.error_message),
    letter.document_id
      ? el("p", { class: "where" }, "document " + letter.document_id + (letter.tenant ? " · tenant " + letter.tenant : ""))
      : null,
    letter.body_excerpt ? el("pre", { class: "excerpt" }, letter.body_excerpt) : null,
    el("div", { class: "actions" },
      button("Replay", () => replay(letter, item), { disabled: !letter.replayable }),
      confirmingButton("Discard", () => discard(letter, item))));
  return item;
}

async function replay(letter, item) {
  try {
    const replayed = await request("POST", "/v1/admin/dead-letters/" + encodeURIComponent(letter.id) + "/replay");
    showAlert("Replayed " + replayed.task_name + (replayed.document_id ? ": document " + replayed.document_id +
      " is back in flight." : "."), "info");
    item.remove();
  } catch (error) {
    report(error);
  }
  loadAdmin();
}

async function discard(letter, item) {
  try {
    await request("DELETE", "/v1/admin/dead-letters/" + encodeURIComponent(letter.id));
    showAlert("Dead letter discarded.", "info");
    item.remove();
  } catch (error) {
    report(error);
  }
  loadAdmin();
}

// The Search view: a query with its mode and metadata filter (POST /v1/search); a hit
// opens its document at the matched chunk.

import { request } from "/console/api.js";
import { $, describe, el, highlighted, report, setState } from "/console/dom.js";
import { openDocument } from "/console/documents.js";

export function bindSearchControls() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
}

async function search() {
  const body = { query: $("query").value, top_k: Number($("top-k").value) || 10 };
  if ($("mode").value) body.mode = $("mode").value;
  const filter = $("search-filter").value.trim();
  if (filter) {
    try {
      body.filter = JSON.parse(filter);
    } catch (error) {
      setState("search-state", "The filter is not valid JSON: " + error.message, "error");
      return;
    }
  }
  setState("search-state", "Searching…");
  $("results").replaceChildren();
  try {
    const answer = await request("POST", "/v1/search", { body });
    const how = answer.mode + (answer.reranked ? ", reranked" : "");
    setState("search-state", answer.results.length
      ? answer.results.length + " results (" + how + ")"
      : "No results (" + how + "). Try other words, another mode, or no filter.");
    $("results").replaceChildren(...answer.results.map(hitItem));
  } catch (error) {
    setState("search-state", describe(error), "error");
    report(error);
  }
}

function hitItem(hit) {
  const where = ["chunk " + hit.chunk_index, "score " + hit.score.toFixed(3)];
  if (hit.page !== null && hit.page !== undefined) where.unshift("page " + hit.page);
  return el("li", { class: "hit", "data-document-id": hit.document_id },
    el("button", { type: "button", class: "hit-open", onclick: () => openDocument(hit.document_id, hit) },
      el("span", { class: "hit-name" }, hit.filename),
      el("span", { class: "where" }, where.join(" · ")),
      el("span", { class: "hit-text" }, highlighted(hit.text, hit.highlights))));
}

// The console's entry point: the key, which views it opens, and switching views.
//
// A tenant's key opens Documents and Search; an operator's admin key (which belongs to
// no tenant) opens Admin. The key lives in this tab's sessionStorage only.

import { ApiError, forgetKey, query, request, saveKey, savedKey } from "/console/api.js";
import { $, clearAlert, describe, setState, showAlert } from "/console/dom.js";
import { bindAdminControls, startAdmin, stopAdmin } from "/console/admin.js";
import {
  bindDocumentControls, closeDocument, followEvents, loadDocuments, stopEvents,
} from "/console/documents.js";
import { bindSearchControls } from "/console/search.js";

const VIEWS = ["key", "documents", "document", "search", "admin"];
let role = null; // "tenant" or "admin" once the key is accepted

function show(view) {
  for (const name of VIEWS) $(name + "-view").hidden = name !== view;
  for (const link of $("nav").querySelectorAll("button")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view !== "document") closeDocument();
  if (view === "admin") startAdmin();
  else stopAdmin();
  if (view === "documents") loadDocuments();
  if (view === "search") $("query").focus();
}

// Which kind of key this is: a tenant's reads documents; an operator's reads queues.
async function roleOf() {
  try {
    await request("GET", query("/v1/documents", { limit: 1 }));
    return "tenant";
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    try {
      await request("GET", "/v1/admin/queues");
      return "admin";
    } catch (adminError) {
      throw adminError instanceof ApiError && adminError.status === 401 ? error : adminError;
    }
  }
}

async function signIn(key) {
  saveKey(key);
  setState("key-state", "Checking the key…");
  try {
    role = await roleOf();
  } catch (error) {
    forgetKey();
    setState("key-state", describe(error), "error");
    showAlert(describe(error));
    $("key-input").focus();
    return;
  }
  setState("key-state", "");
  clearAlert();
  $("key-input").value = "";
  for (const link of $("nav").querySelectorAll("button")) link.hidden = link.dataset.needs !== role;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  document.body.dataset.role = role;
  if (role === "tenant") {
    followEvents();
    show("documents");
  } else {
    show("admin");
  }
}

function signOut() {
  forgetKey();
  role = null;
  delete document.body.dataset.role;
  stopEvents();
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  show("key");
  $("key-input").focus();
}

function start() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (key) signIn(key);
  });
  $("sign-out").addEventListener("click", () => { clearAlert(); signOut(); });
  $("alert-close").addEventListener("click", clearAlert);
  for (const link of $("nav").querySelectorAll("button")) {
    link.addEventListener("click", () => show(link.dataset.view));
  }
  document.addEventListener("docflow:show", (event) => show(event.detail));
  // A key refused mid-session (revoked, rotated): back to the key, the alert says why.
  document.addEventListener("docflow:key-refused", () => { if (role) signOut(); });
  bindDocumentControls();
  bindSearchControls();
  bindAdminControls();
  const key = savedKey();
  if (key) signIn(key);
  else show("key");
}

start();

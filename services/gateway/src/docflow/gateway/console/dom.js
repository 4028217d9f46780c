// Building the page. Every string from the gateway (file names, metadata, chunk text,
// error messages) goes into the page as a text node or an attribute value, never as
// HTML: nothing here parses markup.

import { ApiError, describe } from "/console/api.js";

export const $ = (id) => document.getElementById(id);

// el("li", {class: "doc", "data-id": id, onclick: f}, "text", childNode, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  return fill(node, children, { replace: false });
}

// Put `children` into `node` (replacing what it held): nested lists are flattened,
// null/undefined/false left out, strings become text nodes.
export function fill(node, children, { replace = true } = {}) {
  const nodes = [];
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    nodes.push(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  if (replace) node.replaceChildren(...nodes);
  else node.append(...nodes);
  return node;
}

export function button(label, onclick, attrs = {}) {
  return el("button", { type: "button", onclick, ...attrs }, label);
}

// A button that asks once more before it acts (no window.confirm: no dialogs).
export function confirmingButton(label, onconfirm, attrs = {}) {
  const node = button(label, () => {
    if (node.dataset.armed) {
      delete node.dataset.armed;
      node.textContent = label;
      onconfirm();
      return;
    }
    node.dataset.armed = "yes";
    node.textContent = "Really " + label.toLowerCase() + "?";
    setTimeout(() => { delete node.dataset.armed; node.textContent = label; }, 4000);
  }, attrs);
  return node;
}

// `text` with its [start, end) spans (in code points, as the API counts) in <mark>.
export function highlighted(text, spans = []) {
  const chars = Array.from(text);
  const node = el("span", { class: "text" });
  let at = 0;
  for (const [start, end] of [...spans].sort((a, b) => a[0] - b[0])) {
    if (start < at || end <= start || end > chars.length) continue;
    node.append(chars.slice(at, start).join(""), el("mark", {}, chars.slice(start, end).join("")));
    at = end;
  }
  node.append(chars.slice(at).join(""));
  return node;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function bytes(count) {
  if (count === null || count === undefined) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit ? value.toFixed(1) : value) + " " + units[unit];
}

// A view's one-line state: loading, empty, or what went wrong.
export function setState(id, text, kind = "info") {
  const node = $(id);
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = !text;
}

export function showAlert(text, kind = "error") {
  $("alert-text").textContent = text;
  $("alert").dataset.kind = kind;
  $("alert").hidden = false;
}

// Show a failure; a refused key (401) also ends the session (console.js listens).
export function report(error) {
  if (error && error.name === "AbortError") return;
  showAlert(describe(error));
  if (error instanceof ApiError && error.status === 401) {
    document.dispatchEvent(new CustomEvent("docflow:key-refused"));
  }
}

export function clearAlert() {
  $("alert").hidden = true;
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

export { describe };

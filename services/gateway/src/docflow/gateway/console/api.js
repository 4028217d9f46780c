// The console's one way to the gateway: every request carries the key in the
// Authorization header (never in a URL or a cookie), and every failure becomes an
// ApiError that says what the user can do about it.

const KEY_ITEM = "docflow.console.key";

export function savedKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function saveKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail);
    this.status = status; // 0: no answer at all (gateway down, network)
    this.detail = detail;
    this.retryAfter = retryAfter; // seconds, from the Retry-After header
  }
}

// What a failure means to the person at the screen.
export function describe(error) {
  if (!(error instanceof ApiError)) return String(error && error.message ? error.message : error);
  switch (error.status) {
    case 0: return "The gateway cannot be reached. Is it running? (" + error.detail + ")";
    case 401: return "Key refused: " + error.detail;
    case 403: return "Not allowed with this key: " + error.detail;
    case 429: return "Too many requests: retry in " + (error.retryAfter ?? "a few") + " s.";
    case 503: return "Temporarily unavailable: " + error.detail +
      (error.retryAfter ? " (retry in " + error.retryAfter + " s)" : "");
    default: return error.status + ": " + error.detail;
  }
}

function headers(extra = {}) {
  return { Authorization: "Bearer " + savedKey(), ...extra };
}

async function failure(response) {
  let detail = response.statusText || "error";
  try {
    const body = await response.json();
    if (body && body.detail !== undefined) {
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch (_) { /* not JSON: keep the status text */ }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, detail, retry === null ? null : Number(retry));
}

async function send(path, init) {
  let response;
  try {
    response = await fetch(path, { cache: "no-store", credentials: "omit", ...init });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, error.message);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

// A JSON request; `body` is sent as JSON, `form` (FormData) as multipart.
export async function request(method, path, { body, form, signal } = {}) {
  const init = { method, signal, headers: headers() };
  if (form !== undefined) init.body = form;
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await send(path, init);
  return response.status === 204 ? null : response.json();
}

export function query(path, params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? path + "?" + text : path;
}

// Server-Sent Events read with fetch: EventSource cannot send an Authorization header.
// Yields {event: "open"} once connected, then {id, event, data} until the stream
// ends; throws ApiError if it cannot open.
export async function* events(path, { lastEventId, signal } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const response = await send(path, { method: "GET", signal, headers: headers(extra) });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  yield { id: null, event: "open", data: null }; // connected: nothing missed from here on
  let buffer = "";
  let message = { id: null, event: "message", data: [] };
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an unfinished line waits for the next chunk
      for (const line of lines) {
        if (line === "") {
          if (message.data.length) {
            yield { id: message.id, event: message.event, data: JSON.parse(message.data.join("\n")) };
          }
          message = { id: null, event: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a heartbeat comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") message.data.push(value);
        else if (field === "event") message.event = value;
        else if (field === "id") message.id = value;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

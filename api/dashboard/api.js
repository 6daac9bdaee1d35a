// syncjobs dashboard, part 1 of 6: the session, the one way to call the API, and what the API offers.
// Every value from the API is written with textContent (never innerHTML), so names cannot inject markup.
"use strict";

// The token lives in this tab's sessionStorage only; an admin token also keeps the workspace it views.
const session = {
  get ws() { return sessionStorage.getItem("syncjobs.ws"); },
  get token() { return sessionStorage.getItem("syncjobs.token"); },
  setToken(token) { sessionStorage.setItem("syncjobs.token", token); },
  setWs(ws) { sessionStorage.setItem("syncjobs.ws", ws); },
  clear() { sessionStorage.removeItem("syncjobs.ws"); sessionStorage.removeItem("syncjobs.token"); },
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A selector that finds "the same" control after a refresh rebuilt it: its tag and classes, within the
// job, run or strip cell it belongs to.
function focusKey(node) {
  const own = `${node.tagName.toLowerCase()}${[...node.classList].map((c) => `.${CSS.escape(c)}`).join("")}`;
  const owner = node.closest("[data-job-id], [data-run-id], [data-key]");
  if (!owner) return own;
  const scope = ["data-job-id", "data-run-id", "data-key"].filter((a) => owner.hasAttribute(a))
    .map((a) => `[${a}="${CSS.escape(owner.getAttribute(a))}"]`).join("");
  return owner === node ? `${own}${scope}` : `${owner.tagName.toLowerCase()}${scope} ${own}`;
}

// Replaces a node's children, leaving out what is not there (replaceChildren would write a null as
// "null"); a control that had the keyboard focus has it again after the refresh.
function fill(node, ...children) {
  const active = document.activeElement;
  const key = active && active !== document.body && node.contains(active) ? focusKey(active) : null;
  node.replaceChildren(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  const again = key && node.querySelector(key);
  if (again) again.focus({ preventScroll: true });
}

class ApiError extends Error {
  constructor(status, message, details) { super(message); this.status = status; this.details = details || []; }
}

// The banner that says the API cannot be reached: shown on a network failure or a 502-504, gone on the
// next answer.
function setReachable(reachable) {
  const banner = $("offline");
  if (banner) banner.hidden = reachable;
}

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    setReachable(false);
    throw new ApiError(0, "The API cannot be reached.");
  }
  setReachable(![502, 503, 504].includes(response.status));
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const info = (data && data.error) || {};
    throw new ApiError(response.status, info.message || `HTTP ${response.status}`, info.details);
  }
  return data;
}

// Lists answer {items, next} (or, for run history today, {runs, next}); read every list through here.
function listItems(data) {
  if (Array.isArray(data)) return data;
  return (data && (data.items || data.runs)) || [];
}

// The items of a list over at most `most` pages, following `next` as `after`; `more` when it stopped short.
async function listPages(path, most) {
  const items = [];
  let next = null;
  for (let page = 0; page < most; page++) {
    const data = await call("GET", next ? `${path}${path.includes("?") ? "&" : "?"}after=${encodeURIComponent(next)}` : path);
    items.push(...listItems(data));
    next = data && data.next;
    if (!next) break;
  }
  return { items, more: Boolean(next) };
}

// Every item of a list where the API pages it (at most 20 pages).
async function allItems(path) {
  return (await listPages(path, 20)).items;
}

// What the signed-in token may do: a `read` token sees no control that would only answer 403.
const access = { write: true };

const wsPath = (tail) => `/api/workspaces/${encodeURIComponent(session.ws)}${tail}`;

// What this API serves, from its OpenAPI document: newer routes (cancel, pause, fires) show only when served.
const api = {
  operations: new Map(),
  async load() {
    const doc = await call("GET", "/api/openapi.json");
    this.operations = new Map();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) this.operations.set(`${method.toUpperCase()} ${path}`, op);
    }
  },
  has(method, tail) { return this.operations.has(`${method} /api/workspaces/{ws}${tail}`); },
  takes(method, tail, parameter) {
    const op = this.operations.get(`${method} /api/workspaces/{ws}${tail}`);
    return Boolean(op && (op.parameters || []).some((p) => p.name === parameter && p.in === "query"));
  },
};

// One page of a job's runs: `after` where the API pages that way, `before` where it still does.
async function runPage(jobId, { limit, cursor, status }) {
  const tail = "/sync-jobs/{id}/runs";
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set(api.takes("GET", tail, "after") ? "after" : "before", cursor);
  const serverFilters = status && api.takes("GET", tail, "status");
  if (serverFilters) query.set("status", status);
  const data = await call("GET", wsPath(`/sync-jobs/${jobId}/runs?${query}`));
  const runs = listItems(data).filter((run) => !status || run.status === status);
  return { runs, next: (data && data.next) || null };
}

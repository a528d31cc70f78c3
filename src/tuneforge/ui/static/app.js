// tuneforge ui: a router over a few views, each a thin layer over the JSON API (/api/...).
// DOM is built with textContent only (h() below): run names, logs and recipes never become markup.
import { renderRuns } from "./views/runs.js";
import { renderRun } from "./views/run.js";
import { renderNew } from "./views/newrun.js";
import { renderCompare } from "./views/compare.js";
import { renderChat } from "./views/chat.js";

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

// Every state-changing request carries X-Tuneforge-UI: a cross-site form cannot set it.
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Tuneforge-UI"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, credentials: "same-origin",
                                  body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export const statusBadge = (status) => h("span", { class: `status ${status}` }, status);

export function showError(root, err) {
  root.replaceChildren(h("p", { class: "error" }, err.message || String(err)));
}

// Polling that stops when the view is left (each view returns its cleanup).
export function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { console.error(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

let cleanup = null;

function route() {
  const root = document.getElementById("app");
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  let nav = "runs", view;
  const run = path.match(/^\/runs\/([^/]+)$/);
  if (run) view = () => renderRun(root, decodeURIComponent(run[1]));
  else if (path === "/new") { nav = "new"; view = () => renderNew(root, params); }
  else if (path === "/compare") { nav = "compare"; view = () => renderCompare(root, params); }
  else if (path === "/chat") { nav = "chat"; view = () => renderChat(root, params); }
  else view = () => renderRuns(root);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
  root.replaceChildren(h("p", { class: "muted" }, "loading…"));
  // views that load first are async: their cleanup arrives with the promise
  Promise.resolve(view()).then((fn) => { cleanup = typeof fn === "function" ? fn : null; });
}

window.addEventListener("popstate", route);
document.addEventListener("DOMContentLoaded", route);

// syncjobs dashboard: a token-signed client of the REST API. No framework, no build step.
// Every value from the API is written with textContent (never innerHTML), so job names cannot inject markup.
"use strict";

const REFRESH_MS = 5000;
const FAILED = new Set(["failed", "timed_out"]);
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MACROS = {
  "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
};
const ALERT_TITLES = {
  high_failure_rate: "High failure rate", consecutive_failures: "Consecutive failures",
  long_duration: "Long duration", missed_runs: "Missed runs", deletes_refused: "Mass delete refused",
  change_stream_lag: "Change stream lag",
};

const session = {
  get ws() { return sessionStorage.getItem("syncjobs.ws"); },
  get token() { return sessionStorage.getItem("syncjobs.token"); },
  save(ws, token) { sessionStorage.setItem("syncjobs.ws", ws); sessionStorage.setItem("syncjobs.token", token); },
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

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, (data && data.error && data.error.message) || `HTTP ${response.status}`);
  return data;
}

const wsPath = (tail) => `/api/workspaces/${encodeURIComponent(session.ws)}${tail}`;

// --- words for humans -------------------------------------------------------------------------------------

function plural(n, unit) { return `${n} ${unit}${n === 1 ? "" : "s"}`; }
function pad(n) { return String(n).padStart(2, "0"); }
const isNumber = (field) => /^\d+$/.test(field);

function describeSchedule(cron, timezone) {
  let fields = (MACROS[cron.trim()] || cron).trim().split(/\s+/);
  const zone = timezone || "UTC";
  if (fields.length === 6) {
    const seconds = fields[0];
    fields = fields.slice(1);
    const step = /^\*\/(\d+)$/.exec(seconds);
    if (step && fields.every((f) => f === "*")) return `every ${plural(Number(step[1]), "second")}`;
    if (seconds === "*" && fields.every((f) => f === "*")) return "every second";
    if (seconds !== "0") return `cron ${cron} (${zone})`;
  }
  if (fields.length !== 5) return `cron ${cron} (${zone})`;
  const [minute, hour, day, month, weekday] = fields;
  const everyDay = day === "*" && month === "*" && weekday === "*";
  const minuteStep = /^\*\/(\d+)$/.exec(minute);
  const hourStep = /^\*\/(\d+)$/.exec(hour);
  if (everyDay && hour === "*") {
    if (minute === "*") return "every minute";
    if (minuteStep) return Number(minuteStep[1]) === 1 ? "every minute" : `every ${plural(Number(minuteStep[1]), "minute")}`;
    if (minute === "0") return "every hour";
    if (isNumber(minute)) return `every hour at :${pad(minute)}`;
  }
  if (everyDay && hourStep && isNumber(minute)) {
    return `every ${plural(Number(hourStep[1]), "hour")} at :${pad(minute)}`;
  }
  if (isNumber(minute) && isNumber(hour) && month === "*") {
    const at = `at ${pad(hour)}:${pad(minute)} ${zone}`;
    if (day === "*" && weekday === "*") return at;
    if (day === "*" && weekday === "1-5") return `${at} on weekdays`;
    if (day === "*" && /^[0-7](,[0-7])*$/.test(weekday)) {
      return `${at} on ${weekday.split(",").map((d) => DAYS[Number(d) % 7]).join(", ")}`;
    }
    if (isNumber(day) && weekday === "*") return `${at} on day ${Number(day)} of the month`;
  }
  return `cron ${cron} (${zone})`;
}

function relativeTime(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const size = Math.abs(seconds);
  if (size < 45) return seconds <= 0 ? "just now" : "in a few seconds";
  const [value, unit] = size < 3600 ? [Math.round(size / 60), "minute"]
    : size < 86400 ? [Math.round(size / 3600), "hour"] : [Math.round(size / 86400), "day"];
  return seconds < 0 ? `${plural(value, unit)} ago` : `in ${plural(value, unit)}`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

function timeEl(iso) {
  return el("time", { datetime: iso || undefined, title: iso ? new Date(iso).toLocaleString() : undefined }, relativeTime(iso));
}

function badge(status, text) { return el("span", { class: `badge badge-${status}`, "data-status": status }, text || status.replace("_", " ")); }

// A job's standing: disabled (grey), running (blue), failing (red), pending (yellow: never ran), active (green).
function jobStatus(job, stats) {
  if (!job.enabled) return "disabled";
  const last = job.lastStatus || (stats && stats.lastStatus);
  if (stats && stats.lastStatus === "running") return "running";
  if (FAILED.has(last)) return "failing";
  if (!last || last === "pending") return "pending";
  return "active";
}

// --- views ------------------------------------------------------------------------------------------------

function notify(message, isError) {
  const notice = $("notice");
  notice.textContent = message || "";
  notice.className = isError ? "notice error" : "notice";
}

function renderAlerts(alerts, jobsById) {
  const box = $("alerts");
  box.replaceChildren(...alerts.map((alert) => el("div", { class: "alert", role: "alert", "data-kind": alert.kind },
    el("span", { class: "kind" }, ALERT_TITLES[alert.kind] || alert.kind),
    el("a", { href: `#/jobs/${alert.jobId}` }, (jobsById[alert.jobId] || {}).name || alert.jobId),
    ": ", alert.message, " ", el("span", { class: "muted" }, "since ", timeEl(alert.since)))));
}

async function act(button, method, path, done) {
  button.disabled = true;
  try {
    await call(method, path);
    notify(done);
    await refresh();
  } catch (error) {
    notify(error.message, true);
  } finally {
    button.disabled = false;
  }
}

function jobActions(job) {
  const base = wsPath(`/sync-jobs/${job.id}`);
  const toggle = el("button", { type: "button", class: "toggle",
    onclick: (e) => act(e.currentTarget, "POST", `${base}/toggle`, `${job.name}: ${job.enabled ? "disabled" : "enabled"}`) },
  job.enabled ? "Disable" : "Enable");
  const run = el("button", { type: "button", class: "primary run-now",
    onclick: (e) => act(e.currentTarget, "POST", `${base}/run`, `${job.name}: run queued`) }, "Run now");
  return el("div", { class: "actions" }, toggle, run);
}

function field(label, ...content) {
  return el("div", {}, el("span", { class: "label" }, label), ...content);
}

function renderJobList(jobs, statsById) {
  if (!jobs.length) return el("p", { class: "muted" }, "No sync jobs in this workspace yet.");
  return el("div", { class: "jobs" }, jobs.map((job) => {
    const status = jobStatus(job, statsById[job.id]);
    return el("article", { class: `job job-${status}`, "data-job-id": job.id, "data-job-name": job.name },
      el("div", { class: "name" }, el("a", { href: `#/jobs/${job.id}` }, job.name), badge(status)),
      field("Schedule", el("span", { class: "schedule" }, describeSchedule(job.schedule.cron, job.schedule.timezone))),
      field("Last sync", el("span", { class: "last-sync" }, timeEl(job.lastRunAt))),
      field("Next run", el("span", { class: "next-run" }, job.enabled && job.nextRunAt ? timeEl(job.nextRunAt) : "—")),
      jobActions(job),
      job.lastError && FAILED.has(job.lastStatus) ? el("div", { class: "last-error error" }, job.lastError) : null);
  }));
}

// Per-entity counts from the executor's result (`stats.entities`), with each failed entity's own error.
function entityTable(stats, details) {
  const entities = stats && stats.entities ? Object.entries(stats.entities) : [];
  if (!entities.length) return null;
  const errors = Object.fromEntries((details || []).filter((d) => d.error).map((d) => [d.entity, d.error]));
  const warnings = Object.fromEntries((details || []).filter((d) => d.warning).map((d) => [d.entity, d.warning]));
  const columns = ["read", "inserted", "updated", "deleted", "unchanged", "failed", "skippedNoCursor"];
  return el("table", { class: "entities" },
    el("thead", {}, el("tr", {}, el("th", {}, "entity"), columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, entities.map(([name, counts]) => [
      el("tr", { "data-entity": name }, el("td", {}, name), columns.map((c) => el("td", {}, counts[c] ?? 0))),
      errors[name] ? el("tr", { class: "entity-error" }, el("td", { colspan: columns.length + 1, class: "error" }, errors[name])) : null,
      warnings[name] ? el("tr", { class: "entity-warning" }, el("td", { colspan: columns.length + 1, class: "warning" }, warnings[name])) : null,
    ])));
}

function renderRun(run) {
  return el("article", { class: "run", "data-run-id": run.id, "data-status": run.status },
    el("header", {}, badge(run.status), el("span", {}, run.trigger),
      el("span", { class: "muted" }, run.startedAt ? "started " : "created ", timeEl(run.startedAt || run.createdAt)),
      run.durationMs !== null && run.durationMs !== undefined ? el("span", { class: "muted" }, duration(run.durationMs)) : null),
    run.error ? el("div", { class: "error" }, run.error) : null,
    entityTable(run.stats, run.details));
}

async function showJobList(report) {
  const { items: jobs } = await call("GET", wsPath("/sync-jobs"));
  const statsById = Object.fromEntries(report.stats.map((s) => [s.jobId, s]));
  return [el("h1", {}, "Sync jobs"), renderJobList(jobs, statsById)];
}

async function showJob(jobId, report) {
  const [job, page] = await Promise.all([
    call("GET", wsPath(`/sync-jobs/${jobId}`)),
    call("GET", wsPath(`/sync-jobs/${jobId}/runs?limit=20`)),
  ]);
  const stats = report.stats.find((s) => s.jobId === jobId) || {};
  const status = jobStatus(job, stats);
  const rate = stats.successRate === null || stats.successRate === undefined ? "—" : `${Math.round(stats.successRate * 100)} %`;
  return [
    el("p", {}, el("a", { href: "#/" }, "← all jobs")),
    el("h1", { class: "job-title", "data-job-id": job.id }, job.name, badge(status)),
    el("p", {}, el("span", { class: "schedule" }, describeSchedule(job.schedule.cron, job.schedule.timezone)),
      " · next run ", job.enabled && job.nextRunAt ? timeEl(job.nextRunAt) : "—"),
    job.lastError && FAILED.has(job.lastStatus) ? el("p", { class: "last-error error" }, job.lastError) : null,
    jobActions(job),
    el("h2", {}, `Last ${report.timeRange.hours} hours`),
    el("div", { class: "summary" },
      el("div", {}, el("b", {}, stats.totalExecutions ?? 0), "executions"),
      el("div", {}, el("b", {}, rate), "success rate"),
      el("div", {}, el("b", {}, duration(stats.averageDurationMs) || "—"), "average duration"),
      el("div", {}, el("b", {}, stats.consecutiveFailures ?? 0), "consecutive failures"),
      el("div", {}, el("b", {}, (stats.skippedCount ?? 0) + (stats.missedCount ?? 0)), "skipped or missed")),
    el("h2", {}, "Run history"),
    page.runs.length ? el("div", { class: "runs" }, page.runs.map(renderRun)) : el("p", { class: "muted" }, "No runs yet."),
  ];
}

// Refreshes run one after another, so the one asked for after an action always reads the new state.
let queue = Promise.resolve();

function refresh() {
  queue = queue.then(render, render);
  return queue;
}

async function render() {
  if (!session.token) return;
  try {
    const [report, jobs] = await Promise.all([
      call("GET", wsPath("/monitoring")),
      call("GET", wsPath("/sync-jobs")),
    ]);
    renderAlerts(report.alerts, Object.fromEntries(jobs.items.map((j) => [j.id, j])));
    const match = /^#\/jobs\/([0-9a-f]{24})$/.exec(location.hash);
    const view = match ? await showJob(match[1], report) : await showJobList(report);
    $("view").replaceChildren(...view.filter(Boolean));
  } catch (error) {
    if (error.status === 401) signOut("The token was refused: sign in again.");
    else notify(error.message, true);
  }
}

// --- sign in ----------------------------------------------------------------------------------------------

let timer = null;

function showSignedIn(workspaceName) {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  $("workspace-name").textContent = workspaceName;
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
  return refresh();
}

function signOut(message) {
  session.clear();
  clearInterval(timer);
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("workspace-name").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

async function signIn(event) {
  event.preventDefault();
  session.save($("workspace-input").value.trim(), $("token-input").value.trim());
  try {
    const workspace = await call("GET", wsPath(""));
    $("token-input").value = "";
    await showSignedIn(workspace.name);
  } catch (error) {
    signOut(error.status === 401 || error.status === 404 ? "Unknown workspace or token." : error.message);
  }
}

async function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", () => { notify(""); refresh(); });
  if (!session.token) return signOut("");
  try {
    const workspace = await call("GET", wsPath(""));
    await showSignedIn(workspace.name);
  } catch (error) {
    signOut(error.status === 401 || error.status === 404 ? "Sign in again." : error.message);
  }
}

document.addEventListener("DOMContentLoaded", start);

// syncjobs dashboard, part 5 of 6: a job's page: its configuration, a duration chart and a 30-day calendar
// strip (plain SVG and CSS grid), its run history paged and filtered, each run's detail.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const DAY_MS = 86400000;
const PAST_DAYS = 23;
const FUTURE_DAYS = 7;
// Worst first: a day's cell takes the colour of its worst outcome.
const SEVERITY = ["failed", "timed_out", "missed", "cancelled", "skipped", "running", "pending", "succeeded", "upcoming", "disabled"];
const pageState = { jobId: null, status: "", pages: 1, open: new Set(), shown: "" };

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

const runTime = (run) => new Date(run.startedAt || run.scheduledFor || run.createdAt).getTime();
const runLabel = (run) => `${run.status.replace("_", " ")} · ${new Date(runTime(run)).toLocaleString()}${run.durationMs !== null && run.durationMs !== undefined ? ` · ${duration(run.durationMs)}` : ""}`;

// Run duration over time, one dot per run coloured by outcome; runs without a duration sit on the axis.
function durationChart(runs) {
  const width = 720, height = 200, left = 56, bottom = 24, top = 10;
  const now = Date.now();
  const from = now - PAST_DAYS * DAY_MS;
  const shown = runs.filter((r) => runTime(r) >= from);
  const most = Math.max(1000, ...shown.map((r) => r.durationMs || 0));
  const x = (t) => left + ((t - from) / (now - from)) * (width - left - 8);
  const y = (ms) => height - bottom - (ms / most) * (height - bottom - top);
  const detail = el("p", { class: "chart-detail muted", id: "chart-detail", "aria-live": "polite" }, pageState.shown || "Hover or focus a dot for its run.");
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-labelledby": "chart-title" },
    svg("title", { id: "chart-title" }, `Run duration over the last ${PAST_DAYS} days: ${shown.length} runs`),
    svg("line", { x1: left, x2: width - 8, y1: height - bottom, y2: height - bottom, class: "axis" }),
    svg("line", { x1: left, x2: left, y1: top, y2: height - bottom, class: "axis" }),
    svg("text", { x: left - 6, y: top + 8, class: "tick", "text-anchor": "end" }, duration(most)),
    svg("text", { x: left - 6, y: height - bottom, class: "tick", "text-anchor": "end" }, "0"),
    svg("text", { x: left, y: height - 6, class: "tick" }, new Date(from).toLocaleDateString(undefined, { month: "short", day: "numeric" })),
    svg("text", { x: width - 8, y: height - 6, class: "tick", "text-anchor": "end" }, "now"),
    ...[1, 2].map((weeks) => svg("text", { x: x(now - weeks * 7 * DAY_MS).toFixed(1), y: height - 6, class: "tick", "text-anchor": "middle" },
      new Date(now - weeks * 7 * DAY_MS).toLocaleDateString(undefined, { month: "short", day: "numeric" }))));
  for (const run of shown) {
    const dot = svg("circle", { cx: x(runTime(run)).toFixed(1), cy: y(run.durationMs || 0).toFixed(1), r: 5,
      class: `dot dot-${run.status}`, "data-run-id": run.id, "data-status": run.status, tabindex: 0 }, svg("title", {}, runLabel(run)));
    const show = () => { pageState.shown = detail.textContent = runLabel(run); };
    dot.addEventListener("mouseenter", show);
    dot.addEventListener("focus", show);
    dot.addEventListener("click", () => openRun(run.id));
    chart.append(dot);
  }
  return el("figure", { class: "chart-box" }, chart, detail, legend());
}

function legend() {
  return el("ul", { class: "legend" }, ["succeeded", "failed", "timed_out", "cancelled", "skipped", "missed", "upcoming"]
    .map((s) => el("li", {}, el("span", { class: `swatch dot-${s}`, "aria-hidden": "true" }), s.replace("_", " "))));
}

function dayKey(time) {
  const d = new Date(time);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// The strip's two scales: days (always) and hours (for a job that fires more than twice a day).
const BY_DAY = {
  unit: "day", ms: DAY_MS, key: dayKey,
  middle() { const d = new Date(); d.setHours(12, 0, 0, 0); return d.getTime(); },
  name: (d) => d.toLocaleDateString(undefined, { weekday: "short", month: "short", day: "numeric" }),
  short: (d) => d.toLocaleDateString(undefined, { month: "short", day: "numeric" }),
  text: (d) => d.getDate(),
};
const BY_HOUR = {
  unit: "hour", ms: 3600000, key: (time) => `${dayKey(time)}T${pad(new Date(time).getHours())}`,
  middle() { const d = new Date(); d.setMinutes(30, 0, 0); return d.getTime(); },
  name: (d) => d.toLocaleString(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" }),
  short: (d) => d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "numeric" }),
  text: (d) => d.getHours(),
};

function firesPerDay(upcoming) {
  if (upcoming.length < 2) return 1;
  const span = new Date(upcoming[upcoming.length - 1]).getTime() - new Date(upcoming[0]).getTime();
  return ((upcoming.length - 1) * DAY_MS) / Math.max(span, 1);
}

const REASONS = { overlap: "the run before still ran", paused: "paused", skip: "skipped on request", no_leader: "no scheduler was up", not_recorded: "not recorded" };

// A strip's fires from the API (GET .../fires), at most 5 pages: a job firing every minute fills 30 hours,
// not 30 days, and the strip then says where its fires stop. A `missed` fire with no run from before the
// job existed is no fire of the job.
async function stripFires(job, scale) {
  const middle = scale.middle();
  const query = new URLSearchParams({
    from: new Date(middle + (-PAST_DAYS + 0.5) * scale.ms).toISOString(),
    to: new Date(middle + (FUTURE_DAYS + 0.5) * scale.ms).toISOString(),
  });
  const { items, more } = await listPages(wsPath(`/sync-jobs/${job.id}/fires?${query}`), 5);
  const born = job.createdAt ? new Date(job.createdAt).getTime() : 0;
  const fires = items.filter((f) => f.reason !== "not_recorded" || new Date(f.scheduledFor).getTime() >= born);
  return { scale, middle, fires, until: more && items.length ? items[items.length - 1].scheduledFor : null };
}

// 30 cells (22 back, the current one, 7 ahead), each in the colour of its fires' worst outcome, coming fires
// as planned; a cell's title counts its fires by outcome and reason, and names the DST notes of its fires.
function calendarStrip({ scale, middle, fires, until }) {
  const cells = new Map();
  for (const fire of fires) {
    const key = scale.key(new Date(fire.scheduledFor).getTime());
    const cell = cells.get(key) || { outcomes: new Set(), counts: new Map(), dst: [] };
    const words = `${fire.outcome.replace("_", " ")}${fire.reason ? ` (${REASONS[fire.reason] || fire.reason})` : ""}`;
    cell.outcomes.add(fire.outcome);
    cell.counts.set(words, (cell.counts.get(words) || 0) + 1);
    if (fire.dst) cell.dst.push(`${fire.wallTime.slice(11, 16)} ${DST_WORDS[fire.dst] || fire.dst}`);
    cells.set(key, cell);
  }
  const items = [];
  for (let offset = -PAST_DAYS + 1; offset <= FUTURE_DAYS; offset++) {
    const date = new Date(middle + offset * scale.ms);
    const key = scale.key(date.getTime());
    const cell = cells.get(key);
    const worst = cell ? SEVERITY.find((s) => cell.outcomes.has(s)) : "none";
    const counts = cell ? [...cell.counts].map(([words, n]) => `${n} ${words}`).join(", ") : "no fires";
    const label = `${scale.name(date)}: ${counts}${cell && cell.dst.length ? `; ${cell.dst.join("; ")}` : ""}`;
    items.push(el("li", { class: `day day-${worst}${offset === 0 ? " today" : ""}${cell && cell.dst.length ? " dst" : ""}`, "data-key": key, "data-worst": worst, title: label, tabindex: 0, "aria-label": label },
      el("span", { "aria-hidden": "true" }, scale.text(date))));
  }
  const edge = (offset) => scale.short(new Date(middle + offset * scale.ms));
  return el("div", {}, el("ol", { class: "calendar", "data-unit": scale.unit, "aria-label": `Fires per ${scale.unit}, 30 ${scale.unit}s` }, items),
    el("p", { class: "muted calendar-span" }, `${edge(-PAST_DAYS + 1)} to ${edge(FUTURE_DAYS)}: each ${scale.unit} in the colour of its worst outcome, coming fires dashed; the framed ${scale.unit} is the current one.`,
      until ? ` Too many fires to show: the strip stops at ${new Date(until).toLocaleString()}.` : ""));
}

// The strip of days, and for a job that fires more than twice a day (by its next fires) one of hours.
async function calendars(job, upcoming) {
  const hourly = firesPerDay(upcoming) > 2;
  const [days, hours] = await Promise.all([stripFires(job, BY_DAY), hourly ? stripFires(job, BY_HOUR) : null]);
  return [el("h2", {}, "Fires, 30 days"), calendarStrip(days), hours ? [el("h2", {}, "Fires, 30 hours"), calendarStrip(hours)] : null];
}

function configuration(job, sources, destinations) {
  const name = (items, id) => (items.find((i) => i.id === id) || {}).name || id;
  const rows = [
    ["Source", el("a", { href: `#/data-sources/${job.dataSourceId}` }, name(sources, job.dataSourceId))],
    ["Destination", el("a", { href: `#/destinations/${job.destinationDatabaseId}` }, name(destinations, job.destinationDatabaseId))],
    ["Schedule", el("span", { class: "schedule" }, describeSchedule(job.schedule.cron, job.schedule.timezone)), el("code", {}, ` ${job.schedule.cron}`), ` (${job.schedule.timezone})`],
    ["Mode", job.syncMode],
    ["Entities", job.entities.include ? job.entities.include.join(", ") : "all", job.entities.exclude.length ? `, except ${job.entities.exclude.join(", ")}` : ""],
    ["Overlap", job.overlap],
    ["Timeout", duration(job.timeoutSeconds * 1000)],
    ["Retry", job.retry.maxAttempts > 1 ? `${plural(job.retry.maxAttempts, "attempt")}, ${job.retry.backoffSeconds} s apart` : "no retry"],
  ];
  return el("dl", { class: "config" }, rows.map(([term, ...value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

// The coming fires in the job's own zone, beside its recent runs (as the API's status answers them).
function upcomingList(job, fires) {
  if (!fires.length) return el("p", { class: "muted" }, job.enabled ? "none planned" : "none: the job is disabled");
  const wall = new Intl.DateTimeFormat(undefined, { timeZone: job.schedule.timezone, weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: job.schedule.cron.trim().split(/\s+/).length === 6 ? "2-digit" : undefined });
  return el("ol", { class: "upcoming" }, fires.map((fire) => el("li", {}, el("time", { datetime: fire }, wall.format(new Date(fire))), " ", el("span", { class: "muted" }, relativeTime(fire)))));
}

// Per-entity counts from the executor's result (`stats.entities`), with each failed entity's own error.
function entityTable(stats, details) {
  const entities = stats && stats.entities ? Object.entries(stats.entities) : [];
  if (!entities.length) return null;
  const errors = Object.fromEntries((details || []).filter((d) => d.error).map((d) => [d.entity, d.error]));
  const warnings = Object.fromEntries((details || []).filter((d) => d.warning).map((d) => [d.entity, d.warning]));
  const columns = ["read", "inserted", "updated", "deleted", "unchanged", "failed", "skippedNoCursor"];
  return el("table", { class: "entities" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "entity"), columns.map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, entities.map(([name, counts]) => [
      el("tr", { "data-entity": name }, el("td", {}, name), columns.map((c) => el("td", {}, counts[c] ?? 0))),
      errors[name] ? el("tr", { class: "entity-error" }, el("td", { colspan: columns.length + 1, class: "error" }, errors[name])) : null,
      warnings[name] ? el("tr", { class: "entity-warning" }, el("td", { colspan: columns.length + 1, class: "warning" }, warnings[name])) : null,
    ])));
}

function openRun(runId) {
  pageState.open.add(runId);
  const node = document.querySelector(`details.run[data-run-id='${runId}']`);
  if (node) { node.open = true; node.scrollIntoView({ block: "center" }); node.querySelector("summary").focus(); }
}

// Cancel answers the run: a pending one is cancelled at once, a running one is marked `cancelRequested`
// until its replica has killed the executor; a 409 means the run ended in the meantime.
async function cancelRun(button, run) {
  button.disabled = true;
  try {
    const answer = await call("POST", wsPath(`/runs/${run.id}/cancel`));
    notify(answer.status === "cancelled" ? "Run cancelled." : "Cancel requested: the run stops within seconds.");
  } catch (error) {
    notify(error.status === 409 ? `The run has already ended: ${error.message}` : error.message, true);
  } finally {
    button.disabled = false;
  }
  await refresh();
}

function renderRun(run) {
  const live = run.status === "pending" || run.status === "running";
  const cancellable = live && !run.cancelRequested && api.has("POST", "/runs/{runId}/cancel") && access.write;
  const node = el("details", { class: "run", "data-run-id": run.id, "data-status": run.status, open: pageState.open.has(run.id) },
    el("summary", {}, badge(run.status), el("span", { class: "trigger" }, run.trigger),
      el("span", { class: "muted" }, run.startedAt ? "started " : "created ", timeEl(run.startedAt || run.createdAt)),
      run.durationMs !== null && run.durationMs !== undefined ? el("span", { class: "muted" }, duration(run.durationMs)) : null,
      run.attempt > 1 ? el("span", { class: "muted" }, `attempt ${run.attempt}`) : null,
      live && run.cancelRequested ? el("span", { class: "cancel-info" }, "cancelling…") : null),
    run.error ? el("div", { class: "error run-error" }, run.error) : null,
    entityTable(run.stats, run.details),
    run.stderrTail ? el("div", {}, el("h3", {}, "stderr (last lines)"), el("pre", { class: "stderr", tabindex: 0 }, run.stderrTail)) : null,
    el("p", { class: "muted" }, `scheduled for ${new Date(run.scheduledFor).toLocaleString()}`, run.finishedAt ? ` · finished ${new Date(run.finishedAt).toLocaleString()}` : ""),
    cancellable ? el("button", { type: "button", class: "danger cancel-run", onclick: (e) => cancelRun(e.currentTarget, run) }, "Cancel run") : null);
  node.addEventListener("toggle", () => { if (node.open) pageState.open.add(run.id); else pageState.open.delete(run.id); });
  return node;
}

// The history's pages are read afresh on each refresh, as many as have been asked for; where the API cannot
// filter by status, larger pages are read until enough runs match.
async function historyPages(jobId) {
  const want = pageState.pages * 20;
  const filtersHere = pageState.status && !api.takes("GET", "/sync-jobs/{id}/runs", "status");
  const runs = [];
  let cursor = null;
  for (let read = 0; read < 20 && runs.length < want; read++) {
    const answer = await runPage(jobId, { limit: filtersHere ? 100 : 20, cursor, status: pageState.status });
    runs.push(...answer.runs);
    cursor = answer.next;
    if (!cursor) break;
  }
  return { runs: runs.slice(0, want), more: Boolean(cursor) || runs.length > want };
}

// The runs of the chart and the strip: up to 300, back to the start of the strip.
async function recentRuns(jobId) {
  const runs = [];
  let cursor = null;
  const from = Date.now() - PAST_DAYS * DAY_MS;
  for (let page = 0; page < 3; page++) {
    const answer = await runPage(jobId, { limit: 100, cursor });
    runs.push(...answer.runs);
    cursor = answer.next;
    if (!cursor || !answer.runs.length || runTime(answer.runs[answer.runs.length - 1]) < from) break;
  }
  return runs;
}

function jobView(jobId) {
  if (pageState.jobId !== jobId) Object.assign(pageState, { jobId, status: "", pages: 1, open: new Set(), shown: "" });
  const top = el("div", {});
  const history = el("div", { id: "history" });
  const filter = select([["", "every status"], ...RUN_STATUSES.map((s) => [s, s.replace("_", " ")])], pageState.status);
  filter.id = "run-filter";
  filter.addEventListener("change", () => { pageState.status = filter.value; pageState.pages = 1; refresh(); });
  return {
    frame: [el("p", {}, el("a", { href: "#/" }, "← all jobs")), top,
      el("div", { class: "heading" }, el("h2", {}, "Run history"), el("div", { class: "filters" }, el("label", { for: "run-filter" }, "Show"), filter)), history],
    async update(report) {
      const [job, sources, destinations, runs, pages, status] = await Promise.all([
        call("GET", wsPath(`/sync-jobs/${jobId}`)),
        allItems(wsPath("/data-sources")),
        allItems(wsPath("/destinations")),
        recentRuns(jobId),
        historyPages(jobId),
        call("GET", wsPath(`/sync-jobs/${jobId}/status`)),
      ]);
      const strips = await calendars(job, status.nextRuns || []);
      const stats = report.stats.find((s) => s.jobId === jobId) || {};
      const rate = stats.successRate === null || stats.successRate === undefined ? "—" : `${Math.round(stats.successRate * 100)} %`;
      fill(top,
        el("div", { class: "heading" }, el("h1", { class: "job-title", "data-job-id": job.id }, job.name, badge(jobStatus(job, stats))),
          access.write ? el("a", { class: "button", href: `#/jobs/${job.id}/edit` }, "Edit") : null),
        pauseWords(job, "p"),
        el("p", {}, "Next run ", job.enabled && job.nextRunAt ? timeEl(job.nextRunAt) : "—",
          job.paused && job.nextRunAt && (!job.pausedUntil || new Date(job.pausedUntil) > new Date(job.nextRunAt)) ? el("span", { class: "muted" }, " (held: recorded skipped while paused)") : null),
        job.lastError && FAILED.has(job.lastStatus) ? el("p", { class: "last-error error" }, job.lastError) : null,
        jobActions(job),
        el("div", { class: "columns" },
          el("section", { "aria-labelledby": "config-title" }, el("h2", { id: "config-title" }, "Configuration"), configuration(job, sources, destinations)),
          el("section", { "aria-labelledby": "summary-title" }, el("h2", { id: "summary-title" }, `Last ${report.timeRange.hours} hours`),
            el("div", { class: "summary" },
              el("div", {}, el("b", {}, stats.totalExecutions ?? 0), "executions"),
              el("div", {}, el("b", {}, rate), "success rate"),
              el("div", {}, el("b", {}, duration(stats.averageDurationMs) || "—"), "average duration"),
              el("div", {}, el("b", {}, stats.consecutiveFailures ?? 0), "consecutive failures"),
              el("div", {}, el("b", {}, (stats.skippedCount ?? 0) + (stats.missedCount ?? 0)), "skipped or missed")),
            el("h2", {}, "Next fires"), upcomingList(job, status.nextRuns || []))),
        el("h2", {}, "Run duration"), durationChart(runs),
        strips);
      fill(history,
        pages.runs.length ? el("div", { class: "runs" }, pages.runs.map(renderRun)) : el("p", { class: "muted" }, "No runs yet."),
        pages.more ? el("button", { type: "button", class: "more-runs", onclick: () => { pageState.pages += 1; refresh(); } }, "Older runs") : null);
    },
  };
}

// syncjobs dashboard, part 4 of 6: the job list (sortable, filtered, searched) and the job form with its
// schedule preview.
"use strict";

const listState = { sort: "name", descending: false, status: "", search: "" };

const COLUMNS = [
  ["name", "Name", (r) => r.job.name.toLowerCase()],
  ["status", "Status", (r) => r.status],
  ["schedule", "Schedule", (r) => r.schedule],
  ["lastRun", "Last run", (r) => r.job.lastRunAt || ""],
  ["nextRun", "Next run", (r) => (r.job.enabled && r.job.nextRunAt) || "~"],
  ["duration", "Avg duration", (r) => r.averageMs ?? -1],
  ["success", "Success", (r) => r.stats.successRate ?? -1],
];

async function act(button, method, path, done, body) {
  button.disabled = true;
  try {
    await call(method, path, body);
    notify(done);
    await refresh();
  } catch (error) {
    notify(error.message, true);
  } finally {
    button.disabled = false;
  }
}

// Pause asks for a note and an optional end in a modal dialog outside the refreshed view, so a refresh
// never interrupts the typing; the API's 422 (an `until` in the past) shows beside its field.
function pauseDialog(job) {
  const note = field("Note for the team", "note", el("input", { type: "text", maxlength: 500, autocomplete: "off" }), "Shown beside the job while it is paused.");
  const until = field("Paused until (optional)", "until", el("input", { type: "datetime-local" }), "Your local time; empty: until someone resumes it.");
  const form = el("form", { method: "dialog", class: "pause-form", novalidate: true },
    el("h2", { id: "pause-title" }, `Pause ${job.name}`),
    el("p", { class: "hint" }, "Its fires go on being recorded, as skipped, until it resumes."),
    note, until, el("p", { class: "form-error error", role: "alert" }),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary confirm-pause" }, "Pause"),
      el("button", { type: "button", class: "cancel-pause", onclick: () => dialog.close() }, "Cancel")));
  const dialog = el("dialog", { class: "pause-dialog", "aria-labelledby": "pause-title" }, form);
  dialog.addEventListener("close", () => dialog.remove());
  form.addEventListener("input", () => clearErrors(form));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    const [noteText, untilText] = [value(form, "note").trim(), value(form, "until")];
    if (noteText) body.note = noteText;
    if (untilText) body.until = new Date(untilText).toISOString();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await call("POST", wsPath(`/sync-jobs/${job.id}/pause`), body);
      dialog.close();
      notify(`${job.name}: paused`);
      await refresh();
    } catch (error) {
      showErrors(form, error);
    } finally {
      button.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
}

// A paused job's standing in words: until when, and the note it was paused with.
function pauseWords(job, tag = "div") {
  if (!job.paused) return null;
  return el(tag, { class: "pause-info" }, job.pausedUntil ? ["paused until ", el("time", { datetime: job.pausedUntil, title: new Date(job.pausedUntil).toLocaleString() },
    new Date(job.pausedUntil).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }))] : "paused until resumed",
  job.pauseNote ? [": ", el("q", { class: "pause-note" }, job.pauseNote)] : null);
}

// The actions that fit a job's state: Run now only while enabled; pause and resume where the API has them.
function jobActions(job) {
  if (!access.write) return null;
  const base = wsPath(`/sync-jobs/${job.id}`);
  const buttons = [el("button", { type: "button", class: "toggle", "aria-label": `${job.enabled ? "Disable" : "Enable"} ${job.name}`,
    onclick: (e) => act(e.currentTarget, "POST", `${base}/toggle`, `${job.name}: ${job.enabled ? "disabled" : "enabled"}`) },
  job.enabled ? "Disable" : "Enable")];
  if (job.paused && api.has("POST", "/sync-jobs/{id}/resume")) {
    buttons.push(el("button", { type: "button", class: "resume", "aria-label": `Resume ${job.name}`,
      onclick: (e) => act(e.currentTarget, "POST", `${base}/resume`, `${job.name}: resumed`) }, "Resume"));
  } else if (job.enabled && api.has("POST", "/sync-jobs/{id}/pause")) {
    buttons.push(el("button", { type: "button", class: "pause", "aria-label": `Pause ${job.name}`, onclick: () => pauseDialog(job) }, "Pause"));
  }
  if (job.enabled) {
    buttons.push(el("button", { type: "button", class: "primary run-now", "aria-label": `Run now: ${job.name}`,
      onclick: (e) => act(e.currentTarget, "POST", `${base}/run`, `${job.name}: run queued`) }, "Run now"));
  }
  return el("div", { class: "actions" }, buttons);
}

function jobRows(jobs, statsById) {
  return jobs.map((job) => ({
    job,
    stats: statsById[job.id] || {},
    status: jobStatus(job, statsById[job.id]),
    schedule: describeSchedule(job.schedule.cron, job.schedule.timezone),
    averageMs: (statsById[job.id] || {}).averageDurationMs ?? job.averageDurationMs,  // 24 h, else the job's own
  }));
}

function sortedRows(rows) {
  const key = COLUMNS.find(([name]) => name === listState.sort)[2];
  const search = listState.search.trim().toLowerCase();
  return rows
    .filter((r) => (!listState.status || r.status === listState.status) && (!search || r.job.name.toLowerCase().includes(search)))
    .sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      const order = x < y ? -1 : x > y ? 1 : 0;
      return listState.descending ? -order : order;
    });
}

function jobTable(rows, hours) {
  const header = COLUMNS.map(([name, label]) => {
    const sorted = listState.sort === name;
    const text = name === "success" ? `${label} (${hours} h)` : label;
    return el("th", { scope: "col", "aria-sort": sorted ? (listState.descending ? "descending" : "ascending") : "none" },
      el("button", { type: "button", class: "sort", "data-sort": name, onclick: () => {
        listState.descending = sorted ? !listState.descending : false;
        listState.sort = name;
        refresh();
      } }, text, el("span", { "aria-hidden": "true" }, sorted ? (listState.descending ? " ▼" : " ▲") : "")));
  });
  return el("table", { class: "grid jobs" },
    el("thead", {}, el("tr", {}, header, el("th", { scope: "col" }, "Actions"))),
    el("tbody", {}, rows.map(({ job, stats, status, schedule, averageMs }) => el("tr", { class: `job job-${status}`, "data-job-id": job.id, "data-job-name": job.name },
      el("td", { class: "name", "data-label": "Name" }, el("a", { href: `#/jobs/${job.id}` }, job.name)),
      el("td", { "data-label": "Status" }, badge(status), pauseWords(job)),
      el("td", { "data-label": "Schedule" }, el("span", { class: "schedule" }, schedule)),
      el("td", { "data-label": "Last run" }, el("span", { class: "last-sync" }, timeEl(job.lastRunAt))),
      el("td", { "data-label": "Next run" }, el("span", { class: "next-run" }, job.enabled && job.nextRunAt ? timeEl(job.nextRunAt) : "—")),
      el("td", { "data-label": "Avg duration" }, duration(averageMs) || "—"),
      el("td", { "data-label": "Success" }, stats.successRate === null || stats.successRate === undefined ? "—" : `${Math.round(stats.successRate * 100)} %`),
      el("td", { class: "row-actions" }, jobActions(job),
        job.lastError && FAILED.has(job.lastStatus) ? el("div", { class: "last-error error" }, job.lastError) : null)))));
}

// The controls are made once per visit, so typing in the search is never interrupted by a refresh.
function jobListView() {
  const host = el("div", { id: "job-table" });
  const statuses = ["active", "failing", "running", "pending", "paused", "disabled"];
  const search = el("input", { type: "search", id: "job-search", value: listState.search, placeholder: "name contains…",
    oninput: (e) => { listState.search = e.target.value; refresh(); } });
  const filter = select([["", "any status"], ...statuses.map((s) => [s, s])], listState.status);
  filter.id = "job-filter";
  filter.addEventListener("change", (e) => { listState.status = e.target.value; refresh(); });
  return {
    frame: [
      el("div", { class: "heading" }, el("h1", {}, "Sync jobs"), access.write ? el("a", { class: "button primary", href: "#/jobs/new" }, "New job") : null),
      el("div", { class: "filters" }, el("label", { for: "job-search" }, "Search"), search, el("label", { for: "job-filter" }, "Status"), filter),
      host,
    ],
    async update(report) {
      const jobs = await allItems(wsPath("/sync-jobs"));
      const rows = jobRows(jobs, Object.fromEntries(report.stats.map((s) => [s.jobId, s])));
      if (!jobs.length) {
        fill(host, el("p", { class: "muted empty" }, "No sync jobs in this workspace yet. A job copies a ",
          el("a", { href: "#/data-sources/new" }, "data source"), " into a ", el("a", { href: "#/destinations/new" }, "destination"),
          " on a schedule: ", el("a", { href: "#/jobs/new" }, "create a job"), "."));
        return;
      }
      const shown = sortedRows(rows);
      fill(host, shown.length ? jobTable(shown, report.timeRange.hours) : el("p", { class: "muted" }, "No job matches."));
    },
  };
}

// --- the job form --------------------------------------------------------------------------------------------

function schedulePreview(form) {
  const box = el("div", { class: "preview", id: "schedule-preview", "aria-live": "polite" });
  let asked = 0;
  let timer = null;
  const update = async () => {
    const mine = ++asked;
    const query = new URLSearchParams({ cron: value(form, "schedule.cron"), timezone: value(form, "schedule.timezone") || "UTC", count: "5" });
    try {
      const preview = await call("GET", `/api/schedule-preview?${query}`);
      if (mine !== asked) return;
      clearErrors(form);
      fill(box, el("p", { class: "words" }, preview.description),
        el("ol", { class: "fires" }, preview.fires.map((fire) => el("li", {}, el("time", { datetime: fire.at }, fire.wallTime),
          fire.dst ? el("span", { class: "dst" }, ` ${DST_WORDS[fire.dst] || fire.dst}`) : null))));
    } catch (error) {
      if (mine !== asked) return;
      box.replaceChildren();
      const named = error.details.map((d) => ({ ...d, field: d.field === "cron" || d.field === "timezone" ? `schedule.${d.field}` : d.field }));
      showErrors(form, new ApiError(error.status, error.message, named));
    }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(update, 250); };
  return { box, schedule, update };
}

const numberInput = (v, min, max, step) => el("input", { type: "number", value: v, min, max, step: step || 1, inputmode: "numeric" });

async function jobForm(id) {
  const [job, sources, destinations] = await Promise.all([
    id ? call("GET", wsPath(`/sync-jobs/${id}`)) : null,
    allItems(wsPath("/data-sources")),
    allItems(wsPath("/destinations")),
  ]);
  if (!sources.length || !destinations.length) {
    return [el("h1", {}, "New job"), el("p", { class: "empty" }, "A job needs a ",
      el("a", { href: "#/data-sources/new" }, "data source"), " and a ", el("a", { href: "#/destinations/new" }, "destination"), " first.")];
  }
  const j = job || { name: "", schedule: { cron: "0 * * * *", timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" },
    syncMode: "full", entities: { include: null, exclude: [] }, enabled: true, overlap: "skip", timeoutSeconds: 3600,
    retry: { maxAttempts: 1, backoffSeconds: 30 }, catchUpFires: 1, dataSourceId: sources[0].id, destinationDatabaseId: destinations[0].id };
  const zones = el("datalist", { id: "zones" }, (Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : ["UTC"]).map((z) => el("option", { value: z })));
  const cron = textInput(j.schedule.cron, { spellcheck: "false", autocomplete: "off" });
  const zone = textInput(j.schedule.timezone, { list: "zones", autocomplete: "off" });
  const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  const enabled = el("input", { type: "checkbox", checked: j.enabled });
  let preview = null;
  const form = apiForm(id ? `Edit job “${j.name}”` : "New job", [
    field("Name", "name", textInput(j.name)),
    field("Data source", "dataSourceId", select(sources.map((s) => [s.id, `${s.name} (${s.kind})`]), j.dataSourceId)),
    field("Destination", "destinationDatabaseId", select(destinations.map((d) => [d.id, d.name]), j.destinationDatabaseId)),
    el("div", { class: "row" }, field("Schedule (cron)", "schedule.cron", cron, "5 fields, 6 with seconds first, or @hourly, @daily…"),
      field("Timezone", "schedule.timezone", zone)), zones,
    el("div", { class: "row" },
      field("Sync mode", "syncMode", select([["full", "full"], ["incremental", "incremental"]], j.syncMode)),
      field("If the previous run is still going", "overlap", select([["skip", "skip this fire"], ["queue", "queue it"], ["allow", "run beside it"]], j.overlap))),
    el("div", { class: "row" },
      field("Entities to include", "entities.include", textInput((j.entities.include || []).join(", ")), "comma-separated; empty for all"),
      field("Entities to exclude", "entities.exclude", textInput(j.entities.exclude.join(", ")))),
    el("div", { class: "row" },
      field("Timeout (seconds)", "timeoutSeconds", numberInput(j.timeoutSeconds, 1)),
      field("Attempts", "retry.maxAttempts", numberInput(j.retry.maxAttempts, 1, 20)),
      field("Retry backoff (seconds)", "retry.backoffSeconds", numberInput(j.retry.backoffSeconds, 0)),
      field("Catch-up fires", "catchUpFires", numberInput(j.catchUpFires, 0, 1000))),
    el("div", { class: "field inline", "data-field": "enabled" }, el("label", {}, enabled, " Enabled"), el("p", { class: "field-error error" })),
  ], {
    build: (f) => ({
      name: value(f, "name"), dataSourceId: value(f, "dataSourceId"), destinationDatabaseId: value(f, "destinationDatabaseId"),
      schedule: { cron: value(f, "schedule.cron"), timezone: value(f, "schedule.timezone") }, syncMode: value(f, "syncMode"),
      entities: { include: list(value(f, "entities.include")).length ? list(value(f, "entities.include")) : null, exclude: list(value(f, "entities.exclude")) },
      enabled: enabled.checked, overlap: value(f, "overlap"), timeoutSeconds: Number(value(f, "timeoutSeconds")),
      retry: { maxAttempts: Number(value(f, "retry.maxAttempts")), backoffSeconds: Number(value(f, "retry.backoffSeconds")) },
      catchUpFires: Number(value(f, "catchUpFires")),
    }),
    send: (body) => call(id ? "PUT" : "POST", wsPath(`/sync-jobs${id ? `/${id}` : ""}`), body),
    done: (saved) => (saved || id ? `#/jobs/${(saved || {}).id || id}` : "#/"),
    extra: id ? deleteButton("job", j.name, wsPath(`/sync-jobs/${id}`), "#/") : null,
  });
  preview = schedulePreview(form);
  form.querySelector("[data-field='schedule.timezone']").closest(".row").after(preview.box);
  cron.addEventListener("input", preview.schedule);
  zone.addEventListener("input", preview.schedule);
  preview.update();
  return [form];
}

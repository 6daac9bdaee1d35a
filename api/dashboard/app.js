// syncjobs dashboard, part 6 of 6: sign-in with a token alone, the workspace switcher of an admin token,
// the routes of the page, and the refresh every few seconds.
"use strict";

const REFRESH_MS = 4000;
const ALERT_TITLES = {
  high_failure_rate: "High failure rate", consecutive_failures: "Consecutive failures",
  long_duration: "Long duration", missed_runs: "Missed runs", deletes_refused: "Mass delete refused",
  change_stream_lag: "Change stream lag",
};

function renderAlerts(alerts, jobsById) {
  fill($("alerts"), ...alerts.map((alert) => el("div", { class: "alert", role: "alert", "data-kind": alert.kind },
    el("span", { class: "kind" }, ALERT_TITLES[alert.kind] || alert.kind),
    el("a", { href: `#/jobs/${alert.jobId}` }, (jobsById[alert.jobId] || {}).name || alert.jobId),
    ": ", alert.message, " ", el("span", { class: "muted" }, "since ", timeEl(alert.since)))));
}

// A route is a live view (made once per visit, updated on every refresh) or a page made once (forms).
const ROUTES = [
  [/^#\/jobs\/new$/, () => jobForm(null)],
  [/^#\/jobs\/([0-9a-f]{24})\/edit$/, (id) => jobForm(id)],
  [/^#\/jobs\/([0-9a-f]{24})$/, (id) => jobView(id)],
  [/^#\/(data-sources|destinations)$/, (collection) => connectionList(collection)],
  [/^#\/(data-sources|destinations)\/new$/, (collection) => connectionForm(collection, null)],
  [/^#\/(data-sources|destinations)\/([0-9a-f]{24})$/, (collection, id) => connectionForm(collection, id)],
  [/^#\/webhooks$/, () => webhookList()],
  [/^#\/webhooks\/new$/, () => webhookForm()],
  [/^(#\/?)?$/, () => jobListView()],
];

let current = { hash: null, view: null };

async function mount() {
  const hash = location.hash;
  const route = ROUTES.find(([pattern]) => pattern.test(hash)) || ROUTES[ROUTES.length - 1];
  const made = await route[1](...(route[0].exec(hash) || []).slice(1));
  current = { hash, view: Array.isArray(made) ? null : made };
  fill($("view"), ...(Array.isArray(made) ? made : made.frame).filter(Boolean));
  document.querySelectorAll(".nav a").forEach((a) => {
    const here = hash.startsWith(a.getAttribute("href")) && a.getAttribute("href") !== "#/" || (a.getAttribute("href") === "#/" && /^(#\/?|#\/jobs.*)?$/.test(hash));
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
}

async function render() {
  if (!session.token || !session.ws) return;
  try {
    if (current.hash !== location.hash) await mount();
    const [report, jobs] = await Promise.all([call("GET", wsPath("/monitoring")), call("GET", wsPath("/sync-jobs"))]);
    renderAlerts(report.alerts, Object.fromEntries(listItems(jobs).map((j) => [j.id, j])));
    if (current.view) await current.view.update(report);
  } catch (error) {
    if (error.status === 401) signOut("The token was refused: sign in again.");
    else if (error.status !== 0) notify(error.message, true);
  }
}

// Goes to `hash`, or builds the page afresh if it is already there (after a delete from a list).
function show(hash) {
  if (location.hash !== hash) { location.hash = hash; return; }
  current = { hash: null, view: null };
  refresh();
}

// Refreshes run one after another, so the one asked for after an action always reads the new state.
let queue = Promise.resolve();
function refresh() {
  queue = queue.then(render, render);
  return queue;
}

// --- sign in ------------------------------------------------------------------------------------------------

let timer = null;

async function showSignedIn(me) {
  const switcher = $("workspace-switch");
  if (me.admin) {
    const workspaces = await allItems("/api/workspaces");
    if (!workspaces.length) throw new ApiError(0, "No workspace exists yet: create one with the API.");
    if (!workspaces.some((w) => w.id === session.ws)) session.setWs(workspaces[0].id);
    fill($("workspace-select"), ...workspaces.map((w) => el("option", { value: w.id, selected: w.id === session.ws }, w.name)));
    $("workspace-name").textContent = "";
  } else {
    session.setWs(me.workspaceId);
    $("workspace-name").textContent = `${me.workspaceName}${me.scope === "read" ? " (read only)" : ""}`;
  }
  switcher.hidden = !me.admin;
  access.write = me.scope !== "read";
  await api.load();
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  current = { hash: null, view: null };
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
  return refresh();
}

function signOut(message) {
  session.clear();
  clearInterval(timer);
  for (const id of ["app", "sign-out", "nav", "workspace-switch"]) $(id).hidden = true;
  $("workspace-name").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

async function enter(message) {
  try {
    await showSignedIn(await call("GET", "/api/me"));
  } catch (error) {
    signOut(error.status === 401 ? message : error.message);
  }
}

async function signIn(event) {
  event.preventDefault();
  session.setToken($("token-input").value.trim());
  $("token-input").value = "";
  await enter("Unknown, revoked or expired token.");
}

function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("workspace-select").addEventListener("change", (event) => {
    session.setWs(event.target.value);
    current = { hash: null, view: null };
    location.hash = "#/";
    refresh();
  });
  window.addEventListener("hashchange", () => { notify(""); refresh(); });
  if (!session.token) return signOut("");
  return enter("Sign in again.");
}

document.addEventListener("DOMContentLoaded", start);

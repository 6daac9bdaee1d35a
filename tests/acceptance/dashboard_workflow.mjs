// The browser half of test_dashboard_workflow.py: a person's session in the dashboard, step by step.
// Settings come as JSON in $WORKFLOW; any failed step throws, and the process exits non-zero.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";

const settings = JSON.parse(process.env.WORKFLOW);
const require = createRequire(path.join(settings.nodeModules, "index.js"));
const { chromium } = require("playwright-core");
const AXE = require.resolve("axe-core/axe.min.js");
const WAIT = 90000;

const step = (text) => console.log(`step: ${text}`);
const shot = (page, name) => page.screenshot({ path: path.join(settings.artifacts, `${name}.png`), fullPage: true });

// axe-core on the page as it is: no violation of impact "serious" or "critical".
async function accessible(page, name) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) })));
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `${name}: accessibility violations ${JSON.stringify(bad, null, 1)}`);
  console.log(`axe ${name}: ${violations.length} minor violations`);
}

async function fieldError(page, name) {
  const node = page.locator(`[data-error-for='${name}']`);
  await page.waitForFunction((n) => document.querySelector(`[data-error-for='${n}']`)?.textContent.trim(), name, { timeout: WAIT });
  return node.textContent();
}

const browser = await chromium.launch({
  executablePath: settings.chromium, headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const page = await context.newPage();
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  const failures = [];
  page.on("response", (response) => { if (response.status() === 401) failures.push(response.url()); });
  page.on("pageerror", (error) => { throw error; });

  step("sign in with the workspace token alone");
  await page.goto(`${settings.url}/dashboard/`);
  await page.waitForSelector("#token-input");
  assert.equal(await page.locator("#sign-in input").count(), 1, "one input: the token");
  await accessible(page, "sign-in");
  await shot(page, "workflow-1-sign-in");
  await page.fill("#token-input", "sjt_wrong");
  await page.click("#sign-in-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#sign-in-error").textContent.includes("Unknown"));
  failures.length = 0;
  await page.fill("#token-input", settings.token);
  await page.click("#sign-in-form button[type=submit]");
  await page.waitForSelector("#workspace-name:has-text('" + settings.workspaceName + "')");
  await page.waitForSelector("tr.job[data-job-name='nightly-orders']");
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
  assert.ok(await page.evaluate(() => sessionStorage.getItem("syncjobs.token")), "the token is in sessionStorage");

  step("the job list: labelled columns, sorting, search, status filter");
  const headers = await page.locator("table.jobs thead th").allTextContents();
  for (const label of ["Name", "Status", "Schedule", "Last run", "Next run", "Avg duration", "Success (24 h)", "Actions"]) {
    assert.ok(headers.some((h) => h.includes(label)), `column ${label} in ${headers}`);
  }
  await accessible(page, "job list");
  // Keyboard users keep their place: a refresh rebuilds the row, the focused button has the focus again.
  await page.focus("tr.job[data-job-name='nightly-orders'] button.toggle");
  await page.evaluate(() => { document.activeElement.dataset.seen = "1"; });
  await page.waitForFunction(() => {
    const active = document.activeElement;
    return active.matches("tr.job[data-job-name='nightly-orders'] button.toggle") && !active.dataset.seen;
  }, null, { timeout: WAIT });
  await shot(page, "workflow-2-job-list");

  step("a source, a destination and a job through the forms");
  await page.click("nav a[href='#/data-sources']");
  await page.click("a[href='#/data-sources/new']");
  await page.fill("[data-field='name'] input", "shop-db");
  await page.click("#view form button[type=submit]");
  assert.match(await fieldError(page, "config.uri"), /\S/, "an empty URI is refused beside its field");
  await page.fill("[data-field='config.uri'] input", settings.databaseUri);
  await page.fill("[data-field='config.database'] input", "shop");
  await accessible(page, "source form");
  await shot(page, "workflow-3-source-form");
  await page.click("#view form button[type=submit]");
  await page.waitForSelector("table.grid td a:has-text('shop-db')");
  await shot(page, "workflow-4-sources");

  await page.click("nav a[href='#/destinations']");
  await page.click("a[href='#/destinations/new']");
  await page.fill("[data-field='name'] input", "shop-copy");
  await page.fill("[data-field='config.uri'] input", settings.databaseUri);
  await page.fill("[data-field='config.database'] input", "shop_copy");
  await page.click("#view form button[type=submit]");
  await page.waitForSelector("table.grid td a:has-text('shop-copy')");

  await page.click("nav a[href='#/']");
  await page.click("a[href='#/jobs/new']");
  await page.fill("[data-field='name'] input", "shop-sync");
  await page.selectOption("[data-field='dataSourceId'] select", { label: "shop-db (mongodb)" });
  await page.selectOption("[data-field='destinationDatabaseId'] select", { label: "shop-copy" });
  await page.fill("[data-field='schedule.timezone'] input", "Europe/London");
  await page.fill("[data-field='schedule.cron'] input", "61 * * * *");
  assert.match(await fieldError(page, "schedule.cron"), /\S/, "the preview's 422 beside the cron");
  await shot(page, "workflow-5-bad-cron");
  await page.click("#view form button[type=submit]");
  assert.match(await fieldError(page, "schedule.cron"), /\S/, "the save's 422 beside the cron");
  assert.equal(await page.locator("[data-field='schedule.cron'] input").getAttribute("aria-invalid"), "true");
  await page.fill("[data-field='schedule.cron'] input", "30 1 * * *");
  await page.waitForFunction(() => document.querySelector("#schedule-preview .words")?.textContent === "at 01:30 Europe/London");
  assert.equal(await page.locator("#schedule-preview li").count(), 5, "the next 5 fires");
  assert.equal(await page.locator("[data-error-for='schedule.cron']").textContent(), "", "the error is gone");
  await accessible(page, "job form");
  await shot(page, "workflow-6-job-form");
  await page.click("#view form button[type=submit]");
  await page.waitForSelector("h1.job-title:has-text('shop-sync')");

  step("run the job and watch its run appear without a reload");
  const navigations = [];
  page.on("framenavigated", (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });
  assert.equal(await page.locator("details.run").count(), 0);
  await page.click(".actions .run-now");
  await page.waitForSelector("details.run:has-text('manual')", { timeout: WAIT });
  await page.waitForSelector("details.run[data-status='succeeded'], details.run[data-status='failed']", { timeout: WAIT });
  assert.ok(navigations.every((url) => url.includes("#/jobs/")), `no reload: ${navigations}`);
  const dl = await page.locator("dl.config").textContent();
  for (const words of ["shop-db", "shop-copy", "full", "at 01:30 Europe/London", "skip"]) assert.ok(dl.includes(words), `${words} in ${dl}`);
  await shot(page, "workflow-7-new-job-ran");

  step("edit the job: the form comes filled, a PUT keeps what it does not show");
  await page.click("a.button:has-text('Edit')");
  await page.waitForSelector("#view form [data-field='timeoutSeconds'] input");
  assert.equal(await page.inputValue("[data-field='schedule.cron'] input"), "30 1 * * *");
  await page.fill("[data-field='timeoutSeconds'] input", "600");
  await page.fill("[data-field='schedule.cron'] input", "0 * * * *");
  await page.click("#view form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("dl.config")?.textContent.includes("10.0 min"));
  assert.match(await page.locator("dl.config").textContent(), /every hour/);
  // An hourly job gets a strip of hours beside its days, from its fires: the coming hours planned; a manual
  // run is no fire, and the fires from before the job existed are none of its (not shown missed).
  await page.waitForSelector(".calendar[data-unit='hour'] li.day-upcoming");
  assert.ok(await page.locator(".calendar[data-unit='hour'] li.day-upcoming").count() >= 6, "the coming hours");
  assert.equal(await page.locator(".calendar li.day-missed").count(), 0, "no fire before the job was made");
  assert.equal(await page.locator(".calendar[data-unit='hour'] li.today").getAttribute("data-worst"), "none");
  await shot(page, "workflow-7a-hourly-job");

  step("a webhook through its form: a bad URL answered beside it, the secret shown once");
  await page.click("nav a[href='#/webhooks']");
  await page.click("a[href='#/webhooks/new']");
  await page.fill("[data-field='url'] input", "not a url");
  await page.click("#view form button[type=submit]");
  assert.match(await fieldError(page, "url"), /\S/);
  await page.fill("[data-field='url'] input", "http://127.0.0.1:9/hook");
  await page.click("#view form button[type=submit]");
  await page.waitForSelector("pre.secret");
  assert.match(await page.locator("pre.secret").textContent(), /^\S{16,}$/, "the signing secret, shown once");
  await shot(page, "workflow-7b-webhook-secret");
  await page.click("a.button:has-text('Done')");
  await page.waitForSelector("table.grid td:has-text('http://127.0.0.1:9/hook')");
  await accessible(page, "webhooks");
  await shot(page, "workflow-7c-webhooks");
  await page.click("table.grid button.delete");
  await page.click("button.confirm-delete");
  await page.waitForSelector("p.empty:has-text('No webhooks')");

  step("a job with 30 seeded runs: chart, calendar strip, paged and filtered history, run detail");
  await page.goto(`${settings.url}/dashboard/#/jobs/${settings.seededJobId}`);
  await page.waitForSelector("svg.chart circle.dot");
  assert.equal(await page.locator("svg.chart circle.dot").count(), 30, "one dot per seeded run");
  for (const status of ["succeeded", "failed", "timed_out", "cancelled", "skipped", "missed"]) {
    assert.ok(await page.locator(`svg.chart circle.dot-${status}`).count() > 0, `a ${status} dot`);
  }
  await page.waitForFunction(() => getComputedStyle(document.querySelector("svg.chart circle.dot-failed")).fill === "rgb(198, 40, 40)");
  await page.locator("svg.chart circle.dot-failed").first().hover();
  await page.waitForFunction(() => document.querySelector("#chart-detail").textContent.startsWith("failed"));
  assert.equal(await page.locator(".calendar[data-unit='day'] li.day").count(), 30, "22 days back, today, 7 ahead");
  assert.equal(await page.locator(".calendar[data-unit='hour']").count(), 0, "a daily job has no hour strip");
  assert.ok(await page.locator(".calendar li.day-failed").count() >= 3, "failed days");
  assert.ok(await page.locator(".calendar li.day-succeeded").count() >= 3, "good days");
  assert.ok(await page.locator(".calendar li.day-upcoming").count() >= 1, "planned days");
  // The strip is the job's fires (GET .../fires): a fire's outcome is its latest run's, with the reason of
  // a skipped or missed one; the days before the job existed have no fires.
  assert.equal(await page.locator(".calendar[data-unit='day'] li.day-failed").count(), 3, "three fires failed for good");
  assert.ok(await page.locator(".calendar[data-unit='day'] li.day-upcoming").count() >= 7, "a fire a day ahead");
  assert.match(await page.locator(".calendar li.day-skipped").getAttribute("aria-label"), /: 1 skipped \(the run before still ran\)$/);
  assert.match(await page.locator(".calendar li.day-missed").getAttribute("title"), /: 1 missed \(no scheduler was up\)$/);
  assert.equal(await page.locator(".calendar li.day-missed").count(), 1, "only the seeded missed fire: none from before the job");
  assert.equal(await page.locator(".calendar[data-unit='day'] li.day").first().getAttribute("data-worst"), "none", "22 days back: no job yet");
  assert.equal(await page.locator("details.run").count(), 20, "the first page");
  assert.equal(await page.locator("ol.upcoming li").count(), 5, "the next 5 fires beside the runs");
  assert.match(await page.locator("ol.upcoming li").first().textContent(), /03:00/);
  await accessible(page, "job page");
  await shot(page, "workflow-8-seeded-job");
  await page.click("button.more-runs");
  await page.waitForFunction(() => document.querySelectorAll("details.run").length === 30);
  await page.selectOption("#run-filter", "failed");
  await page.waitForFunction(() => [...document.querySelectorAll("details.run")].every((n) => n.dataset.status === "failed")
    && document.querySelectorAll("details.run").length === 5);
  const failed = page.locator("details.run").first();
  await failed.locator("summary").click();
  await failed.locator(".run-error").waitFor();
  assert.match(await failed.locator(".run-error").textContent(), /connection refused/);
  assert.match(await failed.locator("pre.stderr").textContent(), /OSError/);
  assert.ok(await failed.locator("tr[data-entity='orders']").isVisible());
  // A refresh rebuilds the history: the open run stays open, and its summary keeps the keyboard focus.
  await failed.locator("summary").focus();
  await page.evaluate(() => { document.querySelector("details.run[open]").dataset.seen = "1"; });
  await page.waitForFunction(() => {
    const open = document.querySelector("details.run[open]");
    return open && !open.dataset.seen && document.activeElement === open.querySelector("summary");
  }, null, { timeout: WAIT });
  assert.ok(await page.locator("details.run[open] .run-error").isVisible());
  await shot(page, "workflow-9-run-detail");

  step("state-fitting actions: a disabled job offers no Run now");
  await page.click(".actions .toggle");
  await page.waitForSelector("h1.job-title .badge[data-status='disabled']");
  assert.equal(await page.locator(".actions .run-now").count(), 0);
  await page.click("nav a[href='#/']");
  const seededRow = page.locator("tr.job[data-job-name='nightly-orders']");
  await seededRow.waitFor();
  assert.equal(await seededRow.locator(".run-now").count(), 0);
  assert.equal(await page.locator("tr.job[data-job-name='shop-sync'] .run-now").count(), 1);
  await page.click("button.sort[data-sort='name']");
  await page.waitForSelector("th[aria-sort='descending'] button[data-sort='name']");
  assert.deepEqual(await page.locator("tr.job").evaluateAll((rows) => rows.map((r) => r.dataset.jobName)), ["shop-sync", "nightly-orders"]);
  await page.fill("#job-search", "shop");
  await page.waitForFunction(() => document.querySelectorAll("tr.job").length === 1);
  await page.fill("#job-search", "");
  await page.selectOption("#job-filter", "disabled");
  await page.waitForFunction(() => [...document.querySelectorAll("tr.job")].map((r) => r.dataset.jobName).join() === "nightly-orders");
  await page.selectOption("#job-filter", "");
  await shot(page, "workflow-10-job-list");

  step("pause a job with a note from the list (an end in the past answered beside it), see it shown; resume it");
  const shopRow = page.locator("tr.job[data-job-name='shop-sync']");
  await shopRow.locator("button.pause").click();
  await page.waitForSelector("dialog.pause-dialog[open]");
  await page.fill("dialog.pause-dialog [data-field='until'] input", "2001-01-01T00:00");
  await page.click("dialog.pause-dialog button.confirm-pause");
  assert.match(await fieldError(page, "until"), /future/, "a past end is refused beside its field");
  const until = await page.evaluate(() => {
    const d = new Date(Date.now() + 2 * 86400000);
    d.setSeconds(0, 0);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  });
  await page.fill("dialog.pause-dialog [data-field='until'] input", until);
  await page.fill("dialog.pause-dialog [data-field='note'] input", "vendor maintenance <b>till Monday</b>");
  await accessible(page, "pause dialog");
  await shot(page, "workflow-10a-pause-dialog");
  await page.click("dialog.pause-dialog button.confirm-pause");
  await page.waitForSelector("dialog.pause-dialog", { state: "detached" });
  await shopRow.locator(".badge[data-status='paused']").waitFor();
  assert.match(await shopRow.locator(".pause-info").textContent(), /^paused until .+: vendor maintenance <b>till Monday<\/b>$/);
  assert.equal(await shopRow.locator("button.resume").count(), 1);
  assert.equal(await shopRow.locator("button.pause").count(), 0);
  const paused = await page.evaluate(async (name) => {
    const ws = sessionStorage.getItem("syncjobs.ws");
    const headers = { Authorization: `Bearer ${sessionStorage.getItem("syncjobs.token")}` };
    const jobs = await (await fetch(`/api/workspaces/${ws}/sync-jobs`, { headers })).json();
    return jobs.items.find((j) => j.name === name);
  }, "shop-sync");
  assert.equal(paused.paused, true);
  assert.equal(paused.pauseNote, "vendor maintenance <b>till Monday</b>");
  assert.equal(new Date(paused.pausedUntil).getTime(), await page.evaluate((u) => new Date(u).getTime(), until), "until, as typed in local time");
  await page.selectOption("#job-filter", "paused");
  await page.waitForFunction(() => [...document.querySelectorAll("tr.job")].map((r) => r.dataset.jobName).join() === "shop-sync");
  await page.selectOption("#job-filter", "");
  await accessible(page, "job list with a paused job");
  await shot(page, "workflow-10b-paused-list");
  await shopRow.locator("td.name a").click();
  await page.waitForSelector("h1.job-title .badge[data-status='paused']");
  assert.match(await page.locator("p.pause-info").textContent(), /^paused until .+: vendor maintenance/);
  assert.match(await page.locator("#view").textContent(), /held: recorded skipped while paused/, "the next fire is held");
  await accessible(page, "paused job page");
  await shot(page, "workflow-10c-paused-job");
  await page.click(".actions button.resume");
  await page.waitForSelector("h1.job-title .badge:not([data-status='paused'])");
  assert.equal(await page.locator(".pause-info").count(), 0, "the note is gone with the pause");
  assert.equal(await page.locator(".actions button.pause").count(), 1);
  assert.match(await page.locator("#notice").textContent(), /resumed/);

  step("deleting a source a job uses shows the 409");
  await page.click("nav a[href='#/data-sources']");
  await page.click("table.grid td a:has-text('shop-db')");
  await page.waitForSelector("[data-field='config.uri'] input");
  assert.equal(await page.inputValue("[data-field='config.uri'] input"), "", "a secret is never shown");
  assert.ok(!(await page.content()).includes(settings.databaseUri), "the stored URI is nowhere in the page");
  await page.fill("[data-field='config.database'] input", "shop2");
  await page.click("#view form button[type=submit]");  // the empty URI sends the write-only marker: kept as stored
  await page.waitForSelector("table.grid td:has-text('shop2')");
  await page.click("table.grid td a:has-text('shop-db')");
  await page.click("button.delete");
  await page.click("button.confirm-delete");
  await page.waitForSelector(".delete-error");
  assert.match(await page.locator(".delete-error").textContent(), /use|job/i);
  await shot(page, "workflow-11-delete-409");

  step("the API cannot be reached: a banner, gone when it answers again");
  await page.click("nav a[href='#/']");
  await page.route("**/api/**", (route) => route.abort());
  await page.waitForSelector("#offline", { state: "visible", timeout: WAIT });
  await shot(page, "workflow-12-offline");
  await page.unroute("**/api/**");
  await page.waitForSelector("#offline", { state: "hidden", timeout: WAIT });

  step("every request stayed on the API's origin, and nothing asked for a favicon");
  const origin = new URL(settings.url).origin;
  assert.deepEqual(requests.filter((url) => !url.startsWith(origin) && !url.startsWith("data:")), []);
  assert.deepEqual(requests.filter((url) => url.includes("favicon")), []);
  assert.deepEqual(failures, [], "no 401 once signed in");

  step("an admin token switches workspaces");
  await page.click("#sign-out");
  await page.fill("#token-input", settings.adminToken);
  await page.click("#sign-in-form button[type=submit]");
  await page.waitForSelector("#workspace-switch:not([hidden]) #workspace-select option", { state: "attached" });
  await page.waitForSelector("tr.job[data-job-name='nightly-orders']");
  await page.selectOption("#workspace-select", { label: "empty-team" });
  await page.waitForSelector("p.empty:has-text('No sync jobs')");
  assert.equal(await page.locator("tr.job").count(), 0);
  await accessible(page, "empty workspace, admin");
  await shot(page, "workflow-13-admin-empty-workspace");

  step("cancel a pending run from its detail, without a reload; one that ended meanwhile shows the 409");
  await page.selectOption("#workspace-select", { label: settings.waitingWorkspace });
  await page.click("tr.job[data-job-name='slow-queue'] td.name a");
  const [older, newer] = settings.pendingRuns.map((id) => page.locator(`details.run[data-run-id='${id}']`));
  await newer.locator("summary").click();
  await newer.locator("button.cancel-run").waitFor();
  const seen = navigations.length;
  await newer.locator("button.cancel-run").click();
  await page.waitForSelector(`details.run[data-run-id='${settings.pendingRuns[1]}'][data-status='cancelled']`, { timeout: WAIT });
  assert.match(await page.locator("#notice").textContent(), /cancelled/);
  assert.equal(await newer.locator("button.cancel-run").count(), 0, "no Cancel on an ended run");
  assert.ok(navigations.slice(seen).every((url) => url.includes("#/jobs/")), `no reload: ${navigations.slice(seen)}`);
  await older.locator("summary").click();
  await older.locator("button.cancel-run").waitFor();
  await accessible(page, "run detail with cancel");
  await shot(page, "workflow-13a-run-cancelled");
  // Someone else cancels the older run just before this page's click lands: the page says it had ended.
  await page.evaluate(async (id) => {
    const button = document.querySelector(`details.run[data-run-id='${id}'] button.cancel-run`);
    const ws = sessionStorage.getItem("syncjobs.ws");
    const answer = await fetch(`/api/workspaces/${ws}/runs/${id}/cancel`, { method: "POST", headers: { Authorization: `Bearer ${sessionStorage.getItem("syncjobs.token")}` } });
    if (answer.status !== 200) throw new Error(`cancel by API: ${answer.status}`);
    button.click();
  }, settings.pendingRuns[0]);
  await page.waitForFunction(() => document.querySelector("#notice.error")?.textContent.startsWith("The run has already ended"));
  await page.waitForSelector(`details.run[data-run-id='${settings.pendingRuns[0]}'][data-status='cancelled']`);

  await page.selectOption("#workspace-select", { label: settings.workspaceName });
  await page.waitForSelector("tr.job[data-job-name='nightly-orders']");

  step("a read-only token sees the jobs and no control that would be refused");
  await page.click("#sign-out");
  await page.fill("#token-input", settings.readToken);
  await page.click("#sign-in-form button[type=submit]");
  await page.waitForSelector("tr.job[data-job-name='nightly-orders']");
  assert.match(await page.locator("#workspace-name").textContent(), /read only/);
  assert.equal(await page.locator("tr.job button").count(), 0, "no action buttons");
  assert.equal(await page.locator("a[href='#/jobs/new']").count(), 0, "no New job");
  await page.click("tr.job[data-job-name='nightly-orders'] a");
  await page.waitForSelector("svg.chart circle.dot");
  assert.equal(await page.locator("a.button:has-text('Edit'), .run-now, .toggle").count(), 0);
  await shot(page, "workflow-14-read-only");

  step("a phone");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${settings.url}/dashboard/#/jobs/${settings.seededJobId}`);
  await page.waitForSelector("svg.chart circle.dot");
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no sideways scroll");
  await shot(page, "workflow-15-phone-job");
  console.log("workflow done");
} catch (error) {
  const [open] = browser.contexts().flatMap((c) => c.pages());
  if (open) await shot(open, "workflow-failure").catch(() => {});
  throw error;
} finally {
  await browser.close();
}

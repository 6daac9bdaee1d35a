// syncjobs dashboard, part 2 of 6: words and small pieces for humans (schedules, times, durations, badges).
"use strict";

const FAILED = new Set(["failed", "timed_out"]);
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MACROS = {
  "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
};
// A fire's DST note (schedule preview, fires) in words.
const DST_WORDS = { gap_shifted: "moved to the end of the DST gap", repeated_hour: "the clock shows this hour twice" };
const RUN_STATUSES = ["pending", "running", "succeeded", "failed", "timed_out", "cancelled", "skipped", "missed"];

function plural(n, unit) { return `${n} ${unit}${n === 1 ? "" : "s"}`; }
function pad(n) { return String(n).padStart(2, "0"); }
const isNumber = (field) => /^\d+$/.test(field);

// The job list's words for a schedule (the API's schedule preview says the same, shared/cron_words.py).
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
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

function timeEl(iso) {
  return el("time", { datetime: iso || undefined, title: iso ? new Date(iso).toLocaleString() : undefined }, relativeTime(iso));
}

function badge(status, text) {
  return el("span", { class: `badge badge-${status}`, "data-status": status }, text || status.replace("_", " "));
}

// A job's standing: disabled (grey), running (blue), paused (its fires held: yellow), failing (red), pending
// (yellow: never ran), active (green).
function jobStatus(job, stats) {
  if (!job.enabled) return "disabled";
  const last = job.lastStatus || (stats && stats.lastStatus);
  if (stats && stats.lastStatus === "running") return "running";
  if (job.paused) return "paused";
  if (FAILED.has(last)) return "failing";
  if (!last || last === "pending") return "pending";
  return "active";
}

function notify(message, isError) {
  const notice = $("notice");
  notice.textContent = message || "";
  notice.className = isError ? "notice error" : "notice";
}

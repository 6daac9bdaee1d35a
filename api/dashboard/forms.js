// syncjobs dashboard, part 3 of 6: forms for sources, destinations, jobs and webhooks. The API decides
// what is valid: its 422 `details` are shown beside the field they name.
"use strict";

const SECRET_MARK = "********";
let fieldCounter = 0;

// A labelled control whose errors appear right under it; `name` is the API's field path (schedule.cron).
function field(label, name, control, hint) {
  const id = `f-${++fieldCounter}`;
  const errorId = `${id}-error`;
  control.id = id;
  control.name = name;
  control.setAttribute("aria-describedby", errorId);
  return el("div", { class: "field", "data-field": name },
    el("label", { for: id }, label), control,
    hint ? el("p", { class: "hint" }, hint) : null,
    el("p", { class: "field-error error", id: errorId, "data-error-for": name }));
}

const textInput = (value, attrs) => el("input", { type: "text", value: value ?? "", ...attrs });
function select(options, value) {
  return el("select", {}, options.map(([v, text]) => el("option", { value: v, selected: v === value }, text)));
}

// Writes each detail beside the field it names (the longest field path that prefixes it); the rest and
// the message go to the form's own error line.
function showErrors(form, error) {
  clearErrors(form);
  const fields = [...form.querySelectorAll("[data-field]")];
  const loose = [];
  for (const detail of error.details.length ? error.details : [{ message: error.message }]) {
    const target = fields
      .filter((f) => detail.field && (detail.field === f.dataset.field || detail.field.startsWith(`${f.dataset.field}.`)))
      .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
    if (!target) { loose.push(detail.field ? `${detail.field}: ${detail.message}` : detail.message); continue; }
    target.querySelector(".field-error").textContent = detail.message;
    target.querySelector("input, select, textarea").setAttribute("aria-invalid", "true");
  }
  form.querySelector(".form-error").textContent = loose.join("; ");
}

function clearErrors(form) {
  form.querySelectorAll(".field-error, .form-error").forEach((node) => { node.textContent = ""; });
  form.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
}

function jsonValue(text, name) {
  try { return JSON.parse(text); } catch (error) { throw new ApiError(422, "invalid JSON", [{ field: name, message: `not valid JSON: ${error.message}` }]); }
}

// A form that sends `build()` and goes to `done(saved)` on success (nowhere if that is null); a failure
// shows beside its fields.
function apiForm(title, fields, { build, send, done, extra }) {
  const form = el("form", { class: "panel wide", novalidate: true, "aria-label": title },
    el("h1", {}, title), fields,
    el("p", { class: "form-error error", role: "alert" }),
    el("div", { class: "actions start" }, el("button", { type: "submit", class: "primary" }, "Save"),
      el("a", { href: done(), class: "button" }, "Cancel"), extra || null));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const saved = await send(build(form));
      const next = done(saved);
      if (next) location.hash = next;
    } catch (error) {
      showErrors(form, error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

const value = (form, name) => form.elements[name].value;

// Delete with a confirmation in the page; a 409 (a job still uses this source) is shown as the API says it.
function deleteButton(noun, name, path, after) {
  if (!access.write) return null;
  const box = el("span", { class: "confirm" });
  const ask = el("button", { type: "button", class: "danger delete" }, `Delete ${noun}`);
  ask.addEventListener("click", () => {
    fill(box, el("span", {}, `Delete ${noun} “${name}”? `),
      el("button", { type: "button", class: "danger confirm-delete", onclick: async () => {
        try { await call("DELETE", path); show(after); notify(`${noun} “${name}” deleted`); }
        catch (error) { fill(box, el("span", { class: "error delete-error", role: "alert" }, error.message)); }
      } }, "Yes, delete"),
      el("button", { type: "button", onclick: () => box.replaceChildren() }, "Keep it"));
    box.querySelector(".confirm-delete").focus();
  });
  return el("span", {}, ask, box);
}

// --- sources and destinations ------------------------------------------------------------------------------

const CONNECTIONS = {
  "data-sources": { noun: "source", title: "Data sources", kinds: ["mongodb", "http", "command"] },
  destinations: { noun: "destination", title: "Destinations", kinds: ["mongodb"] },
};

async function connectionList(collection) {
  const { noun, title } = CONNECTIONS[collection];
  const items = await allItems(wsPath(`/${collection}`));
  return [
    el("div", { class: "heading" }, el("h1", {}, title), access.write ? el("a", { class: "button primary", href: `#/${collection}/new` }, `New ${noun}`) : null),
    items.length ? el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Kind"), el("th", { scope: "col" }, "Database or URL"))),
      el("tbody", {}, items.map((item) => el("tr", { "data-id": item.id },
        el("td", {}, el("a", { href: `#/${collection}/${item.id}` }, item.name)), el("td", {}, item.kind),
        el("td", {}, item.config.database || item.config.baseUrl || (item.config.command || []).join(" ") || item.config.tap || "")))))
      : el("p", { class: "muted empty" }, `No ${noun}s yet. `, el("a", { href: `#/${collection}/new` }, `Create the first ${noun}`), "."),
  ];
}

// MongoDB connections get fields; http and command sources take their config as JSON. A secret field is
// empty on edit and means "keep what is stored" when left so (the API's write-only marker).
async function connectionForm(collection, id) {
  const { noun, kinds } = CONNECTIONS[collection];
  const item = id ? await call("GET", wsPath(`/${collection}/${id}`)) : { name: "", kind: kinds[0], config: {} };
  const kind = select(kinds.map((k) => [k, k]), item.kind);
  const uri = el("input", { type: "password", autocomplete: "off", placeholder: id ? "unchanged (write-only)" : "mongodb://user:password@host:27017/" });
  const mongo = el("div", {}, field("Connection URI", "config.uri", uri, "Write-only: it is stored encrypted and never shown again."),
    field("Database", "config.database", textInput(item.config.database)));
  const loose = { ...item.config };
  const json = el("div", {}, field("Config (JSON)", "config", el("textarea", { rows: 8, spellcheck: "false" },
    JSON.stringify(item.kind === "mongodb" ? {} : loose, null, 2)), "Secret values show as ******** and are kept as stored if left so."));
  const showKind = () => { mongo.hidden = kind.value !== "mongodb"; json.hidden = kind.value === "mongodb"; };
  kind.addEventListener("change", showKind);
  showKind();
  const form = apiForm(id ? `Edit ${noun} “${item.name}”` : `New ${noun}`,
    [field("Name", "name", textInput(item.name, { required: true })), kinds.length > 1 ? field("Kind", "kind", kind) : null, mongo, json], {
      build: (f) => {
        const body = { name: value(f, "name"), kind: kinds.length > 1 ? value(f, "kind") : "mongodb" };
        body.config = body.kind === "mongodb"
          ? { uri: value(f, "config.uri") || (id ? SECRET_MARK : ""), database: value(f, "config.database") }
          : jsonValue(value(f, "config"), "config");
        return body;
      },
      send: (body) => call(id ? "PUT" : "POST", wsPath(`/${collection}${id ? `/${id}` : ""}`), body),
      done: () => `#/${collection}`,
      extra: id ? deleteButton(noun, item.name, wsPath(`/${collection}/${id}`), `#/${collection}`) : null,
    });
  return [form];
}

// --- webhooks -----------------------------------------------------------------------------------------------

async function webhookList() {
  const items = await allItems(wsPath("/webhooks"));
  return [
    el("div", { class: "heading" }, el("h1", {}, "Webhooks"), access.write ? el("a", { class: "button primary", href: "#/webhooks/new" }, "New webhook") : null),
    items.length ? el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "URL"), el("th", { scope: "col" }, "Events"), el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")))),
      el("tbody", {}, items.map((hook) => el("tr", { "data-id": hook.id }, el("td", { class: "wrap" }, hook.url), el("td", {}, hook.events.join(", ")),
        el("td", {}, deleteButton("webhook", hook.url, wsPath(`/webhooks/${hook.id}`), "#/webhooks"))))))
      : el("p", { class: "muted empty" }, "No webhooks: alerts are shown here only. ", el("a", { href: "#/webhooks/new" }, "Add a webhook"), "."),
  ];
}

function webhookForm() {
  const events = ["alert.opened", "alert.resolved", "run.started", "run.succeeded", "run.failed", "run.cancelled", "run.missed"];
  const boxes = el("fieldset", { class: "field", "data-field": "events" }, el("legend", {}, "Events"),
    events.map((name) => el("label", { class: "inline" }, el("input", { type: "checkbox", value: name, checked: name.startsWith("alert.") }), ` ${name}`)),
    el("p", { class: "field-error error", "data-error-for": "events" }));
  const secret = el("input", { type: "password", autocomplete: "off" });
  const form = apiForm("New webhook", [field("URL", "url", textInput("", { placeholder: "https://hooks.example.com/syncjobs" })), boxes,
    field("Signing secret (optional)", "secret", secret, "16 characters or more; left empty, the API makes one and shows it once.")], {
    build: (f) => {
      const body = { url: value(f, "url"), events: [...boxes.querySelectorAll("input:checked")].map((b) => b.value) };
      if (value(f, "secret")) body.secret = value(f, "secret");
      return body;
    },
    send: async (body) => {
      const created = await call("POST", wsPath("/webhooks"), body);
      form.replaceWith(el("section", { class: "panel wide", "aria-labelledby": "created-title" },
        el("h1", { id: "created-title" }, "Webhook created"),
        el("p", {}, `Deliveries to ${created.url} are signed with this secret, shown this once:`),
        el("pre", { class: "secret", tabindex: 0 }, created.secret),
        el("a", { class: "button primary", href: "#/webhooks" }, "Done")));
      return created;
    },
    done: (created) => (created ? null : "#/webhooks"),
  });
  return [form];
}

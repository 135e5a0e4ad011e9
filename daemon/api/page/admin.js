// The admin page: plain JavaScript against /api/v1, nothing fetched from elsewhere.
// The token is kept in sessionStorage (this tab only); lists refresh by ETag polling.
"use strict";

const API = "/api/v1";
const POLL_MS = 5000;
const state = { cursor: null, cursors: [], filters: {}, tags: new Map(), cache: new Map(), fetched: new Map(),
  selected: new Set(), view: "overview" };

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function token() { return sessionStorage.getItem("outboxd.token") || ""; }

function say(text, bad = false) {
  const status = $("#status");
  status.textContent = text;
  status.className = bad ? "bad" : "";
  state.trouble = bad;
}

async function call(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (method === "GET" && state.tags.has(path)) headers["If-None-Match"] = state.tags.get(path);
  // every write says JSON, with a body or none: what a form of another site cannot send
  if (method !== "GET") headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers,
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) { askToken("That token was refused: " + (await problem(response))); throw new Error("401"); }
  if (response.status === 304) return { changed: false, data: state.cache.get(path) };
  if (!response.ok) throw new Error(await problem(response));
  const data = response.status === 204 ? null : await response.json();
  const tag = response.headers.get("ETag");
  if (method === "GET" && tag) {
    state.tags.set(path, tag); state.cache.set(path, data); state.fetched.set(path, Date.now());
  }
  return { changed: true, data };
}

async function problem(response) {
  try { const p = await response.json(); return p.detail || response.statusText; }
  catch { return response.statusText; }
}

function askToken(message) {
  $("#login-error").textContent = message || "";
  const dialog = $("#login");
  if (!dialog.open) dialog.showModal();
  $("#token").focus();
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 129600) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

// Every time shown in the file's timezone (GET /stats says which), labelled with it.
function when(iso, withDate = true) {
  if (!iso) return "-";
  const zone = state.zone || "UTC";
  const parts = {};
  for (const p of new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", timeZoneName: "short" }).formatToParts(new Date(iso))) parts[p.type] = p.value;
  const time = `${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName}`;
  return withDate ? `${parts.year}-${parts.month}-${parts.day} ${time}` : time;
}

// --- messages ---------------------------------------------------------------------------

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const text = q.toString();
  return text ? "?" + text : "";
}

function readFilters() {
  const form = $("#filters");
  const out = {};
  for (const name of ["channel", "status", "kind", "key"]) out[name] = form.elements[name].value.trim();
  const search = form.elements.search.value.trim();
  if (search) out[form.elements.field.value] = search;
  for (const name of ["since", "until"]) {
    const value = form.elements[name].value;
    out[name] = value ? new Date(value).toISOString() : "";
  }
  return out;
}

async function showMessages(force = false) {
  const path = API + "/messages" + query({ ...state.filters, cursor: state.cursor, limit: 50 });
  const { changed, data } = await call("GET", path);
  if (!changed && !force && $("#message-table tbody").childElementCount) return;
  const body = $("#message-table tbody");
  body.replaceChildren();
  for (const m of data.items) {
    const box = el("input", { type: "checkbox", "aria-label": "select message " + m.id,
      "data-id": m.id, checked: state.selected.has(m.id) ? "" : null });
    const open = el("button", { type: "button", class: "link", "data-open": m.id, text: String(m.id) });
    body.append(el("tr", { "data-id": m.id },
      el("td", {}, box), el("td", {}, open), el("td", { text: m.channel }), el("td", { text: m.kind }),
      el("td", { text: m.key }), el("td", { class: statusClass(m.status), text: m.status }),
      el("td", { text: m.attempts }), el("td", { text: when(m.created_at) }),
      el("td", { class: "err", text: m.last_error || "" })));
  }
  if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 9, text: "no messages match" })));
  $("#next-page").disabled = !data.next;
  $("#next-page").dataset.cursor = data.next || "";
  $("#first-page").disabled = !state.cursor;
}

function statusClass(status) {
  return { failed: "bad", rejected: "bad", sent: "ok", confirmed: "ok", pending: "warn" }[status] || "";
}

function selectorFor(button) {
  const scope = button.dataset.scope;
  if (scope === "one") return { ids: [Number(button.dataset.id)] };
  if (scope === "selected") return { ids: [...state.selected] };
  const filter = { ...state.filters, status: [scope] };
  for (const k of Object.keys(filter)) if (filter[k] === "") delete filter[k];
  delete filter.key;
  return { filter };
}

async function act(button) {
  const action = button.dataset.action;
  const selector = selectorFor(button);
  if (selector.ids && !selector.ids.length) { say("Select messages first.", true); return; }
  try {
    const { data: dry } = await call("POST", `${API}/messages/${action}`, { ...selector, dry_run: true });
    $("#confirm-text").textContent = dryRunWords(action, button.dataset.scope, selector, dry);
    const dialog = $("#confirm");
    dialog.returnValue = "";
    $("#confirm-reason").value = "";
    dialog.showModal();
    $("#confirm-ok").focus();
    const ok = await new Promise((resolve) => dialog.addEventListener("close",
      () => resolve(dialog.returnValue === "ok"), { once: true }));
    if (!ok) { say("Nothing done."); return; }
    const reason = $("#confirm-reason").value.trim();
    const { data } = await call("POST", `${API}/messages/${action}`,
      reason ? { ...selector, reason } : selector);
    say(data.operation
      ? `${action}: ${data.matched} message(s), in batches (operation ${data.operation}).`
      : `${action}: ${data.changed.length} message(s) changed.`);
    state.selected.clear();
    await showMessages(true);
    if (state.openMessage) await showTimeline(state.openMessage, true);
  } catch (err) { if (err.message !== "401") say(err.message, true); }
}

// --- schedules, processes, audit --------------------------------------------------------

async function showSchedules() {
  const { changed, data } = await call("GET", API + "/schedules");
  if (!changed && $("#schedule-table tbody").childElementCount) return;
  const body = $("#schedule-table tbody");
  body.replaceChildren();
  for (const s of data.items) {
    body.append(el("tr", { "data-name": s.name },
      el("td", {}, el("button", { type: "button", "data-ledger": s.name, text: s.name })),
      el("td", { text: s.job }), el("td", { text: `${s.when} (${s.timezone})` }),
      el("td", { text: s.state }), el("td", { text: s.next ? when(s.next.at) : "-" }),
      el("td", { text: s.last_run ? `${s.last_run.status} (${when(s.last_run.fire_time)})` : "-" }),
      el("td", {}, el("button", { type: "button", "data-run": s.name, text: "Run now" }))));
  }
}

function runNote(r) {
  const said = r.error || r.note || "";
  const asked = r.cancel_requested && r.status === "running"
    ? `cancel asked for by ${r.cancel_requested.by}${r.cancel_requested.note ? ": " + r.cancel_requested.note : ""}` : "";
  const output = r.output && r.output.tail && r.output.tail.length ? "last line: " + r.output.tail[r.output.tail.length - 1] : "";
  return [said, asked, output].filter(Boolean).join(" — ");
}

async function showLedger(name, focus = true) {
  const { data } = await call("GET", `${API}/schedules/${encodeURIComponent(name)}/runs?limit=50`);
  const list = el("table", {}, el("thead", {}, el("tr", {},
    ...["run", "fire time", "trigger", "attempt", "status", "error or note", ""].map((h) => el("th", { scope: "col", text: h })))));
  const body = el("tbody", {});
  for (const r of data.items) {
    const cancellable = (r.status === "queued" || r.status === "running") && !(r.cancel_requested && r.status === "running");
    body.append(el("tr", { "data-run-id": r.id }, el("td", { text: r.id }), el("td", { text: when(r.fire_time) }),
      el("td", { text: r.trigger }), el("td", { text: r.attempt }),
      el("td", { class: statusClass(r.status === "succeeded" ? "sent" : r.status), text: r.status }),
      el("td", { class: "err", text: runNote(r) }),
      el("td", {}, cancellable ? el("button", { type: "button", "data-cancel-run": r.id, "data-schedule": name,
        "data-status": r.status, "aria-label": `cancel run ${r.id}`, text: "Cancel" }) : "")));
  }
  list.append(body);
  const box = $("#ledger");
  box.hidden = false;
  box.dataset.name = name;
  box.replaceChildren(el("h3", { tabindex: "-1", text: `Ledger of ${name}` }), list);
  if (focus) $("h3", box).focus();
}

async function cancelRun(button) {
  const { schedule, cancelRun: id, status } = button.dataset;
  $("#cancel-run-text").textContent = status === "running"
    ? `Run ${id} of ${schedule} is running: its scheduler stops its job and records it cancelled; it is not retried.`
    : `Run ${id} of ${schedule} is queued: it is cancelled at once and never starts.`;
  $("#cancel-run-note").value = "";
  const dialog = $("#cancel-run");
  dialog.returnValue = "";
  dialog.showModal();
  $("#cancel-run-note").focus();
  const ok = await new Promise((resolve) => dialog.addEventListener("close",
    () => resolve(dialog.returnValue === "ok"), { once: true }));
  if (!ok) { say("Nothing done."); return; }
  try {
    const note = $("#cancel-run-note").value.trim();
    const { data } = await call("POST", `${API}/schedules/${encodeURIComponent(schedule)}/runs/${id}/cancel`,
      note ? { note } : {});
    say(data.said + ".");
    await showLedger(schedule, false);
  } catch (err) { if (err.message !== "401") say(err.message, true); }
}

async function runNow(name) {
  try {
    const { data } = await call("POST", `${API}/schedules/${encodeURIComponent(name)}/run`);
    say(`Run ${data.run} of ${name} queued; ${data.starts}.`);
  } catch (err) { if (err.message !== "401") say(err.message, true); }
}

// --- notifications -------------------------------------------------------------------------

async function showNotifications(force = false) {
  const form = $("#notification-filters");
  const params = { event: form.elements.event.value, ok: form.elements.ok.value,
    before: state.notificationsBefore, limit: 50 };
  const { changed, data } = await call("GET", API + "/notifications" + query(params));
  const body = $("#notification-table tbody");
  if (!changed && !force && body.childElementCount) return;
  body.replaceChildren();
  for (const n of data.items) {
    body.append(el("tr", { "data-id": n.id }, el("td", { text: when(n.at) }),
      el("td", { class: n.event === "firing" ? "bad" : (n.event === "resolved" ? "ok" : ""), text: n.event }),
      el("td", { text: n.rule }), el("td", { text: n.subject }), el("td", { text: n.target }),
      el("td", { class: n.ok ? "" : "bad", text: (n.ok ? "" : "failed: ") + (n.answer || "") }),
      el("td", {}, el("button", { type: "button", class: "link", "data-notification": n.id,
        text: n.title || "(no subject line kept)" }))));
  }
  if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 7, text: "no notifications" })));
  state.notifications = new Map(data.items.map((n) => [String(n.id), n]));
  $("#notifications-next").disabled = !data.next;
  $("#notifications-next").dataset.cursor = data.next || "";
  $("#notifications-first").disabled = !state.notificationsBefore;
}

function showNotificationText(id) {
  const n = (state.notifications || new Map()).get(String(id));
  if (!n) return;
  const box = $("#notification-text");
  box.hidden = false;
  box.replaceChildren(el("h3", { tabindex: "-1", text: n.title || `Notification ${n.id}` }),
    el("p", { text: `${when(n.at)} — ${n.event}, ${n.rule} about ${n.subject}, to ${n.target}` }),
    el("pre", { text: n.text || "(no text kept)" }));
  $("h3", box).focus();
}

async function showProcesses() {
  const body = $("#process-table tbody");
  try {
    const { changed, data } = await call("GET", API + "/processes");
    if (!changed && body.childElementCount) return;
    body.replaceChildren();
    for (const p of data.items) {
      const health = p.health ? (p.health.ready ? "ready" : (p.health.problems || []).join("; ") || "not ready") : "-";
      const actions = p.answering
        ? el("td", { class: "muted", text: "this page's own process: use supervisorctl" })
        : el("td", {}, ...["start", "stop", "restart"].map((verb) => el("button", { type: "button",
          "data-process": p.name, "data-verb": verb, "aria-label": `${verb} ${p.name}`,
          text: verb[0].toUpperCase() + verb.slice(1) })));
      body.append(el("tr", { "data-program": p.name }, el("td", { text: p.name }),
        el("td", { class: p.state === "RUNNING" ? "ok" : "bad", text: p.state }),
        el("td", { text: p.description || "" }), el("td", { text: health }), actions));
    }
  } catch (err) {
    if (err.message === "401") return;
    body.replaceChildren(el("tr", {}, el("td", { colspan: 5, text: err.message })));
  }
}

async function processAction(name, verb) {
  const dialog = $("#process-confirm");
  const effect = { start: "supervisord starts it", stop: "supervisord stops it; it stays stopped until started",
    restart: "supervisord stops it and starts it again" }[verb];
  $("#process-confirm-text").textContent = `${verb[0].toUpperCase() + verb.slice(1)} ${name}: ${effect}.`;
  dialog.returnValue = "";
  dialog.showModal();
  const ok = await new Promise((resolve) => dialog.addEventListener("close",
    () => resolve(dialog.returnValue === "ok"), { once: true }));
  if (!ok) { say("Nothing done."); return; }
  try {
    say(`${verb} ${name}: waiting for supervisord…`);
    const { data } = await call("POST", `${API}/processes/${encodeURIComponent(name)}/${verb}`);
    say(`${verb} ${data.name}: now ${data.state}.`);
    state.tags.delete(API + "/processes");
    await showProcesses();
  } catch (err) { if (err.message !== "401") say(err.message, true); }
}

async function showAudit() {
  const { changed, data } = await call("GET", API + "/audit?limit=100");
  if (!changed && $("#audit-table tbody").childElementCount) return;
  const body = $("#audit-table tbody");
  body.replaceChildren();
  for (const a of data.items) {
    const why = a.details && a.details.reason ? ` (why: ${a.details.reason})` : "";
    body.append(el("tr", {}, el("td", { text: when(a.at) }), el("td", { text: a.actor }),
      el("td", { text: a.action + why }), el("td", { text: a.target || "" }), el("td", { text: a.changed })));
  }
}

// --- navigation and refresh -------------------------------------------------------------

async function refreshSchedules() {
  await showSchedules();
  const ledger = $("#ledger");
  if (!ledger.hidden && ledger.dataset.name) await showLedger(ledger.dataset.name, false);
}

// the views of overview.js and views.js are loaded after this file: named when called
const VIEWS = { overview: () => showOverview(), messages: showMessages,
  visits: () => showVisits(), receipts: () => showReceipts(), schedules: refreshSchedules,
  notifications: showNotifications, processes: showProcesses, audit: showAudit };

async function show(hash) {
  const [view, params] = hash.split("?");
  if (view !== state.view) say("");  // a result banner belongs to the view it came from
  if (view === "messages" && params !== undefined) useFilters(new URLSearchParams(params));
  state.view = VIEWS[view] ? view : "overview";
  for (const name of Object.keys(VIEWS)) $("#" + name).hidden = name !== state.view;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === "#" + state.view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  await refresh();
}

// ``#messages?channel=hie&status=failed``: the list filtered so (the overview's links)
function useFilters(params) {
  const form = $("#filters");
  form.reset();
  state.filters = {};
  for (const [k, v] of params) {
    if (form.elements[k] && k !== "search" && k !== "field") form.elements[k].value = v;
    state.filters[k] = v;
  }
  state.cursor = null; state.selected.clear();
}

// who is signed in: the token's name and role, or "local" with no tokens configured
async function showWho() {
  const who = $("#who");
  try {
    const { data } = await call("GET", API + "/me");
    who.textContent = data.tokens ? `signed in as ${data.name} (${data.role})`
      : "no tokens configured: anyone on this machine acts as local (admin)";
  } catch (err) { who.textContent = ""; }
}

async function refresh() {
  if (!token() && !state.open) return;
  try {
    await VIEWS[state.view]();
    if (state.view === "messages" && state.openMessage) await showTimeline(state.openMessage);
    if (state.trouble) say("");
  }
  catch (err) { if (err.message !== "401") say(err.message, true); }
}

async function start() {
  $("#login-form").addEventListener("submit", async () => {
    sessionStorage.setItem("outboxd.token", $("#token").value.trim());
    $("#token").value = "";
    state.tags.clear();
    await showWho();
    await refresh();
  });
  $("#signout").addEventListener("click", () => {
    sessionStorage.removeItem("outboxd.token"); $("#who").textContent = ""; askToken();
  });
  $("#filters").addEventListener("reset", () => { state.filters = {}; });
  $("#filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.filters = readFilters();
    state.cursor = null;
    state.selected.clear();
    await showMessages(true);
  });
  $("#next-page").addEventListener("click", async () => {
    state.cursors.push(state.cursor);
    state.cursor = $("#next-page").dataset.cursor || null;
    await showMessages(true);
  });
  $("#notification-filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.notificationsBefore = null;
    await showNotifications(true);
  });
  $("#notifications-next").addEventListener("click", async () => {
    state.notificationsBefore = $("#notifications-next").dataset.cursor || null;
    await showNotifications(true);
  });
  $("#notifications-first").addEventListener("click", async () => {
    state.notificationsBefore = null;
    await showNotifications(true);
  });
  $("#first-page").addEventListener("click", async () => {
    state.cursor = null; state.cursors = []; await showMessages(true);
  });
  $("#select-all").addEventListener("change", (event) => {
    for (const box of document.querySelectorAll("#message-table tbody input[type=checkbox]")) {
      box.checked = event.target.checked;
      const id = Number(box.dataset.id);
      if (box.checked) state.selected.add(id); else state.selected.delete(id);
    }
  });
  document.addEventListener("change", (event) => {
    const box = event.target.closest("#message-table tbody input[type=checkbox]");
    if (!box) return;
    const id = Number(box.dataset.id);
    if (box.checked) state.selected.add(id); else state.selected.delete(id);
  });
  document.addEventListener("click", async (event) => {
    const link = event.target.closest("a[href^='#messages?']");
    if (link && location.hash === link.getAttribute("href")) await show(location.hash.slice(1));
    const target = event.target.closest("button");
    if (!target) return;
    if (target.dataset.open) await showTimeline(target.dataset.open);
    else if (target.dataset.action) await act(target);
    else if (target.dataset.ledger) await showLedger(target.dataset.ledger);
    else if (target.dataset.run) await runNow(target.dataset.run);
    else if (target.dataset.cancelRun) await cancelRun(target);
    else if (target.dataset.notification) showNotificationText(target.dataset.notification);
    else if (target.dataset.verb) await processAction(target.dataset.process, target.dataset.verb);
  });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  // with no tokens configured (a loopback-only API) the page needs none
  const probe = await fetch(API + "/stats", { headers: token() ? { Authorization: "Bearer " + token() } : {} });
  state.open = probe.ok && !token();
  if (probe.ok) state.zone = (await probe.json()).timezone;
  $("#zone").textContent = state.zone ? `times in ${state.zone}` : "";
  $("#signout").hidden = state.open;  // no tokens configured: nothing to forget
  if (probe.status === 401) askToken(token() ? "That token was refused." : "");
  else await showWho();
  await show(location.hash.slice(1) || "overview");
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);

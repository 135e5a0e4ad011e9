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
  if (body !== undefined) headers["Content-Type"] = "application/json";
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

function when(iso) { return iso ? new Date(iso).toLocaleString() : "-"; }

// --- overview ---------------------------------------------------------------------------

async function showOverview() {
  const path = API + "/stats?minutes=60";
  const { changed, data } = await call("GET", path);
  // a 304 keeps the figures; the oldest pending age goes on from when they were read
  const since = (Date.now() - (state.fetched.get(path) || Date.now())) / 1000;
  const badges = $("#badges");
  badges.replaceChildren();
  for (const c of data.channels) {
    const rate = c.success_rate === null ? "-" : (c.success_rate * 100).toFixed(1) + " %";
    const failed = c.counts.failed || 0;
    badges.append(el("div", { class: "badge", "data-channel": c.channel },
      el("h3", { text: c.channel }),
      el("dl", {},
        el("dt", { text: "pending" }), el("dd", { text: c.counts.pending || 0 }),
        el("dt", { text: "failed" }), el("dd", { class: failed ? "bad" : "", text: failed }),
        el("dt", { text: "oldest pending" }),
        el("dd", { text: age(c.oldest_pending_age_seconds === null ? null : c.oldest_pending_age_seconds + since) }),
        el("dt", { text: "success rate" }), el("dd", { text: rate }))));
  }
  const select = $("#filters select[name=channel]");
  if (select.options.length === 1) {
    for (const c of data.channels) select.append(el("option", { text: c.channel }));
  }
  if (changed || !$("#chart").childElementCount) drawChart(data.per_minute || []);
}

function drawChart(minutes) {
  const box = $("#chart");
  box.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 600 100");
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(1, ...minutes.map((m) => (m.sent || 0) + (m.failed || 0)));
  const width = 600 / Math.max(60, minutes.length);
  minutes.forEach((m, i) => {
    let y = 100;
    for (const kind of ["sent", "failed"]) {
      const h = ((m[kind] || 0) / top) * 95;
      if (!h) continue;
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(i * width));
      rect.setAttribute("width", String(Math.max(1, width - 1)));
      rect.setAttribute("y", String(y - h));
      rect.setAttribute("height", String(h));
      rect.setAttribute("class", kind);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${when(m.minute)}: ${m.sent || 0} sent, ${m.failed || 0} failed`;
      rect.append(title);
      svg.append(rect);
      y -= h;
    }
  });
  box.append(svg);
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

async function showTimeline(id) {
  const { data } = await call("GET", `${API}/messages/${id}`);
  const box = $("#timeline");
  box.hidden = false;
  const events = el("ol", {});
  for (const e of data.events || []) {
    const details = e.details ? JSON.stringify(e.details) : "";
    events.append(el("li", {}, `${when(e.at)} — ${e.from || "new"} → ${e.to} by ${e.actor || "?"} `,
      details ? el("code", { text: details }) : ""));
  }
  const actions = el("ul", {});
  for (const a of data.actions || []) {
    actions.append(el("li", { text: `${when(a.at)} — ${a.actor}: ${a.action} (${a.changed} changed)` }));
  }
  box.replaceChildren(
    el("h3", { tabindex: "-1", text: `Message ${data.id}: ${data.channel} / ${data.key}` }),
    el("p", { text: `${data.kind}, ${data.status}, ${data.attempts} attempt(s)` }),
    el("div", { class: "actions" },
      ...["retry", "cancel", "resend"].map((a) => el("button", { type: "button", "data-action": a,
        "data-scope": "one", "data-id": data.id, text: a[0].toUpperCase() + a.slice(1) }))),
    el("h4", { text: "Timeline" }), events,
    el("h4", { text: "Operator actions" }), actions,
    el("h4", { text: "Payload" }), el("pre", { text: data.payload ?? "(not text)" }));
  $("h3", box).focus();
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
    const left = Object.entries(dry.skipped || {}).map(([k, v]) => `${v} ${k === "sending" ? "being sent" : k}`).join(", ");
    $("#confirm-text").textContent = `${action}: ${dry.matched} message(s) would change` +
      (left ? `; left as they are: ${left}` : "") + ".";
    const dialog = $("#confirm");
    dialog.returnValue = "";
    dialog.showModal();
    $("#confirm-ok").focus();
    const ok = await new Promise((resolve) => dialog.addEventListener("close",
      () => resolve(dialog.returnValue === "ok"), { once: true }));
    if (!ok) { say("Nothing done."); return; }
    const { data } = await call("POST", `${API}/messages/${action}`, selector);
    say(data.operation
      ? `${action}: ${data.matched} message(s), in batches (operation ${data.operation}).`
      : `${action}: ${data.changed.length} message(s) changed.`);
    state.selected.clear();
    await showMessages(true);
    if (button.dataset.scope === "one") await showTimeline(button.dataset.id);
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

async function showLedger(name) {
  const { data } = await call("GET", `${API}/schedules/${encodeURIComponent(name)}/runs?limit=50`);
  const list = el("table", {}, el("thead", {}, el("tr", {},
    ...["run", "fire time", "trigger", "attempt", "status", "error or note"].map((h) => el("th", { scope: "col", text: h })))));
  const body = el("tbody", {});
  for (const r of data.items) {
    body.append(el("tr", {}, el("td", { text: r.id }), el("td", { text: when(r.fire_time) }),
      el("td", { text: r.trigger }), el("td", { text: r.attempt }),
      el("td", { class: statusClass(r.status === "succeeded" ? "sent" : r.status), text: r.status }),
      el("td", { class: "err", text: r.error || r.note || "" })));
  }
  list.append(body);
  const box = $("#ledger");
  box.hidden = false;
  box.replaceChildren(el("h3", { tabindex: "-1", text: `Ledger of ${name}` }), list);
  $("h3", box).focus();
}

async function runNow(name) {
  try {
    const { data } = await call("POST", `${API}/schedules/${encodeURIComponent(name)}/run`);
    say(`Run ${data.run} of ${name} queued; ${data.starts}.`);
  } catch (err) { if (err.message !== "401") say(err.message, true); }
}

async function showProcesses() {
  const body = $("#process-table tbody");
  try {
    const { changed, data } = await call("GET", API + "/processes");
    if (!changed && body.childElementCount) return;
    body.replaceChildren();
    for (const p of data.items) {
      const health = p.health ? (p.health.ready ? "ready" : (p.health.problems || []).join("; ") || "not ready") : "-";
      body.append(el("tr", {}, el("td", { text: p.name }),
        el("td", { class: p.state === "RUNNING" ? "ok" : "bad", text: p.state }),
        el("td", { text: p.description || "" }), el("td", { text: health })));
    }
  } catch (err) {
    if (err.message === "401") return;
    body.replaceChildren(el("tr", {}, el("td", { colspan: 4, text: err.message })));
  }
}

async function showAudit() {
  const { changed, data } = await call("GET", API + "/audit?limit=100");
  if (!changed && $("#audit-table tbody").childElementCount) return;
  const body = $("#audit-table tbody");
  body.replaceChildren();
  for (const a of data.items) {
    body.append(el("tr", {}, el("td", { text: when(a.at) }), el("td", { text: a.actor }),
      el("td", { text: a.action }), el("td", { text: a.target || "" }), el("td", { text: a.changed })));
  }
}

// --- navigation and refresh -------------------------------------------------------------

const VIEWS = { overview: showOverview, messages: showMessages, schedules: showSchedules,
  processes: showProcesses, audit: showAudit };

async function show(view) {
  state.view = VIEWS[view] ? view : "overview";
  for (const name of Object.keys(VIEWS)) $("#" + name).hidden = name !== state.view;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === "#" + state.view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  await refresh();
}

async function refresh() {
  if (!token() && !state.open) return;
  try { await VIEWS[state.view](); if (state.trouble) say(""); }
  catch (err) { if (err.message !== "401") say(err.message, true); }
}

async function start() {
  $("#login-form").addEventListener("submit", async () => {
    sessionStorage.setItem("outboxd.token", $("#token").value.trim());
    $("#token").value = "";
    state.tags.clear();
    await refresh();
  });
  $("#signout").addEventListener("click", () => { sessionStorage.removeItem("outboxd.token"); askToken(); });
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
    const target = event.target.closest("button");
    if (!target) return;
    if (target.dataset.open) await showTimeline(target.dataset.open);
    else if (target.dataset.action) await act(target);
    else if (target.dataset.ledger) await showLedger(target.dataset.ledger);
    else if (target.dataset.run) await runNow(target.dataset.run);
  });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  // with no tokens configured (a loopback-only API) the page needs none
  const probe = await fetch(API + "/stats", { headers: token() ? { Authorization: "Bearer " + token() } : {} });
  state.open = probe.ok && !token();
  if (probe.status === 401) askToken(token() ? "That token was refused." : "");
  await show(location.hash.slice(1) || "overview");
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);

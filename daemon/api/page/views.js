// Visits (a booking code's task progress; the visits that cannot go on, and why) and
// webhook receipts (partners' callbacks as received). Text is set as text.
"use strict";

const viewState = { visitProblem: "", receiptResult: "" };

async function showVisits() {
  const q = viewState.visitProblem ? `?problem=${encodeURIComponent(viewState.visitProblem)}` : "";
  const { changed, data } = await call("GET", `${API}/visits${q}`);
  const body = $("#visit-table tbody");
  if (!changed && body.childElementCount) return;
  body.replaceChildren();
  for (const v of data.items) {
    const why = (v.troubles || []).map((t) => `${t.step === "add" ? "add" : "task " + t.step} ${t.status}: ${t.why}`).join("; ");
    body.append(el("tr", { "data-kodebooking": v.kodebooking },
      el("td", {}, el("button", { type: "button", class: "link", "data-visit": v.kodebooking, text: v.kodebooking })),
      el("td", { text: v.source }), el("td", { text: v.updated_at_text || when(v.updated_at) }),
      el("td", { class: "err", text: why })));
  }
  if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 4, text: "no visit is held, failed or cancelled" })));
}

async function showVisit(kodebooking) {
  const box = $("#visit");
  box.hidden = false;
  let data;
  try { ({ data } = await call("GET", `${API}/visits/${encodeURIComponent(kodebooking)}`)); }
  catch (err) {
    if (err.message === "401") return;
    box.replaceChildren(el("p", { class: "bad", role: "alert", text: err.message }));
    return;
  }
  const parts = [];
  for (const v of data.items) {
    const rows = el("tbody", {});
    const steps = Object.keys(v.task_progress).sort((a, b) => (a === "add" ? -1 : b === "add" ? 1 : Number(a) - Number(b)));
    for (const step of steps) {
      const e = v.task_progress[step];
      const times = [];
      if (e.waktu) times.push("waktu " + when(new Date(e.waktu).toISOString(), false));
      if (e.sent_at) times.push("sent " + when(e.sent_at, false));
      if (e.next_attempt_at) times.push("next attempt " + when(e.next_attempt_at, false));
      rows.append(el("tr", {}, el("td", { text: step === "add" ? "add" : "task " + step }),
        el("td", { class: statusClass(e.status === "held" ? "pending" : e.status), text: e.status || "?" }),
        el("td", { text: times.join(", ") }), el("td", { class: "err", text: e.reason || "" })));
    }
    parts.push(el("h3", { tabindex: "-1", text: `Visit ${v.kodebooking} (${v.source}), updated ${v.updated_at_text || when(v.updated_at)}` }),
      el("table", {}, el("thead", {}, el("tr", {}, ...["step", "status", "times", "why"].map((h) => el("th", { scope: "col", text: h })))), rows));
  }
  box.replaceChildren(...parts);
  $("h3", box)?.focus();
}

async function showReceipts() {
  const q = viewState.receiptResult ? `?result=${encodeURIComponent(viewState.receiptResult)}` : "";
  const { changed, data } = await call("GET", `${API}/receipts${q}`);
  const body = $("#receipt-table tbody");
  if (!changed && body.childElementCount) return;
  body.replaceChildren();
  for (const r of data.items) {
    const message = r.message_id
      ? el("button", { type: "button", class: "link", "data-message": r.message_id, text: `message ${r.message_id}` })
      : el("span", { class: "muted", text: "none: kept for the operator" });
    const bodyCell = el("details", {}, el("summary", { text: `${r.body_size} bytes, webhook-id ${r.webhook_id}` }),
      el("pre", { text: r.body }), el("p", { text: `answered ${r.answer_status}: ${JSON.stringify(r.answer)}` }));
    body.append(el("tr", { "data-receipt": r.id }, el("td", { text: r.received_at_text || when(r.received_at) }),
      el("td", { text: r.webhook }), el("td", { class: r.result === "applied" ? "ok" : (r.result === "unreadable" || r.result === "unknown_message" ? "bad" : ""), text: r.result }),
      el("td", { text: r.partner_status || "-" }), el("td", {}, message), el("td", {}, bodyCell)));
  }
  if (!data.items.length) body.append(el("tr", {}, el("td", { colspan: 6, text: "no receipts" })));
}

document.addEventListener("DOMContentLoaded", () => {
  $("#visit-lookup").addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = event.target.elements.kodebooking.value.trim();
    if (code) await showVisit(code);
  });
  $("#visit-filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    viewState.visitProblem = event.target.elements.problem.value;
    await showVisits();
  });
  $("#receipt-filters").addEventListener("submit", async (event) => {
    event.preventDefault();
    viewState.receiptResult = event.target.elements.result.value;
    await showReceipts();
  });
  document.addEventListener("click", async (event) => {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.dataset.visit) await showVisit(target.dataset.visit);
    else if (target.dataset.message) {
      location.hash = "#messages";
      await showTimeline(target.dataset.message, true);
    }
  });
});

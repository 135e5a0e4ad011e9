// One message: its facts, its timeline in words, the operator actions, and its
// payload and the peer's answer, HL7 one segment a line with each field's position
// on hover and focus (PID-3). Refreshed while open, and after an action on it.
// Everything from the API is set as text: nothing is read as HTML.
"use strict";

function hl7List(segments) {
  const list = el("ol", { class: "hl7" });
  for (const s of segments) {
    const line = el("li", {});
    if (!s.segment) { line.append(s.text); list.append(line); continue; }
    // the segment's fields in order, each its own span titled with its position
    const sep = s.segment === "MSH" ? s.text[3] : "|";
    const values = s.text.split(sep);
    line.append(el("span", { class: "seg", text: values[0] }));
    values.slice(1).forEach((value, i) => {
      line.append(el("span", { class: "sep", text: sep }));
      if (!value) return;
      // MSH: the separator itself is MSH-1, so the text's first field is MSH-2
      const n = s.segment === "MSH" ? i + 2 : i + 1;
      line.append(el("span", { title: `${s.segment}-${n}`, tabindex: "0",
        "aria-label": `${s.segment}-${n}: ${value}`, text: value }));
    });
    list.append(line);
  }
  return list;
}

function textBlock(text, segments) {
  if (segments && segments.length) return hl7List(segments);
  return el("pre", { text: text ?? "(none)" });
}

async function showTimeline(id, force = false) {
  const path = `${API}/messages/${id}`;
  const { changed, data } = await call("GET", path);
  const box = $("#timeline");
  state.openMessage = String(id);
  if (!changed && !force && !box.hidden && box.dataset.id === String(id)) return;
  box.hidden = false;
  box.dataset.id = String(id);
  const events = el("ol", { class: "events" });
  for (const e of data.events || []) {
    events.append(el("li", {}, el("time", { datetime: e.at, text: e.at_text || when(e.at) }),
      e.text || `${e.from || "new"} → ${e.to} by ${e.actor}`));
  }
  const actions = el("ul", {});
  for (const a of data.actions || []) {
    actions.append(el("li", {}, el("time", { datetime: a.at, text: a.at_text || when(a.at) }), " ",
      a.text || `${a.actor}: ${a.action} (${a.changed} changed)`));
  }
  if (!actions.childElementCount) actions.append(el("li", { text: "none" }));
  const next = data.status === "pending" ? `, next attempt ${when(data.next_attempt_at)}` : "";
  const focused = document.activeElement && box.contains(document.activeElement);
  box.replaceChildren(
    el("h3", { tabindex: "-1", text: `Message ${data.id}: ${data.channel} / ${data.key}` }),
    el("p", { text: `${data.kind}, ${data.status}, ${data.attempts} attempt(s); created ${when(data.created_at)}${next}` }),
    el("div", { class: "actions" },
      ...["retry", "cancel", "resend"].map((a) => el("button", { type: "button", "data-action": a,
        "data-scope": "one", "data-id": data.id, text: a[0].toUpperCase() + a.slice(1) }))),
    el("h4", { text: "Timeline" }), events,
    el("h4", { text: "Operator actions" }), actions,
    el("h4", { text: "Payload" }), textBlock(data.payload, data.payload_hl7),
    el("h4", { text: "The peer's answer" }), textBlock(data.response, data.response_hl7));
  if (force || !focused) $("h3", box).focus();
}

// What an action will do, in words, from its dry run: whom it takes, what they
// become, sample ids; for messages picked by id, those it leaves and why.
function dryRunWords(action, scope, selector, dry) {
  const becomes = { retry: "made due now, attempts reset", cancel: "cancelled",
    resend: "sent again (the same payload and key), due now" }[action];
  const filter = selector.filter || {};
  const where = Object.entries(filter).filter(([k]) => k !== "status")
    .map(([k, v]) => `${k} ${v}`).join(", ");
  const who = scope === "one" ? `message ${selector.ids[0]}`
    : scope === "selected" ? `the ${selector.ids.length} selected message(s)`
    : `every ${scope} message${where ? " where " + where : ""}`;
  const verb = action[0].toUpperCase() + action.slice(1);
  if (!dry.matched) return `${verb} ${who}: nothing to do, no message would change.`;
  const shown = (dry.sample || []).slice(0, 10);
  const ids = shown.length ? ` (${dry.matched > shown.length ? "ids such as" : "ids"} ${shown.join(", ")})` : "";
  let text = `${verb} ${who}: ${dry.matched} message(s) will be ${becomes}${ids}.`;
  const skipped = Object.entries(dry.skipped || {});
  const sending = (dry.skipped || {}).sending;
  if (selector.ids) {
    const hint = { retry: { sent: "resend", confirmed: "resend", rejected: "resend" },
      resend: { failed: "retry", cancelled: "retry", pending: "retry" } }[action] || {};
    const left = skipped.map(([k, v]) => `${v} ${k === "sending" ? "being sent" : k}${hint[k] ? ` (use ${hint[k]})` : ""}`);
    if (left.length) text += ` Left as they are: ${left.join(", ")}.`;
  } else if (sending) {
    text += ` ${sending} being sent right now are not touched.`;
  }
  return text;
}

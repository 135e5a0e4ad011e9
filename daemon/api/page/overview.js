// The overview: is anything wrong? Per channel sent, pending, failed (each a link to
// the list so filtered), the oldest pending, the success rate; a chart of the last
// hour with its axes, scale and legend; the breakers not closed; the schedules whose
// last run failed. Text is set as text: nothing from the API is read as HTML.
"use strict";

function countLink(channel, status, n, bad) {
  const href = `#messages?channel=${encodeURIComponent(channel)}&status=${status}`;
  return el("a", { href, class: bad && n ? "bad" : "", "aria-label": `${n} ${status} on ${channel}`,
    text: String(n) });
}

async function showOverview() {
  const path = API + "/stats?minutes=60";
  const { changed, data } = await call("GET", path);
  if (data.timezone) {
    state.zone = data.timezone;
    $("#zone").textContent = `times in ${state.zone}`;
  }
  // a 304 keeps the figures; the oldest pending age goes on from when they were read
  const since = (Date.now() - (state.fetched.get(path) || Date.now())) / 1000;
  const badges = $("#badges");
  badges.replaceChildren();
  const wrong = [];
  for (const c of data.channels) {
    const rate = c.success_rate === null ? "-" : (c.success_rate * 100).toFixed(1) + " %";
    const failed = c.counts.failed || 0;
    const oldest = c.oldest_pending_age_seconds === null ? null : c.oldest_pending_age_seconds + since;
    if (failed) wrong.push(`${c.channel}: ${failed} failed`);
    if (oldest !== null && oldest > 600) wrong.push(`${c.channel}: oldest pending ${age(oldest)}`);
    badges.append(el("div", { class: "badge", "data-channel": c.channel },
      el("h3", { text: c.channel }),
      el("dl", {},
        el("dt", { text: "sent" }), el("dd", {}, countLink(c.channel, "sent", c.counts.sent || 0)),
        el("dt", { text: "pending" }), el("dd", {}, countLink(c.channel, "pending", c.counts.pending || 0)),
        el("dt", { text: "failed" }), el("dd", {}, countLink(c.channel, "failed", failed, true)),
        el("dt", { text: "oldest pending" }),
        el("dd", { text: age(oldest), title: c.oldest_pending_since ? "since " + when(c.oldest_pending_since) : null }),
        el("dt", { text: `success rate (${age(data.window_seconds)})` }), el("dd", { text: rate }))));
  }
  const select = $("#filters select[name=channel]");
  if (select.options.length === 1) {
    for (const c of data.channels) select.append(el("option", { text: c.channel }));
  }
  const breakers = $("#breakers");
  breakers.replaceChildren();
  for (const b of data.breakers || []) {
    wrong.push(`${b.channel}: breaker ${b.state}`);
    breakers.append(el("li", { class: "bad",
      text: `${b.channel}: ${b.state} since ${when(b.since)} (${b.owner})${b.detail ? ": " + b.detail : ""}` }));
  }
  if (!breakers.childElementCount) breakers.append(el("li", { class: "ok", text: "all closed" }));
  await showFailingSchedules(wrong);
  const verdict = $("#verdict");
  verdict.textContent = wrong.length ? "Needs a look: " + wrong.join("; ") + "." : "Nothing wrong: no failed messages, no old backlog, no breaker open, no failed schedule.";
  verdict.className = "verdict " + (wrong.length ? "bad" : "ok");
  if (changed || !$("#chart").childElementCount) drawChart(data.per_minute || []);
}

async function showFailingSchedules(wrong) {
  const list = $("#failing-schedules");
  let items = [];
  try { items = (await call("GET", API + "/schedules")).data.items || []; }
  catch (err) { if (err.message === "401") throw err; }
  list.replaceChildren();
  for (const s of items) {
    const last = s.last_run;
    if (!last || !["failed", "interrupted"].includes(last.status)) continue;
    wrong.push(`schedule ${s.name}: ${last.status}`);
    list.append(el("li", { class: "bad" }, el("a", { href: "#schedules", text: s.name }),
      ` ${last.status} (fire of ${when(last.fire_time)})`));
  }
  if (!list.childElementCount) list.append(el("li", { class: "ok", text: "none" }));
}

// An SVG chart: stacked bars of sent and failed per minute, a y axis with its scale,
// time labels every 15 minutes in the configured zone, and a legend.
function drawChart(minutes) {
  const box = $("#chart");
  box.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const W = 640, H = 200, left = 44, right = 10, top = 24, bottom = 28;
  const plotW = W - left - right, plotH = H - top - bottom;
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "messages sent and failed per minute over the last hour" });
  const most = Math.max(0, ...minutes.map((m) => (m.sent || 0) + (m.failed || 0)));
  const scale = niceTop(most);
  for (const frac of [0, 0.5, 1]) {
    const y = top + plotH - frac * plotH;
    svg.append(node("line", { x1: left, x2: W - right, y1: y, y2: y, class: "axis" }));
    svg.append(node("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, String(Math.round(scale * frac))));
  }
  svg.append(node("text", { x: 4, y: 12 }, "messages / minute"));
  const width = plotW / Math.max(60, minutes.length);
  minutes.forEach((m, i) => {
    let y = top + plotH;
    for (const kind of ["sent", "failed"]) {
      const h = ((m[kind] || 0) / scale) * plotH;
      if (!h) continue;
      const rect = node("rect", { x: left + i * width, width: Math.max(1, width - 1), y: y - h, height: h, class: kind });
      rect.append(node("title", {}, `${when(m.minute)}: ${m.sent || 0} sent, ${m.failed || 0} failed`));
      svg.append(rect);
      y -= h;
    }
    const at = new Date(m.minute);
    if (at.getUTCMinutes() % 15 === 0 || i === minutes.length - 1) {
      svg.append(node("text", { x: left + i * width, y: H - 10, "text-anchor": "middle" }, when(m.minute, false).slice(0, 5)));
    }
  });
  const legend = node("g", { class: "legend" });
  legend.append(node("rect", { x: W - 150, y: 6, width: 10, height: 10, class: "sent" }));
  legend.append(node("text", { x: W - 136, y: 15 }, "sent"));
  legend.append(node("rect", { x: W - 90, y: 6, width: 10, height: 10, class: "failed" }));
  legend.append(node("text", { x: W - 76, y: 15 }, "failed"));
  svg.append(legend);
  if (!most) svg.append(node("text", { x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" }, "nothing sent or failed in the last hour"));
  box.append(svg);
}

function niceTop(n) {
  if (n <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= n) return step * power;
  return 10 * power;
}

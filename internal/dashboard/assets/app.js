// braid dashboard: reads the state document (GET /api/state, or each
// server-sent event of /api/events) and draws it. Every text that came
// from a peer goes in with textContent, never as markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function usd(v) {
    if (!isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "$0";
    if (a >= 1) return "$" + v.toFixed(2);
    if (a >= 0.01) return "$" + v.toFixed(4);
    return "$" + v.toExponential(2);
  }
  function rate(bps) {
    if (!isFinite(bps) || bps <= 0) return "0 bit/s";
    if (bps >= 1e9) return (bps / 1e9).toFixed(2) + " Gbit/s";
    if (bps >= 1e6) return (bps / 1e6).toFixed(1) + " Mbit/s";
    if (bps >= 1e3) return (bps / 1e3).toFixed(0) + " kbit/s";
    return bps.toFixed(0) + " bit/s";
  }
  function pct(v) { return isFinite(v) ? (v * 100).toFixed(2) + "%" : "–"; }
  function msec(v) { return isFinite(v) ? v.toFixed(1) + " ms" : "–"; }
  function dur(s) {
    s = Math.round(s || 0);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + "h" : "") + (h || m ? m + "m" : "") + r + "s";
  }

  // spark draws values as an inline SVG polyline, scaled to their max.
  function spark(values) {
    const svg = document.createElementNS(SVG, "svg");
    const n = Math.max(values.length, 2);
    svg.setAttribute("viewBox", "0 0 " + (n - 1) + " 20");
    svg.setAttribute("preserveAspectRatio", "none");
    let top = 0;
    for (const v of values) if (v > top) top = v;
    if (top <= 0) top = 1;
    const pts = values.map((v, i) => i + "," + (19 - (Math.max(v, 0) / top) * 18).toFixed(2));
    if (pts.length === 1) pts.push("1," + pts[0].split(",")[1]);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    return svg;
  }

  function sparkRow(name, values, now) {
    const row = el("div", "spark");
    row.appendChild(el("span", "name", name));
    row.appendChild(spark(values));
    row.appendChild(el("span", "now", now));
    return row;
  }

  function pathCard(p, plan) {
    const state = p.state === "up" && p.idle ? "idle" : p.state;
    const card = el("div", "path");
    card.dataset.path = p.name;
    card.dataset.state = state;
    const head = el("div", "path-head");
    head.appendChild(el("span", "path-name", p.name));
    const badge = el("span", "badge", state);
    badge.dataset.state = state;
    head.appendChild(badge);
    card.appendChild(head);
    const meta = [p.medium, p.operator, p.conns + " conn", "cost " + usd(p.cost_usd)];
    if (plan) meta.push((plan.shards[p.name] || 0) + "/" + (plan.k + plan.m) + " shards");
    card.appendChild(el("div", "meta", meta.filter(Boolean).join(" · ")));
    const h = p.history || {};
    card.appendChild(sparkRow("RTT", h.rtt_ms || [], msec(p.rtt_ms)));
    card.appendChild(sparkRow("loss", h.loss || [], pct(p.loss)));
    card.appendChild(sparkRow("rate", h.rate_bps || [], rate((p.upload_bps || 0) + (p.download_bps || 0))));
    const strip = el("div", "strip");
    strip.title = "state over the window: green up, grey idle, amber degraded, red down";
    for (const c of (h.states || "")) {
      const s = el("span");
      s.dataset.s = c;
      strip.appendChild(s);
    }
    card.appendChild(strip);
    if (p.why) card.appendChild(el("div", "why", p.why));
    return card;
  }

  function slaText(met) {
    const s = el("span", "sla", met === null || met === undefined ? "no plan" : met ? "SLA met" : "SLA missed");
    if (met !== null && met !== undefined) s.dataset.met = String(met);
    return s;
  }

  function sessionCard(s) {
    const card = el("article", "session");
    card.dataset.session = s.id;
    const head = el("div", "session-head");
    head.appendChild(el("span", "id", s.id));
    const bits = [];
    if (s.tenant) bits.push("tenant " + s.tenant);
    bits.push("tier " + (s.tier || "none"));
    if (s.scheduler) bits.push(s.scheduler);
    bits.push(s.flows + " flow(s)", "up " + dur(s.uptime_s));
    head.appendChild(el("span", "meta", bits.join(" · ")));
    head.appendChild(el("span", "meta", "cost " + usd(s.cost_usd_per_s) + "/s · revenue " + usd(s.revenue_usd_per_s) + "/s"));
    head.appendChild(slaText(s.sla_met));
    card.appendChild(head);
    const paths = el("div", "paths");
    // The default class's plan (the first) says each path's share.
    const plan = (s.plans || []).find((pl) => pl.shards && pl.k + pl.m > 0);
    for (const p of s.paths || []) paths.appendChild(pathCard(p, plan));
    if (!(s.paths || []).length) paths.appendChild(el("p", "note", "no paths"));
    card.appendChild(paths);
    for (const pl of s.plans || []) {
      const box = el("div", "plan");
      box.dataset.class = pl.class;
      const line = el("div");
      line.appendChild(el("strong", null, "plan, class " + pl.class + ": "));
      line.appendChild(document.createTextNode("k=" + pl.k + " m=" + pl.m + ", " + rate(pl.goodput_bps) + ", p99 " + msec(pl.p99_ms) +
        ", " + usd(pl.cost_usd_per_gb) + "/GB, binds " + (pl.binding || "nothing") +
        ", " + (pl.changes || 0) + " change(s), " + (pl.violation_ticks || 0) + " tick(s) off its SLA "));
      line.appendChild(slaText(pl.sla_met));
      box.appendChild(line);
      box.appendChild(el("pre", null, pl.text));
      card.appendChild(box);
    }
    return card;
  }

  function render(doc) {
    $("role").textContent = doc.role + (doc.session_state ? " · session " + doc.session_state : "");
    $("sessions").textContent = doc.sessions_total;
    $("cost").textContent = usd(doc.cost_usd_per_s) + "/s";
    $("revenue").textContent = usd(doc.revenue_usd_per_s) + "/s";
    $("profit").textContent = usd(doc.profit_usd_per_s) + "/s";
    $("updated").textContent = new Date(doc.at).toLocaleTimeString();
    $("window").textContent = dur(doc.window_s) + " at " + doc.step_s + " s";

    const tb = $("tenants").tBodies[0];
    tb.replaceChildren();
    for (const t of doc.tenants || []) {
      const tr = el("tr");
      tr.dataset.tenant = t.name;
      for (const v of [t.name, t.sessions, t.flows, usd(t.cost_usd_per_s), usd(t.revenue_usd_per_s), usd(t.profit_usd_per_s)]) tr.appendChild(el("td", null, v));
      const sla = el("td");
      sla.appendChild(slaText(t.sla_met));
      tr.appendChild(sla);
      tb.appendChild(tr);
    }
    if (!(doc.tenants || []).length) {
      const tr = el("tr");
      const td = el("td", "note", "no sessions");
      td.colSpan = 7;
      tr.appendChild(td);
      tb.appendChild(tr);
    }

    const more = $("more");
    more.hidden = doc.sessions_shown >= doc.sessions_total;
    more.textContent = "showing " + doc.sessions_shown + " of " + doc.sessions_total + " sessions";
    const list = $("sessions-list");
    list.replaceChildren(...(doc.sessions || []).map(sessionCard));
    if (!(doc.sessions || []).length) list.appendChild(el("p", "note", "no sessions"));
    document.body.dataset.updated = String(doc.at);
  }

  function live(yes, text) {
    const c = $("conn");
    c.dataset.live = yes ? "yes" : "no";
    c.textContent = text;
  }

  let pollTimer = null;
  function poll(stepS) {
    if (pollTimer) return;
    const once = () => fetch("api/state", { credentials: "same-origin" })
      .then((r) => { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
      .then((doc) => { show(doc); live(true, "live (polling)"); })
      .catch((e) => live(false, "no answer: " + e.message));
    once();
    pollTimer = setInterval(once, Math.max(1000, (stepS || 2) * 1000));
  }

  // merge appends a tick event's one sample per path to the history the
  // page holds, keeping the window's length.
  function merge(cur, tick) {
    const n = Math.max(1, Math.round(tick.window_s / tick.step_s));
    const cut = (a, b) => a.concat(b).slice(-n);
    tick.times = cut(cur.times || [], tick.times || []);
    const old = new Map((cur.sessions || []).map((s) => [s.id, s]));
    for (const s of tick.sessions || []) {
      const was = old.get(s.id);
      if (!was) continue;
      const paths = new Map((was.paths || []).map((p) => [p.name, p]));
      for (const p of s.paths || []) {
        const q = paths.get(p.name);
        if (!q) continue;
        const h = p.history, g = q.history;
        h.rtt_ms = cut(g.rtt_ms, h.rtt_ms);
        h.loss = cut(g.loss, h.loss);
        h.rate_bps = cut(g.rate_bps, h.rate_bps);
        h.states = (g.states + h.states).slice(-n);
      }
    }
    return tick;
  }

  let cur = null;
  let fetching = false;
  function show(doc) {
    cur = doc;
    render(doc);
  }
  function refetch() {
    if (fetching) return;
    fetching = true;
    fetch("api/state", { credentials: "same-origin" })
      .then((r) => { if (!r.ok) throw new Error(r.status + " " + r.statusText); return r.json(); })
      .then((doc) => { if (!cur || doc.seq >= cur.seq) show(doc); })
      .catch((e) => live(false, "no answer: " + e.message))
      .finally(() => { fetching = false; });
  }

  function start() {
    if (!window.EventSource) { poll(2); return; }
    const es = new EventSource("api/events");
    let step = 2;
    const parse = (ev) => {
      try {
        const doc = JSON.parse(ev.data);
        step = doc.step_s || step;
        live(true, "live");
        return doc;
      } catch (e) {
        live(false, "bad document: " + e.message);
        return null;
      }
    };
    es.addEventListener("state", (ev) => {
      const doc = parse(ev);
      if (doc) show(doc);
    });
    es.addEventListener("tick", (ev) => {
      const doc = parse(ev);
      if (!doc || (cur && doc.seq <= cur.seq)) return;
      if (!cur || doc.seq !== cur.seq + 1) {
        // A sample was missed: the history would not line up.
        refetch();
        return;
      }
      show(merge(cur, doc));
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (too many live pages, or the token): poll instead.
        es.close();
        poll(step);
      } else {
        live(false, "reconnecting…");
      }
    };
  }
  start();
})();

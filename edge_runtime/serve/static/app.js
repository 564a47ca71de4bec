// SelfMIS Edge live view: one EventSource, one card per device, canvas traces. No libraries (a gateway is offline).
"use strict";
const HISTORY_S = 10;
const params = new URLSearchParams(location.search);
const token = params.get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const devices = new Map();  // id -> {el, pts: [[t, y]], beats: [], status}
let model = null;
// what the browser test reads: sample-to-page latencies (s) and counters
window.selfmis = { latencies: [], messages: 0, snapshots: 0 };

function card(id) {
  let d = devices.get(id);
  if (d) return d;
  const el = document.getElementById("device-tpl").content.firstElementChild.cloneNode(true);
  el.dataset.device = id;
  el.querySelector(".id").textContent = id;
  document.getElementById("devices").appendChild(el);
  d = { el, pts: [], beats: [], status: {}, samples: 0, nbeats: 0, nalarms: 0 };
  devices.set(id, d);
  return d;
}

function addTrace(d, segs) {
  const last = d.pts.length ? d.pts[d.pts.length - 1][0] : -Infinity;
  for (const [t0, dt, ys] of segs) {
    for (let i = 0; i < ys.length; i++) {
      const t = t0 + i * dt;
      if (t > last + 1e-6 || t < last - 5) { d.pts.push([t, ys[i]]); d.samples++; }  // t far back: a restart
    }
  }
}

function addBeats(d, beats) {
  const last = d.beats.length ? d.beats[d.beats.length - 1].t : -Infinity;
  for (const b of beats) if (b.t > last + 1e-6 || b.t < last - 5) { d.beats.push(b); d.nbeats++; }
}

// the alarm log: one line per onset / clear (the server sends changes only, never each beat's decision)
function addAlarms(d, alarms) {
  const ol = d.el.querySelector("ol.alarms");
  for (const a of alarms || []) {
    const li = document.createElement("li");
    const parts = [];
    if (a.onset.length) parts.push("on: " + a.onset.join(", "));
    if (a.cleared.length) parts.push("cleared: " + a.cleared.join(", "));
    li.textContent = `t=${a.t.toFixed(1)} s  ${parts.join("; ")}`;
    li.className = a.onset.includes("MI") ? "onset" : (a.cleared.includes("MI") ? "cleared" : "");
    ol.insertBefore(li, ol.firstChild);
    while (ol.children.length > 20) ol.removeChild(ol.lastChild);
    d.nalarms++;
  }
}

function trim(d) {
  const now = d.status.t || (d.pts.length ? d.pts[d.pts.length - 1][0] : 0);
  while (d.pts.length && (d.pts[0][0] < now - HISTORY_S || d.pts[0][0] > now + 1)) d.pts.shift();
  while (d.beats.length && (d.beats[0].t < now - HISTORY_S || d.beats[0].t > now + 1)) d.beats.shift();
}

function badge(el, text, cls) { el.textContent = text; el.className = "badge " + el.classList[1] + " " + cls; }

function draw(d) {
  const c = d.el.querySelector("canvas");
  const w = c.clientWidth || 600, h = c.clientHeight || 160, r = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * r)) { c.width = Math.round(w * r); c.height = Math.round(h * r); }
  const g = c.getContext("2d");
  g.setTransform(r, 0, 0, r, 0, 0);
  g.clearRect(0, 0, w, h);
  if (!d.pts.length) return;
  const tEnd = d.pts[d.pts.length - 1][0], t0 = tEnd - HISTORY_S;
  let lo = Infinity, hi = -Infinity;
  for (const [, y] of d.pts) { if (y < lo) lo = y; if (y > hi) hi = y; }
  if (hi - lo < 0.5) { const m = (hi + lo) / 2; lo = m - 0.25; hi = m + 0.25; }
  const X = t => (t - t0) / HISTORY_S * w, Y = y => h - 6 - (y - lo) / (hi - lo) * (h - 12);
  g.strokeStyle = "#f3d9d9"; g.lineWidth = 1;  // 1 s grid
  for (let s = Math.ceil(t0); s <= tEnd; s++) { g.beginPath(); g.moveTo(X(s), 0); g.lineTo(X(s), h); g.stroke(); }
  g.strokeStyle = getComputedStyle(document.documentElement).getPropertyValue("--trace") || "#0b4f9c";
  g.lineWidth = 1.3; g.beginPath();
  d.pts.forEach(([t, y], i) => (i ? g.lineTo(X(t), Y(y)) : g.moveTo(X(t), Y(y))));
  g.stroke();
  g.fillStyle = "#b00020";  // R peaks: the largest sample within 60 ms of the beat time
  for (const b of d.beats) {
    let best = null;
    for (const p of d.pts) if (Math.abs(p[0] - b.t) < 0.06 && (!best || Math.abs(p[1]) > Math.abs(best[1]))) best = p;
    if (best) { g.beginPath(); g.arc(X(best[0]), Y(best[1]) - 6, 3.5, 0, 7); g.fill(); }
  }
}

function render(d) {
  const st = d.status, el = d.el;
  const link = st.error ? "lost" : (st.lead_off ? "lead-off" : (st.link || "starting"));
  badge(el.querySelector(".link"), link + (st.rate_mismatch ? " · rate mismatch" : ""),
        link === "connected" ? "good" : (link === "ended" ? "" : (link === "reconnecting" || link === "starting" ? "warn" : "bad")));
  const ql = st.quality;
  badge(el.querySelector(".quality"), ql ? (ql.ok ? "signal ok" : "signal: " + ql.reasons.join(", ")) : "signal: …",
        ql ? (ql.ok ? "good" : "bad") : "");
  el.querySelector(".hr-value").textContent = st.hr != null ? Math.round(st.hr) : "--";
  el.dataset.link = link;
  el.dataset.samples = d.samples;
  el.dataset.beats = d.nbeats;
  const dec = st.decision, alarm = st.alarm, v = el.querySelector(".verdict");
  el.dataset.alarms = d.nalarms;
  if (dec) {  // the verdict is the alarm (it changes at an onset or a clear); the table, the rolling values
    const on = alarm ? alarm.labels : [], mi = on.includes("MI");
    v.textContent = (mi ? "MI: " + on.join(", ") : (on.length ? on.join(", ") : "no alarm"))
      + (alarm ? ` since t=${alarm.since.toFixed(1)} s` : "");
    v.className = "verdict " + (mi ? "mi" : "nomi");
    el.dataset.decision = mi ? "MI" : "no-MI";
    el.querySelector(".decision-meta").textContent =
      `rolling median of ${dec.n_beats} beats at t=${dec.t.toFixed(1)} s, ${dec.operating_point || "card"} thresholds`;
  }
  const labels = model ? model.labels : Object.keys((dec && dec.probabilities) || st.beat_p || {});
  const tb = el.querySelector("tbody");
  if (tb.rows.length !== labels.length) {
    tb.innerHTML = "";
    for (const l of labels) { const tr = tb.insertRow(); tr.insertCell().textContent = l; for (let i = 0; i < 3; i++) tr.insertCell(); }
  }
  labels.forEach((l, i) => {
    const row = tb.rows[i], th = model && model.thresholds[l] != null ? model.thresholds[l] : 0.5;
    const pb = st.beat_p ? st.beat_p[l] : null, pr = dec ? dec.probabilities[l] : null;
    row.cells[1].textContent = pb != null ? pb.toFixed(2) : "–";
    row.cells[2].textContent = pr != null ? pr.toFixed(2) : "–";
    row.cells[3].textContent = th.toFixed(2);
    row.className = pr != null && pr >= th ? (l === "NORM" ? "pos-norm" : "pos") : "";  // NORM above threshold is good news
  });
  el.querySelector(".source").textContent = st.fs ? `${st.fs} Hz · t = ${st.t.toFixed(1)} s` : "";
}

function apply(msg) {
  window.selfmis.messages++;
  if (msg.type === "snapshot") {
    window.selfmis.snapshots++;
    if (msg.model) {
      model = msg.model;
      document.getElementById("model").textContent = `model: ${model.name}` + (model.version ? ` (${model.version})` : "");
    }
  }
  const now = Date.now() / 1000;
  for (const [id, m] of Object.entries(msg.devices)) {
    const d = card(id);
    if (msg.type === "snapshot") { d.pts = []; d.beats = []; d.el.querySelector("ol.alarms").innerHTML = ""; d.nalarms = 0; }
    addAlarms(d, msg.type === "snapshot" ? m.alarms : m.new_alarms);
    addTrace(d, m.trace);
    addBeats(d, m.beats);
    d.status = m.status;
    trim(d);
    draw(d);
    render(d);
    if (m.trace.length && m.status.t_arrival) window.selfmis.latencies.push(now - m.status.t_arrival);
  }
  if (window.selfmis.latencies.length > 2000) window.selfmis.latencies.splice(0, 1000);
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("api/events" + q);
  es.onopen = () => { conn.textContent = "live"; conn.className = "badge good"; };
  es.onerror = () => { conn.textContent = "gateway unreachable, retrying"; conn.className = "badge bad"; };
  es.onmessage = ev => apply(JSON.parse(ev.data));
}
connect();

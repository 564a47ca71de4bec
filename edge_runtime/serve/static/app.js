// SelfMIS Edge live view: one EventSource, one card per device, canvas traces. No libraries (a gateway is offline).
// What a card says is kept in three separate states (see serve/state.py): the link (live, or no signal
// for N s), the signal quality (lead-off, noise) and the sample rate (checking, ok, wrong: with the fix).
"use strict";
const HISTORY_S = 10;
const params = new URLSearchParams(location.search);
const token = params.get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const devices = new Map();  // id -> {el, pts: [[t, y]], beats: [], status, at}
let model = null, staleS = 2.0;
// what the browser test reads: sample-to-page latencies (s) and counters
window.selfmis = { latencies: [], messages: 0, snapshots: 0 };

const REASONS = { lead_off: "lead off: check the electrodes", gap: "samples lost", saturation: "amplifier saturated",
                  flat: "flat line", noise: "too noisy" };

// local clock time of a Unix time (24-hour, so it reads the same in every locale's test)
function clock(unix) {
  return new Date(unix * 1000).toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function gloss(label) { return (model && model.glossary && model.glossary.labels[label]) || ""; }
function isMI(label) { return label === "MI" || !!(model && model.glossary && model.glossary.mi_subtypes.includes(label)); }
function isAlarm(label) { return !model || !model.glossary || model.glossary.alarm_labels.includes(label); }

function card(id) {
  let d = devices.get(id);
  if (d) return d;
  const el = document.getElementById("device-tpl").content.firstElementChild.cloneNode(true);
  el.dataset.device = id;
  el.querySelector(".id").textContent = id;
  document.getElementById("devices").appendChild(el);
  d = { el, pts: [], beats: [], status: {}, at: Date.now() / 1000, samples: 0, nbeats: 0, nalarms: 0, labels: null, rows: {}, seen: new Set() };
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

// the alarm log: one line per onset / clear of an alarm label (the server sends changes only, never
// each beat's decision, and never NORM: a normal ECG is not an alarm), at the local clock time
function addAlarms(d, alarms) {
  const ol = d.el.querySelector("ol.alarms");
  for (const a of alarms || []) {
    const key = `${a.t}|${a.wall}`;  // a tick may repeat what the snapshot just carried
    if (d.seen.has(key)) continue;
    d.seen.add(key);
    const onset = a.onset.filter(isAlarm), cleared = a.cleared.filter(isAlarm);
    if (!onset.length && !cleared.length) continue;
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = a.wall ? clock(a.wall) : `t=${a.t.toFixed(1)} s`;
    time.title = `signal time t=${a.t.toFixed(1)} s`;
    const parts = [];
    if (onset.length) parts.push("on: " + onset.join(", "));
    if (cleared.length) parts.push("cleared: " + cleared.join(", "));
    li.append(time, " " + parts.join("; "));
    li.className = onset.some(isMI) ? "onset" : (cleared.length && !onset.length ? "cleared" : "");
    ol.insertBefore(li, ol.firstChild);
    while (ol.children.length > 20) ol.removeChild(ol.lastChild);
    d.nalarms++;
  }
  d.el.querySelector(".alarm-log").hidden = !ol.children.length;
}

function trim(d) {
  const now = d.status.t || (d.pts.length ? d.pts[d.pts.length - 1][0] : 0);
  while (d.pts.length && (d.pts[0][0] < now - HISTORY_S || d.pts[0][0] > now + 1)) d.pts.shift();
  while (d.beats.length && (d.beats[0].t < now - HISTORY_S || d.beats[0].t > now + 1)) d.beats.shift();
}

function badge(el, text, cls) { el.textContent = text; el.className = "badge " + el.classList[1] + " " + cls; }

function draw(d, gone) {
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
  g.strokeStyle = gone ? "#e6e6e6" : "#f3d9d9"; g.lineWidth = 1;  // 1 s grid
  for (let s = Math.ceil(t0); s <= tEnd; s++) { g.beginPath(); g.moveTo(X(s), 0); g.lineTo(X(s), h); g.stroke(); }
  g.strokeStyle = gone ? "#9a9a9a" : (getComputedStyle(document.documentElement).getPropertyValue("--trace") || "#0b4f9c");
  g.lineWidth = 1.3; g.beginPath();
  d.pts.forEach(([t, y], i) => (i ? g.lineTo(X(t), Y(y)) : g.moveTo(X(t), Y(y))));
  g.stroke();
  g.fillStyle = gone ? "#9a9a9a" : "#b00020";  // R peaks: the largest sample within 60 ms of the beat time
  for (const b of d.beats) {
    let best = null;
    for (const p of d.pts) if (Math.abs(p[0] - b.t) < 0.06 && (!best || Math.abs(p[1]) > Math.abs(best[1]))) best = p;
    if (best) { g.beginPath(); g.arc(X(best[0]), Y(best[1]) - 6, 3.5, 0, 7); g.fill(); }
  }
}

// the link: live, or how long the device has been silent (the server's silent_s, aged locally so the
// count goes on even when the gateway itself stops answering)
function linkState(d) {
  const st = d.status, now = Date.now() / 1000;
  const silent = st.silent_s != null ? st.silent_s + Math.max(0, now - d.at) : null;
  if (st.error) return { key: "lost", text: "lost: " + st.error, cls: "bad", gone: true, silent };
  if (st.link === "ended") return { key: "ended", text: "stream ended", cls: "muted", gone: true, silent };
  if (silent != null && silent >= staleS) {
    const extra = st.link === "reconnecting" ? " · reconnecting" : (st.link === "lost" ? " · lost" : "");
    return { key: "stale", text: `no signal for ${Math.floor(silent)} s${extra}`, cls: "muted", gone: true, silent };
  }
  if (st.link === "lost") return { key: "lost", text: "lost", cls: "bad", gone: true, silent };
  if (st.link === "reconnecting") return { key: "reconnecting", text: "reconnecting", cls: "warn", gone: true, silent };
  if (silent == null) return { key: "waiting", text: "waiting for samples", cls: "warn", gone: false, silent };
  return { key: "live", text: "live", cls: "good", gone: false, silent };
}

function buildTable(d, labels) {
  // MI first, its wall-specific subtypes folded under it (a click unfolds them), then the rest (NORM)
  const tb = d.el.querySelector("tbody"), subs = (model && model.glossary) ? model.glossary.mi_subtypes : [];
  tb.innerHTML = "";
  d.rows = {};
  const order = labels.filter(l => !subs.includes(l));
  const at = order.indexOf("MI");
  if (at >= 0 && subs.length) order.splice(at + 1, 0, "(fold)", ...labels.filter(l => subs.includes(l)));
  for (const l of order) {
    const tr = tb.insertRow();
    if (l === "(fold)") {
      tr.className = "fold";
      const c = tr.insertCell(); c.colSpan = 4;
      const b = document.createElement("button"); b.type = "button"; b.className = "fold-toggle";
      b.addEventListener("click", () => { d.el.querySelector("table.probs").classList.toggle("folded"); render(d); });
      c.append(b);
      continue;
    }
    tr.dataset.label = l;
    if (subs.includes(l)) tr.classList.add("sub");
    const c = tr.insertCell();
    const b = document.createElement("b"); b.textContent = l;
    const s = document.createElement("span"); s.className = "gloss"; s.textContent = gloss(l);
    c.append(b, " ", s);
    for (let i = 0; i < 3; i++) tr.insertCell();
    d.rows[l] = tr;
  }
  d.labels = labels.join(",");
}

function renderTable(d, st, dec) {
  const labels = model ? model.labels : Object.keys((dec && dec.probabilities) || st.beat_p || {});
  if (d.labels !== labels.join(",")) buildTable(d, labels);
  const on = st.alarm ? st.alarm.labels : [];
  labels.forEach(l => {
    const row = d.rows[l], th = model && model.thresholds[l] != null ? model.thresholds[l] : 0.5;
    const pb = st.beat_p ? st.beat_p[l] : null, pr = dec ? dec.probabilities[l] : null;
    row.cells[1].textContent = pb != null ? pb.toFixed(2) : "–";
    row.cells[2].textContent = pr != null ? pr.toFixed(2) : "–";
    row.cells[3].textContent = th.toFixed(2);
    row.classList.toggle("pos", on.includes(l));  // an alarm that is on (NORM never is one)
    row.classList.toggle("pos-norm", !isAlarm(l) && pr != null && pr >= th);  // normal ECG: good news
  });
  const subs = (model && model.glossary) ? model.glossary.mi_subtypes : [];
  const subsOn = on.filter(l => subs.includes(l));
  const folded = d.el.querySelector("table.probs").classList.contains("folded"), toggle = d.el.querySelector(".fold-toggle");
  if (toggle) toggle.textContent = (folded ? "▸ show" : "▾ hide") +
    ` the ${subs.length} MI subtypes (which wall of the heart)` + (subsOn.length ? ` · on: ${subsOn.join(", ")}` : "");
}

function render(d) {
  const st = d.status, el = d.el, link = linkState(d);
  el.classList.toggle("stale", link.gone);
  el.dataset.link = st.link || "starting";
  el.dataset.state = link.key;
  badge(el.querySelector(".link"), link.text, link.cls);
  el.querySelector(".srcname").textContent = st.source || "";
  // signal quality: the quality gate's verdict only (never the rate's)
  const ql = st.quality, rate = st.rate, rateHeld = !!rate && rate.state !== "ok";
  let qText = "signal: checking…", qCls = "";
  if (link.gone) { qText = "signal: none"; qCls = "muted"; }
  else if (st.lead_off) { qText = REASONS.lead_off; qCls = "bad"; }
  else if (rateHeld) { qText = "signal: not judged until the rate is right"; qCls = "warn"; }  // never "ok" then
  else if (ql && ql.ok) { qText = "signal ok"; qCls = "good"; }
  else if (ql) { qText = "signal: " + ql.reasons.map(r => REASONS[r] || r).join(", "); qCls = "bad"; }
  badge(el.querySelector(".quality"), qText, qCls);
  // sample rate: amber while held or wrong, with the exact fix
  const rn = el.querySelector(".rate");
  rn.hidden = !rateHeld;
  el.dataset.rate = rate ? rate.state : "";
  if (rateHeld) {
    rn.querySelector(".rate-text").textContent = rate.text;
    rn.querySelector(".rate-fix").textContent = rate.fix ? "Fix: " + rate.fix : "";
  }
  el.querySelector(".hr-value").textContent = st.hr != null && !link.gone ? Math.round(st.hr) : "--";
  el.dataset.samples = d.samples;
  el.dataset.beats = d.nbeats;
  el.dataset.alarms = d.nalarms;
  // the verdict is the alarm (it changes at an onset or a clear); the table, the rolling values
  const dec = st.decision, alarm = st.alarm, v = el.querySelector(".verdict");
  const on = alarm ? alarm.labels.filter(isAlarm) : [], mi = on.some(isMI);
  el.dataset.decision = mi ? "MI" : (dec || alarm ? "no-MI" : "");
  if (dec || alarm) {
    const since = alarm && alarm.since_wall ? ` since ${clock(alarm.since_wall)}` : "";
    let text = on.length ? (mi ? "MI alarm: " : "alarm: ") + on.join(", ") + since
                         : "no alarm" + (alarm && alarm.since_wall ? ` (cleared ${clock(alarm.since_wall)})` : "");
    if (link.gone) text = "last known: " + text;
    v.textContent = text;
    v.title = alarm ? `signal time t=${alarm.since.toFixed(1)} s` : "";
    v.className = "verdict " + (mi ? "mi" : (on.length ? "alarm" : "nomi")) + (link.gone ? " lastknown" : "");
    el.querySelector(".plain").textContent = on.map(l => `${l}: ${gloss(l)}`).join("; ");
  }
  const held = rateHeld ? "decisions held until the sample rate is right"
             : (!link.gone && ql && !ql.ok ? "decisions held while the signal is bad" : "");
  const meta = el.querySelector(".decision-meta");
  meta.textContent = held || (dec ? `rolling median of ${dec.n_beats} beats at t=${dec.t.toFixed(1)} s, ` +
                                    `${dec.operating_point || "card"} thresholds` : "");
  meta.className = "decision-meta" + (held ? " held" : "");
  renderTable(d, st, dec);
  el.querySelector(".source").textContent = st.fs ? `${st.fs} Hz · t = ${st.t.toFixed(1)} s of signal` : "";
  draw(d, link.gone);
}

function apply(msg) {
  window.selfmis.messages++;
  if (msg.type === "snapshot") {
    window.selfmis.snapshots++;
    if (msg.stale_s) staleS = msg.stale_s;
    if (msg.model) {
      model = msg.model;
      document.getElementById("model").textContent = `model: ${model.name}` + (model.version ? ` (${model.version})` : "");
    }
  }
  const now = Date.now() / 1000;
  for (const [id, m] of Object.entries(msg.devices)) {
    const d = card(id);
    if (msg.type === "snapshot") { d.pts = []; d.beats = []; d.el.querySelector("ol.alarms").innerHTML = ""; d.nalarms = 0; d.seen.clear(); }
    addAlarms(d, msg.type === "snapshot" ? m.alarms : m.new_alarms);
    addTrace(d, m.trace);
    addBeats(d, m.beats);
    d.status = m.status;
    d.at = now;
    trim(d);
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
setInterval(() => devices.forEach(render), 500);  // "no signal for N s" counts on without messages
connect();

// ampshare dashboard: plain JS, no build step. Live state arrives as server-sent events
// (/api/v1/live); history, events and edits use the REST API with the same bearer token.
"use strict";

const $ = (sel) => document.querySelector(sel);
const LINES = ["L1", "L2", "L3"];
const state = { token: null, role: "read", frame: null, lastEvents: 0, editing: new Set(), notes: new Map() };

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const fmtA = (x) => (x === null || x === undefined ? "–" : `${x.toFixed(1)} A`);
const fmtKWh = (wh) => (wh === null || wh === undefined ? "–" : `${(wh / 1000).toFixed(1)} kWh`);
function fmtTime(t_s) {
  if (t_s === null || t_s === undefined) return "–";
  const d = new Date(t_s * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
function fmtDay(t_s) {
  const d = new Date(t_s * 1000);
  return d.toLocaleDateString([], { weekday: "short" }) + " " + fmtTime(t_s);
}
function toLocalInput(t_s) {
  if (t_s === null || t_s === undefined) return "";
  const d = new Date(t_s * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(opts.body ? { "Content-Type": "application/json" } : {}) };
  const r = await fetch(path, { ...opts, headers });
  if (r.status === 401) { logout(); throw new Error("token not accepted"); }
  if (!r.ok) {
    let msg = `${r.status}`;
    try {
      const body = await r.json();
      msg = Array.isArray(body.detail) ? body.detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ") : body.detail;
    } catch (_) { /* not JSON: keep the status */ }
    throw new Error(msg);
  }
  return r.status === 204 ? null : r.json();
}

function logout() {
  localStorage.removeItem("ampshare-token");
  $("#main").classList.add("hidden");
  $("#login").classList.remove("hidden");
}

// ---- rendering -------------------------------------------------------------------------
function renderSummary(f) {
  const root = f.site.nodes[0];
  const h = root.headroom;
  const room = h ? Math.min(...h.headroom_a.filter((x) => x !== null)) : null;
  const ev = f.chargers.reduce((s, c) => s + Math.max(0, ...(c.measured_current_a || [0]).map((x) => x || 0)), 0);
  const charging = f.chargers.filter((c) => c.status === "Charging").length;
  const stale = f.meters.filter((m) => m.stale).length;
  const stats = [
    ["Headroom at " + esc(root.name), room === null ? "–" : `${room.toFixed(1)} A`, room !== null && room < 2, "headroom"],
    ["Cars charging", `${charging} / ${f.chargers.length}`, false, "charging"],
    ["EV current (sum of max line)", `${ev.toFixed(1)} A`, false, "ev"],
    ["Meters stale", `${stale}`, stale > 0, "stale"],
  ];
  $("#summary").innerHTML = stats.map(([k, v, bad, id]) =>
    `<div class="stat${bad ? " bad" : ""}" data-testid="stat-${id}"><div class="v">${v}</div><div class="k">${k}</div></div>`).join("");
}

function lineRow(node, i) {
  const h = node.headroom;
  const full = node.line_limit_a[i];
  if (!h || full === null) return "";
  const lim = h.limit_a[i], bld = h.other_load_a[i] ?? 0, ev = h.ev_load_a[i] ?? 0, room = h.headroom_a[i];
  const scale = Math.max(full, bld + ev, 1);
  const pct = (x) => `${Math.max(0, Math.min(100, (100 * x) / scale)).toFixed(2)}%`;
  const over = room !== null && room < 0;
  return `<div class="line-row" data-testid="line-${esc(node.id)}-${LINES[i]}">
    <span>${LINES[i]}</span>
    <div class="bar${over ? " over" : ""}" title="limit ${fmtA(lim)} of ${fmtA(full)}; building ${fmtA(bld)}; EVs ${fmtA(ev)}">
      <div class="seg bld" style="left:0;width:${pct(bld)}"></div>
      <div class="seg ev" style="left:${pct(bld)};width:${pct(ev)}"></div>
      <div class="limit" style="left:calc(${pct(lim)} - 1px)"></div>
    </div>
    <span class="num">${room === null ? "–" : room.toFixed(1)} A free</span></div>`;
}

function renderTree(f) {
  const depth = {};
  for (const n of f.site.nodes) depth[n.id] = n.parent_id ? depth[n.parent_id] + 1 : 0;
  $("#tree").innerHTML = f.site.nodes.map((n) => {
    const h = n.headroom;
    const meta = !h ? "no data yet" : h.stale ? "meter stale: worst case assumed" : h.measured ? "metered" : "computed";
    const rows = [0, 1, 2].map((i) => lineRow(n, i)).join("");
    return `<div class="node" style="margin-left:${depth[n.id] * 14}px" data-testid="node-${esc(n.id)}">
      <div class="node-head"><span>${esc(n.name)} <span class="meta">${esc(n.kind)}</span></span><span class="meta">${meta}</span></div>${rows}</div>`;
  }).join("");
  $("#policy").textContent = `policy: ${f.site.policy}`;
  const err = $("#alloc-error");
  err.classList.toggle("hidden", !f.site.allocator_error);
  err.textContent = f.site.allocator_error ? `Allocator unavailable: ${f.site.allocator_error}` : "";
}

function chargerCard(c) {
  const cur = c.measured_current_a ? Math.max(...c.measured_current_a.map((x) => x || 0)) : null;
  const lim = c.limit_a;
  const pct = lim ? Math.min(100, (100 * (cur || 0)) / Math.max(lim, 0.1)) : 0;
  const s = c.session;
  const goal = s && s.energy_wanted_wh ? Math.min(100, (100 * s.energy_delivered_wh) / s.energy_wanted_wh) : 0;
  const sess = s ? `<div class="sub"><span>${fmtKWh(s.energy_delivered_wh)} of ${s.energy_wanted_wh ? fmtKWh(s.energy_wanted_wh) : "no goal"}</span>
      <span>leaves ${s.departure_s ? fmtTime(s.departure_s) : "–"}</span></div>
      <div class="mini energy"><div style="width:${goal.toFixed(1)}%"></div></div>` : `<div class="sub"><span>no car</span></div>`;
  return `<div class="card" data-testid="charger-${esc(c.id)}">
    <div class="card-head"><b>${esc(c.name)}</b><span class="pill ${esc(c.status)}">${esc(c.status)}</span></div>
    <div class="big"><span data-testid="current-${esc(c.id)}">${cur === null ? "–" : cur.toFixed(1)}</span>
      <small>A of limit</small> <span data-testid="limit-${esc(c.id)}">${lim === null ? "–" : lim.toFixed(1)}</span><small> A × ${c.phases ?? "–"}</small></div>
    <div class="mini"><div style="width:${pct.toFixed(1)}%"></div></div>
    <div class="reason" data-testid="reason-${esc(c.id)}">why: <b>${esc(c.reason ?? "not allocated yet")}</b></div>
    ${sess}
    <div class="sub"><span>${esc(c.protocol)} · ${esc(c.connection)}</span><span>lease ${c.lease_until_s ? "to " + fmtTime(c.lease_until_s) : "–"}</span></div>
  </div>`;
}

function renderChargers(f) {
  $("#chargers").innerHTML = f.chargers.map(chargerCard).join("");
}

function renderSessions(f) {
  const tbody = $("#sessions tbody");
  const sessions = f.chargers.filter((c) => c.session).map((c) => ({ ...c.session, charger: c }));
  const admin = state.role === "admin";
  const keep = new Map([...tbody.querySelectorAll("tr[data-session]")].map((tr) => [tr.dataset.session, tr]));
  const rows = sessions.map((s) => {
    if (state.editing.has(s.session_id) && keep.has(s.session_id)) return keep.get(s.session_id);
    const tr = document.createElement("tr");
    tr.dataset.session = s.session_id;
    tr.dataset.testid = `session-${s.session_id}`;
    tr.innerHTML = `<td>${esc(s.charger.name)}</td><td class="hide-narrow">${fmtTime(s.arrival_s)}</td>
      <td>${fmtKWh(s.energy_delivered_wh)} / <input type="number" min="0" step="1" name="energy" value="${s.energy_wanted_wh === null ? "" : (s.energy_wanted_wh / 1000).toFixed(0)}" style="width:5em" aria-label="energy wanted kWh"> kWh</td>
      <td><input type="datetime-local" name="departure" value="${toLocalInput(s.departure_s)}" aria-label="departure"></td>
      <td><select name="priority" ${admin ? "" : "disabled"} aria-label="priority">${[0, 1, 2, 3].map((p) => `<option value="${p}" ${p === s.priority ? "selected" : ""}>${p}</option>`).join("")}</select></td>
      <td><button type="button" class="ghost" name="save">Save</button> <span class="msg"></span></td>`;
    // A live refresh rebuilds the row; the outcome of the last save stays visible a while.
    const note = state.notes.get(s.session_id);
    if (note && note.until > Date.now()) {
      const m = tr.querySelector(".msg");
      m.className = note.cls; m.textContent = note.text;
    }
    tr.addEventListener("input", () => state.editing.add(s.session_id));
    tr.querySelector("button[name=save]").addEventListener("click", () => saveSession(tr, s));
    return tr;
  });
  tbody.replaceChildren(...rows);
  if (!rows.length) tbody.innerHTML = `<tr><td colspan="6" class="hint">No car plugged in.</td></tr>`;
}

async function saveSession(tr, s) {
  const msg = tr.querySelector(".msg");
  const dep = tr.querySelector("input[name=departure]").value;
  const kwh = tr.querySelector("input[name=energy]").value;
  const want = {
    departure_s: dep ? new Date(dep).getTime() / 1000 : null,
    energy_wanted_wh: kwh === "" ? null : Number(kwh) * 1000,
  };
  if (state.role === "admin") want.priority = Number(tr.querySelector("select[name=priority]").value);
  // Send only what the user changed, so the log says what was decided and by whom.
  const before = { departure_s: s.departure_s === null ? null : Math.floor(s.departure_s / 60) * 60,
    energy_wanted_wh: s.energy_wanted_wh === null ? null : Math.round(s.energy_wanted_wh / 1000) * 1000, priority: s.priority };
  const body = Object.fromEntries(Object.entries(want).filter(([k, v]) => v !== before[k]));
  if (!Object.keys(body).length) { msg.className = "msg"; msg.textContent = "nothing changed"; state.editing.delete(s.session_id); return; }
  msg.className = "msg"; msg.textContent = "saving…";
  try {
    await api(`/api/v1/sessions/${encodeURIComponent(s.session_id)}`, { method: "PATCH", body: JSON.stringify(body) });
    state.notes.set(s.session_id, { cls: "msg saved", text: "saved", until: Date.now() + 8000 });
    state.editing.delete(s.session_id);
    msg.className = "msg saved"; msg.textContent = "saved";
    loadEvents().catch(() => {});
  } catch (e) {
    msg.className = "msg err"; msg.textContent = e.message;
  }
}

async function loadEvents() {
  state.lastEvents = Date.now();
  const evs = await api("/api/v1/events?limit=40");
  const admin = state.role === "admin";
  $("#events").innerHTML = evs.map((e) => {
    const cls = e.severity === "info" ? "" : e.severity === "critical" ? "alert" : "warning";
    const open = e.severity !== "info" && e.resolved_s === null;
    const btn = open && admin ? ` <button class="ghost" data-resolve="${e.event_id}">resolve</button>` : "";
    return `<li><time>${fmtTime(e.t_s)}</time><span><span class="${cls}">${esc(e.message)}</span>${e.reason ? ` <span class="why">— ${esc(e.reason)}</span>` : ""}${open ? " <b class='warning'>open</b>" : ""}${btn}</span></li>`;
  }).join("") || `<li class="hint">Nothing happened yet.</li>`;
  for (const b of document.querySelectorAll("[data-resolve]")) {
    b.addEventListener("click", async () => { await api(`/api/v1/alerts/${b.dataset.resolve}/resolve`, { method: "POST" }); loadEvents(); });
  }
}

// ---- 24 h chart (SVG) ----------------------------------------------------------------------
async function loadChart() {
  const f = state.frame;
  if (!f) return;
  const root = f.site.nodes[0].id, line = $("#chart-line").value;
  const end = f.site.now_s, start = end - 86400, res = 300;
  const get = (q) => api(`/api/v1/history?series=${encodeURIComponent(`node:${root}:${line}:${q}`)}&start_s=${start}&end_s=${end}&resolution_s=${res}`)
    .then((h) => h.points).catch(() => []);
  const [bld, ev, lim] = await Promise.all([get("other_a"), get("ev_a"), get("limit_a")]);
  drawChart({ bld, ev, lim, start, end, line, name: f.site.nodes[0].name });
}

function drawChart({ bld, ev, lim, start, end, line, name }) {
  // Drawn at the panel's real pixel width so that labels keep their size on a phone.
  const W = Math.max(300, Math.round($("#chart").clientWidth || 1000));
  const H = W < 600 ? 200 : 240, L = 34, R = 8, T = 10, B = 24;
  const hourStep = W < 600 ? 21600 : 10800;
  if (!bld.length && !lim.length) { $("#chart").innerHTML = `<p class="hint">No history yet — it fills in as the site runs.</p>`; return; }
  const evAt = new Map(ev.map((p) => [p.t_s, p.value]));
  const ymax = Math.max(10, ...lim.map((p) => p.value), ...bld.map((p) => p.value + (evAt.get(p.t_s) || 0))) * 1.1;
  const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);
  const area = (pts, lo, hi) => pts.length ? `M${pts.map((p) => `${x(p.t_s).toFixed(1)},${y(hi(p)).toFixed(1)}`).join("L")}` +
    `L${[...pts].reverse().map((p) => `${x(p.t_s).toFixed(1)},${y(lo(p)).toFixed(1)}`).join("L")}Z` : "";
  const bldPath = area(bld, () => 0, (p) => p.value);
  const evPts = bld.filter((p) => evAt.has(p.t_s));
  const evPath = area(evPts, (p) => p.value, (p) => p.value + evAt.get(p.t_s));
  const limPath = lim.length ? "M" + lim.map((p) => `${x(p.t_s).toFixed(1)},${y(p.value).toFixed(1)}`).join("L") : "";
  const ticks = [];
  for (let v = 0; v <= ymax; v += ymax > 100 ? 50 : ymax > 40 ? 20 : 10) ticks.push(`<line class="axis" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke-dasharray="2 4"/><text x="${L - 4}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
  const hours = [];
  for (let t = Math.ceil(start / hourStep) * hourStep; t <= end; t += hourStep) hours.push(`<text x="${x(t)}" y="${H - 6}" text-anchor="middle">${fmtTime(t)}</text>`);
  $("#chart").innerHTML = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(name)} ${line} last 24 hours">
    ${ticks.join("")}${hours.join("")}
    <path d="${bldPath}" fill="var(--bld)" opacity=".85"/><path d="${evPath}" fill="var(--ev)" opacity=".85"/>
    <path d="${limPath}" fill="none" stroke="var(--lim)" stroke-width="2"/>
    <text x="${L + 4}" y="${T + 12}">A on ${line} at ${esc(name)}</text></svg>`;
}

// ---- live stream ---------------------------------------------------------------------------
function render(f) {
  state.frame = f;
  $("#site-name").textContent = f.site.name;
  renderSummary(f); renderTree(f); renderChargers(f); renderSessions(f);
  document.body.dataset.seq = String(f.seq);
  if (Date.now() - state.lastEvents > 2000) loadEvents().catch(() => {});
}

function connect() {
  const es = new EventSource(`/api/v1/live?token=${encodeURIComponent(state.token)}`);
  const live = $("#live");
  es.onopen = () => { live.className = "live on"; $("#live-text").textContent = "live"; };
  es.onerror = () => { live.className = "live off"; $("#live-text").textContent = "reconnecting"; };
  let first = true;
  es.addEventListener("state", (e) => {
    render(JSON.parse(e.data));
    if (first) { first = false; loadChart(); }
  });
}

async function start() {
  try {
    state.role = (await api("/api/v1/whoami")).role;
  } catch (e) { return; }
  $("#login").classList.add("hidden");
  $("#main").classList.remove("hidden");
  $("#role-hint").textContent = state.role === "admin" ? "You are the site manager: you can change priorities." :
    state.role === "driver" ? "You can set departure and energy; priority is the site manager's." : "Read-only access.";
  connect();
  setInterval(() => loadEvents().catch(() => {}), 10000);
  setInterval(loadChart, 60000);
  $("#chart-line").addEventListener("change", loadChart);
}

function init() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { localStorage.setItem("ampshare-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  state.token = localStorage.getItem("ampshare-token");
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("#token-input").value.trim();
    localStorage.setItem("ampshare-token", state.token);
    start();
  });
  if (state.token) start(); else logout();
}

init();

// ampshare dashboard: plain JS, no build step. Live state arrives as server-sent events
// (/api/v1/live); history, events and edits use the REST API with the same bearer token.
"use strict";

const $ = (sel) => document.querySelector(sel);
const LINES = ["L1", "L2", "L3"];
const state = {
  token: null, role: "read", frame: null, lastEvents: 0, editing: new Set(), notes: new Map(),
  view: null, filter: "all", query: "", detail: null, applyMs: [], policyDirty: false,
};
// What is on screen, by key, with the HTML it was built from: a live update touches only what changed.
const shown = { cards: new Map(), rows: new Map(), tiles: new Map(), groups: new Map(), html: new Map() };

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const fmtA = (x) => (x === null || x === undefined ? "–" : `${x.toFixed(1)} A`);
const fmtKWh = (wh) => (wh === null || wh === undefined ? "–" : `${(wh / 1000).toFixed(1)} kWh`);
// One formatter for all: toLocaleTimeString builds a new one per call (slow for 300 tiles).
const TIME_FMT = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
function fmtTime(t_s) {
  if (t_s === null || t_s === undefined) return "–";
  return TIME_FMT.format(new Date(t_s * 1000));
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
const ACTIVITY = {
  charging: ["Charging", "on"], paused: ["Paused", "wait"], car_not_drawing: ["Car not taking power", "idle"],
  starting: ["Waiting to start", "idle"], no_car: ["Free", "idle"], faulted: ["Faulted", "bad"],
  offline: ["Offline", "bad"], unknown: ["No data yet", "idle"],
};

const POLICY = {
  equal: "equal shares", fcfs: "first come, first served", priority: "higher priority first, equal within a tier",
  deadline: "the most urgent car first (energy still needed for the time left)", planned: "following the charging plan",
  static: "fixed shares", uncontrolled: "no control",
};

// What a site manager may choose in the dashboard, in words (static and uncontrolled are for
// comparisons and stay API-only).
const CHOICES = [
  ["equal", "equal shares", "Every car gets the same share; cars take turns when not everyone fits its minimum."],
  ["fcfs", "first come, first served", "Cars that plugged in first charge first; the rest wait for room."],
  ["priority", "by priority", "Cars with a higher priority (set per session below) first, equal shares within a priority."],
  ["deadline", "most urgent first", "The car that needs the most per hour before its departure first (drivers' departure and energy)."],
  ["planned", "follow the plan", "Follow the site's charging plan: every car's energy by its departure, at the lowest peak and price."],
];

function renderPolicyForm(f) {
  const form = $("#policy-form");
  if (state.role !== "admin") return;
  form.classList.remove("hidden");
  const sel = form.elements.policy;
  if (!sel.options.length) {
    sel.innerHTML = CHOICES.map(([k, words]) => `<option value="${k}">${k}: ${words}</option>`).join("");
    sel.addEventListener("change", () => { state.policyDirty = true; explainPolicy(); });
    form.addEventListener("submit", (e) => { e.preventDefault(); applyPolicy(); });
  }
  const planned = sel.querySelector('option[value="planned"]');
  planned.disabled = !f.site.planner_on;
  planned.textContent = f.site.planner_on ? "planned: follow the plan" : "planned: no planner runs here";
  // The live policy, unless the manager is choosing another one right now.
  if (!state.policyDirty && document.activeElement !== sel) {
    if (!CHOICES.some(([k]) => k === f.site.policy)) {
      if (!sel.querySelector(`option[value="${f.site.policy}"]`)) sel.insertAdjacentHTML("beforeend", `<option value="${esc(f.site.policy)}" disabled>${esc(f.site.policy)} (set through the API)</option>`);
    }
    sel.value = f.site.policy;
  }
  explainPolicy();
}

function explainPolicy() {
  const sel = $("#policy-form").elements.policy;
  const c = CHOICES.find(([k]) => k === sel.value);
  $("#policy-explain").textContent = c ? c[2] : "";
}

async function applyPolicy() {
  const form = $("#policy-form"), msg = form.querySelector(".msg");
  const name = form.elements.policy.value;
  msg.className = "msg"; msg.textContent = "applying…";
  try {
    const now = await api("/api/v1/policy");  // keep its rotation interval and deadline mode
    await api("/api/v1/policy", { method: "PUT", body: JSON.stringify({ ...now, name }) });
    state.policyDirty = false;
    msg.className = "msg saved"; msg.textContent = `applied: ${name}`;
    loadEvents().catch(() => {});
  } catch (e) {
    msg.className = "msg err"; msg.textContent = e.message;
  }
}

// Temporary limits on circuits (admin): PUT/DELETE /api/v1/caps; listed from GET /api/v1/caps.
function renderCapForm(f) {
  const form = $("#cap-form");
  if (state.role !== "admin") return;
  form.classList.remove("hidden");
  const sel = form.elements.node;
  if (!sel.options.length) {
    sel.innerHTML = f.site.nodes.map((n) => `<option value="${esc(n.id)}">${esc(n.name)}</option>`).join("");
    form.addEventListener("submit", (e) => { e.preventDefault(); setCap(); });
    loadCaps().catch(() => {});
  }
}

async function loadCaps() {
  if (state.role !== "admin" || !state.frame) return;
  const caps = await api("/api/v1/caps");
  const f = state.frame;
  $("#cap-form .caps").innerHTML = caps.map((c) => {
    const amps = c.line_limit_a ? `${Math.min(...c.line_limit_a.filter((a) => a !== null))} A per line` : "";
    const kw = c.max_power_w != null ? `${(c.max_power_w / 1000).toFixed(1)} kW` : "";
    const until = c.until_s == null ? "until removed" : `until ${fmtDay(c.until_s)}`;
    return `<li data-testid="cap-${esc(c.source)}-${esc(c.node_id)}">${esc(nodeName(f, c.node_id))}: ${[amps, kw].filter(Boolean).join(", ")} · ${until} <span class="meta">(${esc(c.source)})</span>
      <button type="button" class="ghost" data-source="${esc(c.source)}" data-node="${esc(c.node_id)}">remove</button></li>`;
  }).join("");
  for (const b of $("#cap-form .caps").querySelectorAll("button")) {
    b.addEventListener("click", () => removeCap(b.dataset.source, b.dataset.node));
  }
}

async function setCap() {
  const form = $("#cap-form"), msg = form.querySelector(".msg");
  const amps = Number(form.elements.amps.value), hours = Number(form.elements.hours.value);
  const body = { node_id: form.elements.node.value, source: "dashboard", line_limit_a: [amps, amps, amps] };
  if (hours > 0) body.until_s = state.frame.site.now_s + hours * 3600;
  msg.className = "msg"; msg.textContent = "setting…";
  try {
    await api("/api/v1/caps", { method: "PUT", body: JSON.stringify(body) });
    msg.className = "msg saved"; msg.textContent = "limit set";
    await loadCaps();
  } catch (e) {
    msg.className = "msg err"; msg.textContent = e.message;
  }
}

async function removeCap(source, node) {
  const msg = $("#cap-form .msg");
  try {
    await api(`/api/v1/caps/${encodeURIComponent(source)}/${encodeURIComponent(node)}`, { method: "DELETE" });
    msg.className = "msg saved"; msg.textContent = "limit removed";
    await loadCaps();
  } catch (e) {
    msg.className = "msg err"; msg.textContent = e.message;
  }
}

// A month of sessions as CSV, for billing tenants by the kWh their car took (admins only:
// it names the drivers' tags). Fetched with the token, saved as a file.
function wireExport() {
  const form = $("#export-form");
  if (state.role !== "admin") return;
  form.classList.remove("hidden");
  const now = new Date();
  form.elements.month.value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const msg = form.querySelector(".msg");
    const [y, m] = form.elements.month.value.split("-").map(Number);
    const since = new Date(y, m - 1, 1).getTime() / 1000, until = new Date(y, m, 1).getTime() / 1000;
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    msg.className = "msg"; msg.textContent = "preparing…";
    try {
      const r = await fetch(`/api/v1/sessions.csv?since_s=${since}&until_s=${until}&tz=${encodeURIComponent(tz)}`,
        { headers: { Authorization: `Bearer ${state.token}` } });
      if (!r.ok) throw new Error(`${r.status}`);
      const text = await r.text();
      const rows = Math.max(0, text.trim().split("\n").length - 1);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      a.download = `ampshare-sessions-${form.elements.month.value}.csv`;
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      msg.className = "msg saved"; msg.textContent = `${rows} session${rows === 1 ? "" : "s"} downloaded`;
    } catch (err) {
      msg.className = "msg err"; msg.textContent = `download failed: ${err.message}`;
    }
  });
}

function chargerPowerW(c) {
  if (c.power_w !== null && c.power_w !== undefined) return c.power_w;
  // Without a power report: per-line current at the site's line-to-neutral voltage.
  return (c.measured_current_a || []).reduce((s, a) => s + (a || 0), 0) * 230;
}

function renderSummary(f) {
  const root = f.site.nodes[0];
  const h = root.headroom;
  const room = h ? Math.min(...h.headroom_a.filter((x) => x !== null)) : null;
  const kw = f.chargers.reduce((s, c) => s + chargerPowerW(c), 0) / 1000;
  const count = (a) => f.chargers.filter((c) => c.activity === a).length;
  const plugged = f.chargers.filter((c) => c.session).length;
  const stale = f.meters.filter((m) => m.stale).length;
  const stats = [
    ["Spare at " + esc(root.name) + " (fullest line)", room === null ? "–" : `${room.toFixed(1)} A`, room !== null && room < 0, "headroom"],
    [`charging · ${count("paused")} paused · ${plugged} plugged in`, `${count("charging")} cars`, false, "charging"],
    ["EVs drawing now", `${kw.toFixed(1)} kW`, false, "ev"],
    [stale ? "meters stale: worst case assumed" : "meters reporting", stale ? `${stale} stale` : "OK", stale > 0, "stale"],
  ];
  setHtml($("#summary"), stats.map(([k, v, bad, id]) =>
    `<div class="stat${bad ? " bad" : ""}" data-testid="stat-${id}"><div class="v">${v}</div><div class="k">${k}</div></div>`).join(""));
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

// The site's import against the demand peak the plan holds (planned, with a demand charge):
// the line bars show amps under each fuse, this bar the kW the utility bills the peak of.
function importRow(f) {
  const held = f.site.held_peak_kw, now = f.site.import_kw;
  const root = f.site.nodes[0], h = root.headroom;
  if (held == null || !h) return "";
  const vln = parseFloat(f.site.voltage) || 230;
  const kw = (amps) => (amps.reduce((s, a) => s + (a ?? 0), 0) * vln) / 1000;
  const bld = kw(h.other_load_a), ev = kw(h.ev_load_a);
  const rated = kw(root.line_limit_a.map((a) => (a === null ? 0 : a)));
  const scale = Math.max(rated, held, now ?? 0, 1);
  const pct = (x) => `${Math.max(0, Math.min(100, (100 * x) / scale)).toFixed(2)}%`;
  const over = now != null && now > held + 0.05;
  const tip = `site import ${now == null ? "unknown (root not metered)" : now.toFixed(1) + " kW"}: building ${bld.toFixed(1)} kW, EVs ${ev.toFixed(1)} kW; demand peak held at ${held.toFixed(1)} kW (rated ${rated.toFixed(0)} kW)`;
  return `<div class="line-row import-row" data-testid="import-row">
    <span>kW</span>
    <div class="bar${over ? " above" : ""}" title="${esc(tip)}">
      <div class="seg bld" style="left:0;width:${pct(bld)}"></div>
      <div class="seg ev" style="left:${pct(bld)};width:${pct(ev)}"></div>
      <div class="seg heldback" style="left:${pct(Math.max(held, bld + ev))};right:0"></div>
      <div class="limit held" style="left:calc(${pct(held)} - 1px)"></div>
    </div>
    <span class="num">${now == null ? "–" : now.toFixed(1)} of ${held.toFixed(1)} kW</span></div>
  <p class="hint import-hint">Site import against the demand peak the plan holds: beyond what their plans need, cars wait below the dashed mark; the hatched part of the service is left unused to keep the peak${over ? "; above it now because the cars' plans need it (the next plan raises the peak)" : ""}.</p>`;
}

// The battery the plan drives (site file battery:) and the PV meters' output, in a line a
// site manager reads at a glance: how full, what it does and why, what the sun gives.
function assetsRow(f) {
  const b = f.site.battery, pv = f.site.pv_kw;
  if (!b && pv == null) return "";
  const parts = [];
  if (b) {
    const kw = (w) => `${(Math.abs(w) / 1000).toFixed(1)} kW`;
    const doing = b.power_w == null ? "not read" : b.power_w > 50 ? `charging ${kw(b.power_w)}` : b.power_w < -50 ? `discharging ${kw(b.power_w)}` : "idle";
    const soc = b.soc_pct == null ? "–" : `${b.soc_pct.toFixed(0)} %`;
    const fill = b.soc_pct == null ? 0 : Math.max(0, Math.min(100, b.soc_pct));
    parts.push(`<span class="asset" data-testid="battery" title="asked for ${b.command_w >= 0 ? "" : "−"}${kw(b.command_w)}: ${esc(b.reason)}">
      <span class="soc"><span style="width:${fill.toFixed(0)}%"></span></span>
      Battery <b>${soc}</b> · ${doing} <span class="meta">— ${esc(b.reason)}</span></span>`);
  }
  if (pv != null) parts.push(`<span class="asset" data-testid="pv">PV <b>${pv.toFixed(1)} kW</b></span>`);
  return `<div class="assets" data-testid="assets">${parts.join("")}</div>`;
}

function renderTree(f) {
  const depth = {};
  for (const n of f.site.nodes) depth[n.id] = n.parent_id ? depth[n.parent_id] + 1 : 0;
  // In the compact view grouped by circuit, a circuit with chargers shows its bars with them.
  const grouped = state.view === "compact" && $("#by-circuit").checked;
  const withChargers = new Set(grouped ? f.chargers.map((c) => c.node_id) : []);
  const nodes = f.site.nodes.filter((n) => !withChargers.has(n.id));
  const note = withChargers.size ? `<p class="hint" data-testid="tree-note">${withChargers.size === 1 ? "1 circuit with chargers: its bars are with its chargers below." : `${withChargers.size} circuits with chargers: their bars are with their chargers below.`}</p>` : "";
  setHtml($("#tree"), assetsRow(f) + importRow(f) + nodes.map((n) => {
    const h = n.headroom;
    const meta = !h ? "no data yet" : h.stale ? "meter stale: worst case assumed" : h.measured ? "metered" : "computed";
    const rows = [0, 1, 2].map((i) => lineRow(n, i)).join("");
    return `<div class="node" style="margin-left:${depth[n.id] * 14}px" data-testid="node-${esc(n.id)}">
      <div class="node-head"><span>${esc(n.name)} <span class="meta">${esc(n.kind)}</span></span><span class="meta">${meta}</span></div>${rows}</div>`;
  }).join("") + note);
  $("#policy").textContent = `policy: ${f.site.policy}` + (POLICY[f.site.policy] ? ` — ${POLICY[f.site.policy]}` : "") +
    (f.site.held_peak_kw != null ? ` · holding the site at ${f.site.held_peak_kw.toFixed(1)} kW (demand charge)` : "");
  const err = $("#alloc-error");
  err.classList.toggle("hidden", !f.site.allocator_error);
  err.textContent = f.site.allocator_error ? `Allocator unavailable: ${f.site.allocator_error}` : "";
}

function nodeName(f, id) {
  const n = f.site.nodes.find((x) => x.id === id);
  return n ? n.name : id;
}

// Why the limit is what it is, in words; the controller's own text stays in the tooltip.
function why(c, f) {
  const node = c.reason_node_id ? nodeName(f, c.reason_node_id) : "";
  const at = node + (c.reason_line ? ` ${c.reason_line}` : "");
  switch (c.reason_kind) {
    case "node_line": return `${at} is at its limit (shared with the other cars)`;
    case "node_power": return `${node} power limit`;
    case "node_line_sum": return `${node} total current limit`;
    case "transformer_primary": return `transformer ${at} (primary side)`;
    case "external_cap": return `a cap set on ${node}`;
    case "charger_max": return "the charger's maximum";
    case "vehicle_max": return "the car's maximum";
    case "controller_cap": return c.limit_a === 0 && c.reason_detail ? `paused: ${c.reason_detail}`
      : "the car takes less than offered; the rest goes to others";
    case "car_full": return "paused: the car takes no current (full); it is offered some now and then";
    case "policy_share": return `its share under the ${f.site.policy} policy`;
    case "static_share": return "its fixed share";
    case "plan_target": return "its charging plan";
    case "plan_peak": return `holding the site's demand peak on ${node}; its plan gives it the rest later`;
    case "no_session": return "no car plugged in";
    case "paused_rotation": return `paused so that others get their minimum on ${at}; cars take turns`;
    case "paused_plan": return `waiting: its plan gives the room on ${at} to cars leaving sooner; it starts when the plan says`;
    case "paused_no_headroom": return `paused: no room left on ${at}`;
    case "fixed": return "not controlled now (offline or over its limit)";
    default: return c.reason ?? "not allocated yet";
  }
}

function chargerCard(c, f) {
  const cur = c.measured_current_a ? Math.max(...c.measured_current_a.map((x) => x || 0)) : null;
  const lim = c.limit_a;
  const pct = lim ? Math.min(100, (100 * (cur || 0)) / Math.max(lim, 0.1)) : 0;
  const s = c.session;
  const goal = s && s.energy_wanted_wh ? Math.min(100, (100 * s.energy_delivered_wh) / s.energy_wanted_wh) : 0;
  const needs = s && s.energy_wanted_wh !== null ? Math.max(0, s.energy_wanted_wh - s.energy_delivered_wh) : null;
  const plan = s ? (needs === null ? "no goal set" : needs < 50 ? "goal reached" : `needs ${fmtKWh(needs)} more`) +
    (s.departure_s ? ` by ${fmtTime(s.departure_s)}` : "") : "";
  const sess = s ? `<div class="sub"><span>${fmtKWh(s.energy_delivered_wh)} of ${s.energy_wanted_wh ? fmtKWh(s.energy_wanted_wh) : "–"}</span>
      <span data-testid="plan-${esc(c.id)}">${esc(plan)}</span></div>
      <div class="mini energy"><div style="width:${goal.toFixed(1)}%"></div></div>` : "";
  const [label, tone] = ACTIVITY[c.activity] || [c.status, "idle"];
  const kw = chargerPowerW(c) / 1000;
  const phases = c.phases ? (c.phases === 1 ? "1 phase" : `${c.phases} phases`) : "";
  const soc = c.soc_pct !== null && c.soc_pct !== undefined && s ? `battery ${c.soc_pct.toFixed(0)} %` : "";
  const detail = [phases, kw > 0.05 ? `${kw.toFixed(1)} kW` : "", soc].filter(Boolean).join(" · ");
  const seen = c.online ? "" : ` · offline since ${c.last_seen_s ? fmtTime(c.last_seen_s) : "–"}`;
  const whyText = c.session || c.reason_kind === "fixed" ? why(c, f) : "no car plugged in";
  return `<div class="card" data-testid="charger-${esc(c.id)}" data-id="${esc(c.id)}" data-activity="${esc(c.activity)}" tabindex="0" role="button" aria-label="${esc(c.name)}: details">
    <div class="card-head"><b>${esc(c.name)}</b><span class="pill ${tone}" data-testid="activity-${esc(c.id)}" title="charger reports ${esc(c.status)}">${esc(label)}</span></div>
    <div class="big"><span data-testid="current-${esc(c.id)}">${cur === null ? "–" : cur.toFixed(1)}</span><small> A of </small><span data-testid="limit-${esc(c.id)}">${lim === null ? "–" : lim.toFixed(1)}</span><small> A allowed</small>
      <span class="detail">${esc(detail)}</span></div>
    <div class="mini"><div style="width:${pct.toFixed(1)}%"></div></div>
    <div class="reason" data-testid="reason-${esc(c.id)}" title="${esc(c.reason ?? "")}">${lim === null || !s ? "" : `${lim.toFixed(1)} A because: `}<b>${esc(whyText)}</b></div>
    ${sess}
    <div class="sub"><span>${esc(c.protocol)} · ${esc(c.connection)}${seen}</span><span title="if ampshare stops, the charger falls back to its safe default after this">${c.lease_until_s ? "lease until " + fmtTime(c.lease_until_s) : ""}</span></div>
  </div>`;
}

function fromHtml(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}

// Children in this order; nothing is touched when they already are.
function syncChildren(box, els) {
  const kids = box.children;
  if (kids.length === els.length && els.every((el, i) => kids[i] === el)) return;
  box.replaceChildren(...els);
}

// innerHTML only when the text changed (summary, tree, strip: small, but every frame).
function setHtml(el, html) {
  if (shown.html.get(el) === html) return;
  shown.html.set(el, html);
  el.innerHTML = html;
}

function renderChargers(f) {
  const els = f.chargers.map((c) => {
    const html = chargerCard(c, f);
    let t = shown.cards.get(c.id);
    if (!t || t.html !== html) {
      const el = fromHtml(html);
      if (t && t.el.parentNode) t.el.replaceWith(el);
      t = { el, html };
      shown.cards.set(c.id, t);
    }
    return t.el;
  });
  const box = $("#chargers");
  // Hundreds of cards (a large site shown as cards on request): lay out only those in view.
  box.classList.toggle("many", els.length >= COMPACT_FROM);
  syncChildren(box, els);
}

function renderSessions(f) {
  const tbody = $("#sessions tbody");
  const sessions = f.chargers.filter((c) => c.session).map((c) => ({ ...c.session, charger: c }));
  const admin = state.role === "admin";
  const keep = shown.rows;
  shown.rows = new Map();
  const rows = sessions.map((s) => {
    const old = keep.get(s.session_id);
    if (state.editing.has(s.session_id) && old) { shown.rows.set(s.session_id, old); return old.tr; }
    const html = sessionRow(s, admin);
    if (old && old.html === html) { shown.rows.set(s.session_id, old); return old.tr; }
    const tr = document.createElement("tr");
    tr.dataset.session = s.session_id;
    tr.dataset.testid = `session-${s.session_id}`;
    tr.innerHTML = html;
    tr.addEventListener("input", () => state.editing.add(s.session_id));
    tr.querySelector("button[name=save]").addEventListener("click", () => saveSession(tr, s));
    shown.rows.set(s.session_id, { tr, html });
    return tr;
  });
  syncChildren(tbody, rows);
  if (!rows.length) { tbody.innerHTML = `<tr><td colspan="6" class="hint">No car plugged in.</td></tr>`; }
}

function sessionRow(s, admin) {
  const c = s.charger;
  const [label] = ACTIVITY[c.activity] || [c.status];
  const gets = c.limit_a === null ? "–" : c.limit_a < c.min_current_a ? "paused" : `${c.limit_a.toFixed(1)} A`;
  // A live refresh rebuilds the row; the outcome of the last save stays visible a while.
  const note = state.notes.get(s.session_id);
  const msg = note && note.until > Date.now() ? `<span class="${note.cls}">${esc(note.text)}</span>` : `<span class="msg"></span>`;
  return `<td><b>${esc(c.name)}</b><div class="hint">since ${fmtTime(s.arrival_s)}</div></td>
      <td data-label="Gets now" data-testid="gets-${esc(c.id)}" title="${esc(label)}">${gets}</td>
      <td data-label="kWh so far / wanted">${(s.energy_delivered_wh / 1000).toFixed(1)} / <input type="number" min="0" step="1" name="energy" value="${s.energy_wanted_wh === null ? "" : (s.energy_wanted_wh / 1000).toFixed(0)}" aria-label="energy wanted kWh"></td>
      <td data-label="Departure"><input type="datetime-local" name="departure" value="${toLocalInput(s.departure_s)}" aria-label="departure"></td>
      <td data-label="Priority"><select name="priority" ${admin ? "" : "disabled"} aria-label="priority">${[0, 1, 2, 3].map((p) => `<option value="${p}" ${p === s.priority ? "selected" : ""}>${p}</option>`).join("")}</select></td>
      <td class="save"><button type="button" class="ghost" name="save">Save</button> ${msg}</td>`;
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
    // The new limits may have arrived while the row was held for editing: show them now.
    if (state.frame) render(state.frame);
    loadEvents().catch(() => {});
  } catch (e) {
    msg.className = "msg err"; msg.textContent = e.message;
  }
}

function eventItem(e, admin) {
  const cls = e.severity === "info" ? "" : e.severity === "critical" ? "alert" : "warning";
  const open = e.severity !== "info" && e.resolved_s === null;
  const btn = open && admin ? ` <button class="ghost" data-resolve="${e.event_id}">resolve</button>` : "";
  // The message already names the subject; the reason repeats it only when it adds something.
  const why = e.reason && !e.message.includes(e.reason) ? ` <span class="why">— ${esc(e.reason)}</span>` : "";
  return `<li><time title="${esc(new Date(e.t_s * 1000).toLocaleString())}">${fmtTime(e.t_s)}</time><span><span class="${cls}">${esc(e.message)}</span>${why}${open ? " <b class='warning'>open</b>" : ""}${btn}</span></li>`;
}

async function loadEvents() {
  state.lastEvents = Date.now();
  const routine = $("#show-limits").checked ? "" : "&exclude_kind=charger_limit";
  const [alerts, evs] = await Promise.all([
    api("/api/v1/events?alerts_only=true&open_only=true&limit=20"),
    api(`/api/v1/events?limit=40${routine}`),
  ]);
  const admin = state.role === "admin";
  $("#alerts").innerHTML = alerts.map((e) => eventItem(e, admin)).join("");
  $("#alerts").classList.toggle("hidden", !alerts.length);
  $("#alerts-none").classList.toggle("hidden", alerts.length > 0);
  $("#events").innerHTML = evs.map((e) => eventItem(e, admin)).join("") || `<li class="hint">Nothing happened yet.</li>`;
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

// ---- compact view: many chargers, grouped by circuit -------------------------------------
// From this many chargers the compact view is the default; a choice the user made is kept.
const COMPACT_FROM = 25;
const KIND_OF = {
  charging: "charging", paused: "paused", starting: "waiting", car_not_drawing: "full", no_car: "free",
  offline: "offline", faulted: "fault", unknown: "nodata",
};
const KINDS = [["charging", "Charging"], ["paused", "Paused"], ["waiting", "Waiting"], ["full", "Full"],
  ["free", "Free"], ["offline", "Offline"], ["fault", "Fault"], ["nodata", "No data"]];
const PAUSED_WHY = {
  paused_no_headroom: "paused · no room", paused_rotation: "waiting its turn", paused_plan: "waiting · plan",
};
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function maxCurrent(c) {
  return c.measured_current_a ? Math.max(...c.measured_current_a.map((x) => x || 0)) : null;
}

// What needs a person: offline, faulted, over its limit, paused for want of room, late.
function problems(c) {
  const p = [];
  if (c.activity === "offline") p.push("offline");
  if (c.activity === "faulted") p.push("fault");
  if (c.noncompliant) p.push("over limit");
  if (c.activity === "paused" && c.reason_kind === "paused_no_headroom") p.push("no room");
  if (c.will_not_be_ready) p.push("late");
  return p;
}

function stateWord(c) {
  const kind = KIND_OF[c.activity] || "nodata";
  if (kind === "paused") return [kind, PAUSED_WHY[c.reason_kind] || "paused"];
  if (kind === "offline") return [kind, `offline since ${c.last_seen_s ? fmtTime(c.last_seen_s) : "–"}`];
  return [kind, { nodata: "no data", full: "full" }[kind] || kind];
}

function tile(c, f) {
  const [kind, word] = stateWord(c);
  const probs = problems(c);
  const cur = maxCurrent(c), lim = c.limit_a, s = c.session;
  const late = c.will_not_be_ready ? (c.readiness_from === "plan" ? "the plan says" : "estimated") : "";
  const title = [`${c.name}${c.name !== c.id ? ` (${c.id})` : ""} on ${nodeName(f, c.node_id)}`,
    s && s.user_id ? `driver ${s.user_id}` : "", c.session || c.reason_kind === "fixed" ? why(c, f) : "",
    late ? `will not be ready by its departure (${late})` : "", c.noncompliant ? "draws more than its limit" : ""]
    .filter(Boolean).join("\n");
  return {
    cls: `tile k-${kind}${probs.length ? " problem" : ""}`, kind, probs, title,
    name: c.name, word,
    // A free charger drawing nothing has nothing to say in amperes.
    cur: !s && !cur ? "" : cur === null ? "–" : cur.toFixed(1), lim: lim === null || (!s && !cur) ? "" : `/${lim.toFixed(1)} A`,
    kwh: s ? fmtKWh(s.energy_delivered_wh) : "",
    third: s && s.departure_s ? `by ${fmtTime(s.departure_s)}` : s ? "no departure" : "",
    over: c.noncompliant ? "over" : "", late: c.will_not_be_ready ? "late" : "",
    pct: `${(lim ? Math.min(100, (100 * (cur || 0)) / Math.max(lim, 0.1)) : 0).toFixed(0)}%`,
  };
}

// A tile is built once; a live update rewrites only the texts and classes that changed (no
// HTML parsing, no new elements, and its fixed size keeps the layout work inside it).
const TILE_SKELETON = `<div class="t1"><b data-f="name"></b><span class="a"><span data-f="cur"></span><small data-f="lim"></small></span></div>
  <div class="t2"><span class="w" data-f="word"></span><i class="flag" data-f="over" title="draws more than its limit"></i><i class="flag" data-f="late" title="will not be ready by its departure"></i></div>
  <div class="t3"><span data-f="kwh"></span><span data-f="third"></span></div>
  <div class="tbar"><div></div></div>`;
const TILE_TEXTS = ["name", "word", "cur", "lim", "kwh", "third", "over", "late"];

function tileEl(c, f) {
  const t = tile(c, f);
  let e = shown.tiles.get(c.id);
  if (!e) {
    const el = document.createElement("div");
    el.dataset.id = c.id;
    el.dataset.testid = `tile-${c.id}`;
    el.tabIndex = 0;
    el.setAttribute("role", "button");
    el.innerHTML = TILE_SKELETON;
    el.querySelector("[data-f=word]").dataset.testid = `word-${c.id}`;
    el.querySelector(".a").dataset.testid = `amps-${c.id}`;
    const parts = Object.fromEntries([...el.querySelectorAll("[data-f]")].map((x) => [x.dataset.f, x]));
    e = { el, parts, bar: el.querySelector(".tbar > div"), last: {} };
    shown.tiles.set(c.id, e);
  }
  const { el, parts, last } = e;
  if (last.cls !== t.cls) el.className = t.cls;
  if (last.title !== t.title) el.title = t.title;
  if (last.kind !== t.kind) el.dataset.kind = t.kind;
  if (last.pct !== t.pct) e.bar.style.width = t.pct;
  for (const k of TILE_TEXTS) {
    if (last[k] === t[k]) continue;
    parts[k].textContent = t[k];
    if (k === "over" || k === "late") parts[k].hidden = !t[k];
  }
  e.last = t;
  return { el, t };
}

function lineBar(n, i) {
  const h = n.headroom, full = n.line_limit_a[i];
  if (!h || full === null) return "";
  const lim = h.limit_a[i], bld = h.other_load_a[i] ?? 0, ev = h.ev_load_a[i] ?? 0, room = h.headroom_a[i];
  const scale = Math.max(full, bld + ev, 1);
  const pct = (x) => `${Math.max(0, Math.min(100, (100 * x) / scale)).toFixed(1)}%`;
  const over = room !== null && room < 0;
  return `<div class="gline" data-testid="gbar-${esc(n.id)}-${LINES[i]}" title="${LINES[i]}: building ${fmtA(bld)}, EVs ${fmtA(ev)}, limit ${fmtA(lim)} of ${fmtA(full)}">
    <span>${LINES[i]}</span><div class="bar thin${over ? " over" : ""}"><div class="seg bld" style="left:0;width:${pct(bld)}"></div>
    <div class="seg ev" style="left:${pct(bld)};width:${pct(ev)}"></div><div class="limit" style="left:calc(${pct(lim)} - 1px)"></div></div>
    <span class="num">${(bld + ev).toFixed(0)} / ${lim === null ? "–" : lim.toFixed(0)} A</span></div>`;
}

function groupHead(n, members, visible) {
  const charging = members.filter((m) => m.t.kind === "charging").length;
  const probs = members.filter((m) => m.t.probs.length).length;
  const h = n && n.headroom;
  const free = h ? h.headroom_a.filter((x) => x !== null) : [];
  const room = free.length ? Math.min(...free) : null;
  const shownTxt = visible < members.length ? ` · showing ${visible}` : "";
  const bars = n ? [0, 1, 2].map((i) => lineBar(n, i)).join("") : "";
  return `<div class="gname"><b>${esc(n ? n.name : "All chargers")}</b>
      <span class="meta">${members.length} chargers · ${charging} charging${probs ? ` · <span class="bad">${probs} need attention</span>` : ""}${shownTxt}</span>
      ${room === null ? "" : `<span class="meta${room < 0 ? " bad" : ""}">${room.toFixed(1)} A free on the fullest line</span>`}</div>
    <div class="glines">${bars}</div>`;
}

function groupEl(key) {
  let g = shown.groups.get(key);
  if (!g) {
    const el = document.createElement("div");
    el.className = "group";
    el.dataset.testid = `group-${key}`;
    el.innerHTML = `<div class="ghead"></div><div class="tiles"></div>`;
    g = { el, head: el.firstElementChild, grid: el.lastElementChild };
    shown.groups.set(key, g);
  }
  return g;
}

const SORTS = {
  id: (a, b) => collator.compare(a.c.name, b.c.name),
  problems: (a, b) => b.t.probs.length - a.t.probs.length || SORTS.id(a, b),
  current: (a, b) => (maxCurrent(b.c) || 0) - (maxCurrent(a.c) || 0) || SORTS.id(a, b),
  departure: (a, b) => (a.c.session?.departure_s ?? Infinity) - (b.c.session?.departure_s ?? Infinity) || SORTS.id(a, b),
};

function matches(m, f) {
  if (state.filter === "problems" ? !m.t.probs.length : state.filter !== "all" && m.t.kind !== state.filter) return false;
  if (!state.query) return true;
  const c = m.c;
  return `${c.id} ${c.name} ${c.session?.user_id ?? ""} ${nodeName(f, c.node_id)}`.toLowerCase().includes(state.query);
}

function renderStates(all) {
  const n = (k) => all.filter((m) => m.t.kind === k).length;
  const chips = [["all", "All", all.length], ["problems", "Need attention", all.filter((m) => m.t.probs.length).length],
    ...KINDS.map(([k, label]) => [k, label, n(k)]).filter(([k, , v]) => v > 0 || k === state.filter)];
  setHtml($("#states"), chips.map(([k, label, v]) =>
    `<button type="button" class="chip k-${k}${state.filter === k ? " active" : ""}" data-filter="${k}" aria-pressed="${state.filter === k}" data-testid="state-${k}">${label} <b>${v}</b></button>`).join(""));
}

function renderCompact(f) {
  const all = f.chargers.map((c) => ({ c, ...tileEl(c, f) }));
  renderStates(all);
  const byCircuit = $("#by-circuit").checked;
  const groups = new Map();
  for (const m of all) {
    const key = byCircuit ? m.c.node_id : "_all";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(m);
  }
  const order = byCircuit ? f.site.nodes.map((n) => n.id).filter((id) => groups.has(id)) : ["_all"];
  let visibleTotal = 0;
  const groupEls = order.map((key) => {
    const members = groups.get(key) || [];
    const visible = members.filter((m) => matches(m, f)).sort(SORTS[$("#sort").value] || SORTS.id);
    visibleTotal += visible.length;
    const g = groupEl(key);
    setHtml(g.head, groupHead(f.site.nodes.find((n) => n.id === key), members, visible.length));
    syncChildren(g.grid, visible.map((m) => m.el));
    g.el.classList.toggle("hidden", !visible.length);
    return g.el;
  });
  syncChildren($("#groups"), groupEls);
  $("#no-match").classList.toggle("hidden", visibleTotal > 0);
}

// ---- which view ------------------------------------------------------------------------
function chosenView(f) {
  const saved = localStorage.getItem("ampshare-view");
  if (saved === "cards" || saved === "compact") return saved;
  return f.chargers.length >= COMPACT_FROM ? "compact" : "cards";
}

function applyView(view) {
  if (state.view === view) return;
  state.view = view;
  document.body.dataset.view = view;
  const compact = view === "compact";
  $("#compact").classList.toggle("hidden", !compact);
  $("#chargers").classList.toggle("hidden", compact);
  // With hundreds of cars the sessions table is a wall; the charger's details edit it instead.
  $("#sessions-panel").classList.toggle("hidden", compact);
  // The hidden view is not kept up to date; it is built afresh when shown again.
  $("#chargers").replaceChildren(); shown.cards.clear();
  for (const b of document.querySelectorAll("[data-view]")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
}

function renderChargerViews(f) {
  applyView(chosenView(f));
  $("#charger-count").textContent = `${f.chargers.length}`;
  if (state.view === "compact") { renderCompact(f); } else { renderChargers(f); renderSessions(f); }
  if (state.detail) renderDetail(f, false);
}

// ---- one charger's details (a dialog over either view) ------------------------------------
function openDetail(id) {
  if (!state.frame || !state.frame.chargers.some((c) => c.id === id)) return;
  state.detail = id;
  renderDetail(state.frame, true);
  const d = $("#detail");
  if (!d.open) d.showModal();
}

function closeDetail() {
  const d = $("#detail");
  state.detail = null;
  if (d.open) d.close();
}

function renderDetail(f, fresh) {
  const c = f.chargers.find((x) => x.id === state.detail);
  if (!c) { closeDetail(); return; }
  const s = c.session;
  $("#detail-title").innerHTML = `${esc(c.name)}${c.name !== c.id ? ` <small>${esc(c.id)}</small>` : ""} <small>on ${esc(nodeName(f, c.node_id))}</small>`;
  const probs = problems(c);
  const extra = [s && s.user_id ? `driver ${esc(s.user_id)}` : "", s ? `plugged in since ${fmtTime(s.arrival_s)}` : "",
    probs.length ? `<b class="bad">needs attention: ${probs.join(", ")}</b>` : ""].filter(Boolean).join(" · ");
  // The card of the cards view, with its own test ids so that both can be on the page.
  setHtml($("#detail-card"), chargerCard(c, f).replaceAll('data-testid="', 'data-testid="detail-')
    .replace(' tabindex="0" role="button"', "") +
    (extra ? `<p class="hint">${extra}</p>` : ""));
  const form = $("#detail-edit");
  form.classList.toggle("hidden", !s);
  $("#detail-hint").textContent = s ? (state.role === "read" ? "Read-only access." : "") : "No car plugged in: nothing to edit.";
  if (!s || (!fresh && state.editing.has(s.session_id) && form.dataset.session === s.session_id)) return;
  if (fresh || form.dataset.session !== s.session_id) {
    const m = form.querySelector(".msg"); m.className = "msg"; m.textContent = "";
  }
  form.dataset.session = s.session_id;
  form.elements.departure.value = toLocalInput(s.departure_s);
  form.elements.energy.value = s.energy_wanted_wh === null ? "" : (s.energy_wanted_wh / 1000).toFixed(0);
  form.elements.priority.value = String(s.priority);
  form.elements.priority.disabled = state.role !== "admin";
  form.elements.save.disabled = state.role === "read";
}

function detailSession() {
  const c = state.frame && state.frame.chargers.find((x) => x.id === state.detail);
  return c ? c.session : null;
}

function wireCompact() {
  for (const b of document.querySelectorAll("[data-view]")) {
    b.addEventListener("click", () => { localStorage.setItem("ampshare-view", b.dataset.view); refresh(); });
  }
  $("#states").addEventListener("click", (e) => {
    const b = e.target.closest("[data-filter]");
    if (b) { state.filter = b.dataset.filter; refresh(); }
  });
  $("#search").addEventListener("input", (e) => { state.query = e.target.value.trim().toLowerCase(); refresh(); });
  $("#sort").addEventListener("change", refresh);
  $("#by-circuit").addEventListener("change", refresh);
  const open = (e) => { const t = e.target.closest(".tile"); if (t) openDetail(t.dataset.id); };
  $("#groups").addEventListener("click", open);
  $("#groups").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(e); } });
  // the cards view: a card opens the same dialog (its card there is not inside #chargers)
  const openCard = (e) => { const t = e.target.closest(".card[data-id]"); if (t) openDetail(t.dataset.id); };
  $("#chargers").addEventListener("click", openCard);
  $("#chargers").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openCard(e); } });
  $("#detail-close").addEventListener("click", closeDetail);
  $("#detail").addEventListener("close", () => { state.detail = null; });
  const form = $("#detail-edit");
  form.addEventListener("input", () => { if (form.dataset.session) state.editing.add(form.dataset.session); });
  form.addEventListener("submit", (e) => e.preventDefault());
  form.elements.save.addEventListener("click", () => { const s = detailSession(); if (s) saveSession(form, s); });
}

function refresh() {
  if (state.frame) { applyView(chosenView(state.frame)); renderTree(state.frame); renderChargerViews(state.frame); }
}

// ---- live stream ---------------------------------------------------------------------------
function render(f) {
  state.frame = f;
  $("#site-name").textContent = f.site.name;
  applyView(chosenView(f));
  renderSummary(f); renderTree(f); renderPolicyForm(f); renderCapForm(f); renderChargerViews(f);
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
    const t0 = performance.now();
    render(JSON.parse(e.data));
    // Parse + DOM work per frame, kept for the last 100 frames (the browser tests read it).
    state.applyMs.push(performance.now() - t0);
    if (state.applyMs.length > 100) state.applyMs.shift();
    if (first) { first = false; loadChart(); }
  });
}

async function start() {
  try {
    state.role = (await api("/api/v1/whoami")).role;
  } catch (e) { return; }
  $("#login").classList.add("hidden");
  $("#main").classList.remove("hidden");
  $("#role-hint").textContent = state.role === "admin" ? "You are the site manager: you can change priorities and how cars share the site (above)." :
    state.role === "driver" ? "You can set departure and energy; priority is the site manager's." : "Read-only access.";
  wireExport();
  connect();
  setInterval(() => loadEvents().catch(() => {}), 10000);
  setInterval(() => loadCaps().catch(() => {}), 30000);  // a limit may have ended
  setInterval(loadChart, 60000);
  $("#chart-line").addEventListener("change", loadChart);
  $("#show-limits").addEventListener("change", () => loadEvents().catch(() => {}));
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
  wireCompact();
  if (state.token) start(); else logout();
}

init();

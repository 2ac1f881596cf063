import { Stagewire, login, StagewireError } from "/static/stagewire.js";

const CHANNEL = "ops:stats";
const WINDOW = 60;           // seconds kept in the charts
const STALE_AFTER = 5;       // seconds without a message: a node is shown as stale
const FORGET_AFTER = 60;     // ...and dropped from the table
const COLORS = ["#5aa7ff", "#3fbf7f", "#e0a43a", "#c678dd", "#e5534b", "#56b6c2", "#d19a66", "#98c379"];
const $ = (id) => document.getElementById(id);

const nodes = new Map();     // node id -> {last: stats, seen: ms, color, series: [{t, connections, in, out, deliveries}]}
const errors = new Map();    // "node|time|message" -> entry
let client = null;

function colorFor(id) {
  const used = new Set([...nodes.values()].map((n) => n.color));
  return COLORS.find((c) => !used.has(c)) || COLORS[nodes.size % COLORS.length];
}

function record(stats, live) {
  let node = nodes.get(stats.node);
  if (!node) { node = { color: colorFor(stats.node), series: [] }; nodes.set(stats.node, node); }
  if (node.last && stats.time <= node.last.time) return; // history overlapping live pushes
  node.last = stats;
  // Live pushes count from their arrival (server and browser clocks may differ).
  node.seen = live ? Date.now() : Math.min(Date.now(), stats.time * 1000);
  node.series.push({ t: stats.time, connections: stats.connections, in: stats.messages_in_per_s,
                     out: stats.messages_out_per_s, deliveries: stats.deliveries_per_s });
  while (node.series.length && node.series[0].t < stats.time - WINDOW) node.series.shift();
  for (const e of stats.recent_errors || []) errors.set(`${stats.node}|${e.time}|${e.message}`, { ...e, node: stats.node });
}

function fmt(n) { return n >= 100 ? Math.round(n).toLocaleString() : (Math.round(n * 10) / 10).toLocaleString(); }
function ago(ms) { const s = Math.max(0, Math.round((Date.now() - ms) / 1000)); return s < 2 ? "now" : `${s}s ago`; }
function uptime(s) { return s < 120 ? `${Math.round(s)}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`; }

function render() {
  const now = Date.now();
  for (const [id, node] of nodes) if (now - node.seen > FORGET_AFTER * 1000) nodes.delete(id);
  const live = [...nodes.values()].filter((n) => now - n.seen <= STALE_AFTER * 1000);
  const sum = (key) => live.reduce((total, n) => total + (n.last[key] || 0), 0);
  $("total-connections").textContent = sum("connections");
  $("total-in").textContent = fmt(sum("messages_in_per_s"));
  $("total-out").textContent = fmt(sum("messages_out_per_s"));
  $("total-deliveries").textContent = fmt(sum("deliveries_per_s"));
  $("node-count").textContent = live.length;
  const stale = nodes.size - live.length;
  $("node-noun").textContent = (live.length === 1 ? "node" : "nodes") + (stale ? ` (and ${stale} not reporting)` : "");

  const body = $("nodes").tBodies[0];
  body.replaceChildren(...[...nodes.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([id, node]) => {
    const s = node.last, tr = document.createElement("tr");
    tr.dataset.node = id;
    tr.className = now - node.seen > STALE_AFTER * 1000 ? "stale" : "";
    const broker = `${s.broker.backend} ${s.broker.healthy ? "ok" : "DOWN"}${s.broker.reconnects ? ` (${s.broker.reconnects} reconnects)` : ""}`;
    const cells = [id, s.connections, s.users, fmt(s.messages_in_per_s), fmt(s.messages_out_per_s), fmt(s.deliveries_per_s),
                   s.channels, s.slow_disconnects, broker, uptime(s.uptime), ago(node.seen)];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      if (i === 0) { const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = node.color; td.append(sw); }
      td.append(String(value));
      if (i === 8 && !s.broker.healthy) td.style.color = "var(--bad)";
      td.className = ["node", "connections", "users", "in", "out", "deliveries", "channels", "slow", "broker", "uptime", "seen"][i];
      tr.append(td);
    });
    return tr;
  }));

  const list = [...errors.values()].sort((a, b) => b.time - a.time).slice(0, 30);
  const ul = $("errors");
  if (!list.length) ul.replaceChildren(Object.assign(document.createElement("li"), { className: "none", textContent: "none" }));
  else ul.replaceChildren(...list.map((e) => {
    const li = document.createElement("li");
    const lvl = Object.assign(document.createElement("span"), { className: `lvl-${e.level}`, textContent: e.level });
    li.append(new Date(e.time * 1000).toLocaleTimeString(), " ", e.node, " ", lvl, " ", `${e.logger}: ${e.message}`);
    return li;
  }));

  chart("chart-connections", "connections");
  chart("chart-in", "in");
  chart("chart-out", "out");
  chart("chart-deliveries", "deliveries");
}

// A small line chart per metric: one line per node over the last WINDOW seconds.
function chart(id, key) {
  const canvas = $(id), ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  // The newest stats time as "now": the chart follows the servers' clock.
  const end = Math.max(0, ...[...nodes.values()].map((n) => n.last.time)) || Date.now() / 1000;
  const start = end - WINDOW;
  let max = 1;
  for (const n of nodes.values()) for (const p of n.series) max = Math.max(max, p[key]);
  g.strokeStyle = "#263041"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  g.fillStyle = "#8793a5"; g.font = "10px system-ui, sans-serif"; g.fillText(fmt(max), 2, 10);
  for (const n of nodes.values()) {
    g.strokeStyle = n.color; g.lineWidth = 1.5; g.beginPath();
    n.series.forEach((p, i) => {
      const x = ((p.t - start) / WINDOW) * w, y = h - 2 - (p[key] / max) * (h - 14);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

function setState(state, text) {
  const badge = $("conn-state");
  badge.dataset.state = state;
  badge.textContent = text || state;
}

async function start(token, user) {
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = user.username;
  client = new Stagewire({ token, maxDelay: 8000 });
  client.on("state", ({ state }) => setState(state, state === "reconnecting" ? "reconnecting…" : state));
  client.on("disconnect", ({ code, reason, reconnect }) => {
    if (reconnect) return;
    setState("closed", `disconnected: ${reason || code}`);
    if (code >= 4500 || code === 4003) signOut(`Signed out: ${reason || code}. Sign in again.`);
  });
  client.subscribe(CHANNEL, {
    onPublication: (pub) => { record(pub.data, !pub.recovered); render(); },
    onSubscribed: async ({ resubscribed }) => {
      if (resubscribed) return;
      // Fill the charts with what the channel still holds (its history_size).
      try {
        const h = await client.history(CHANNEL, { limit: 1000 });
        for (const pub of h.publications) record(pub.data, false);
        render();
      } catch (err) { console.warn("no history", err); }
    },
    onError: (err) => {
      setState("closed", "not allowed");
      signOut(err.code === 103
        ? `${user.username} is not an admin: add it to [auth] admins or run "stagewire user set-role ${user.username} admin".`
        : err.message);
    },
  });
  try { await client.connect(); } catch (err) { $("login-error").textContent = err.message; }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    const { token, user } = await login($("username").value.trim(), $("password").value);
    if (user.role !== "admin") {
      $("login-error").textContent = `${user.username} is not an admin: add it to [auth] admins or run "stagewire user set-role ${user.username} admin".`;
      return;
    }
    sessionStorage.setItem("stagewire.dashboard", JSON.stringify({ token, user }));
    $("password").value = "";
    start(token, user);
  } catch (err) {
    $("login-error").textContent = err instanceof StagewireError && err.status === 401 ? "wrong username or password" : err.message;
  }
});

function signOut(message) {
  sessionStorage.removeItem("stagewire.dashboard");
  if (client) client.disconnect();
  $("board").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

$("logout").addEventListener("click", () => { signOut(); setState("idle", "signed out"); });

setInterval(render, 1000); // "last seen" and staleness move even when nothing arrives
window.addEventListener("resize", render);
const saved = sessionStorage.getItem("stagewire.dashboard");
if (saved) { const { token, user } = JSON.parse(saved); start(token, user); }

// The demo chat at / (static/index.html), built on static/stagewire.js and the
// rooms application (handlers/rooms): rooms.*, messages.*, typing, read; events
// on room:<id>, typing:<id> and user:<name>. Everything here goes over the one
// WebSocket; only register and login are HTTP calls.

import { Stagewire, StagewireError, login, logout, register } from "./stagewire.js";

const $ = (id) => document.getElementById(id);
const SAVED = "stagewire.demo";
const USERNAME_RE = /^[A-Za-z0-9_.-]{3,32}$/;
const TYPING_SHOWN_MS = 3500;
const TYPING_SEND_EVERY_MS = 2000;

let client = null;
let me = null;
let token = null;
const rooms = new Map(); // id -> {view, messages: Map(id -> message), loaded, unread, presence: Map(user -> true)}
let active = null;       // the open room's id
let typingSub = null;
const typists = new Map(); // user -> timer
let lastTypingSent = 0;

// -- connection state badge ------------------------------------------------------------

const STATE_TEXT = {
  idle: "offline", connecting: "connecting…", connected: "connected", reconnecting: "reconnecting…",
  closed: "offline", recovered: "recovered", reloaded: "reloaded", recovering: "recovering…",
};

function showState(state, title = "") {
  const badge = $("conn-state");
  badge.dataset.state = state;
  badge.textContent = STATE_TEXT[state] || state;
  badge.title = title;
}

// -- account forms ---------------------------------------------------------------------

let mode = "login";

function setMode(next) {
  mode = next;
  $("tab-login").setAttribute("aria-selected", String(next === "login"));
  $("tab-register").setAttribute("aria-selected", String(next === "register"));
  $("auth-submit").textContent = next === "login" ? "Log in" : "Create account";
  $("password").autocomplete = next === "login" ? "current-password" : "new-password";
  clearAuthErrors();
}

function clearAuthErrors() {
  for (const id of ["username-error", "password-error", "auth-error"]) $(id).textContent = "";
  $("username").removeAttribute("aria-invalid");
  $("password").removeAttribute("aria-invalid");
}

function fieldError(field, message) {
  $(`${field}-error`).textContent = message;
  $(field).setAttribute("aria-invalid", "true");
}

function validate(username, password) {
  let ok = true;
  if (!USERNAME_RE.test(username)) {
    fieldError("username", "3 to 32 characters: letters, digits, “_”, “.” or “-”");
    ok = false;
  }
  if (password.length < 8 || password.length > 256) {
    fieldError("password", "8 to 256 characters");
    ok = false;
  }
  return ok;
}

function showServerError(err) {
  if (!(err instanceof StagewireError)) { $("auth-error").textContent = `Cannot reach the server (${err.message})`; return; }
  if (err.fields) for (const [field, message] of Object.entries(err.fields)) if ($(`${field}-error`)) fieldError(field, message);
  if (err.status === 409) fieldError("username", "this name is taken");
  else if (err.status === 401) $("auth-error").textContent = "Wrong username or password";
  else if (err.status === 429) $("auth-error").textContent = "Too many failed attempts: wait a few minutes";
  else if (!err.fields) $("auth-error").textContent = err.message;
}

async function onAuthSubmit(event) {
  event.preventDefault();
  clearAuthErrors();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!validate(username, password)) return;
  $("auth-submit").disabled = true;
  try {
    if (mode === "register") await register(username, password);
    const session = await login(username, password);
    $("password").value = "";
    sessionStorage.setItem(SAVED, JSON.stringify({ token: session.token, user: session.user }));
    await startChat(session.token, session.user);
  } catch (err) {
    showServerError(err);
  } finally {
    $("auth-submit").disabled = false;
  }
}

// -- the chat ----------------------------------------------------------------------------

async function startChat(newToken, user) {
  token = newToken;
  me = user;
  $("auth").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = user.username;
  $("logout").hidden = false;
  client = new Stagewire({ token, maxDelay: 8000 });
  client.on("state", ({ state }) => { if (state !== "connected") showState(state); });
  client.on("connect", ({ reconnected }) => showState(reconnected ? "recovering" : "connected"));
  client.on("recovery", ({ recovered, channels }) => onRecovery(recovered, channels));
  client.on("token", (fresh) => {
    token = fresh;
    sessionStorage.setItem(SAVED, JSON.stringify({ token, user: me }));
  });
  client.on("disconnect", ({ code, reason, reconnect }) => {
    if (!reconnect) endChat(`Disconnected: ${reason || code}. Log in again.`);
  });
  client.subscribe(`user:${user.username}`, { onPublication: onUserEvent });
  try {
    await client.connect();
  } catch {
    return; // the disconnect handler has shown why
  }
  try {
    await loadRooms();
  } catch (err) {
    console.warn("rooms not loaded:", err.message); // retried after the next reconnect
  }
}

function endChat(message) {
  if (client) client.disconnect();
  client = null;
  rooms.clear();
  active = null;
  typingSub = null;
  sessionStorage.removeItem(SAVED);
  $("chat").hidden = true;
  $("auth").hidden = false;
  $("logout").hidden = true;
  $("me").textContent = "";
  $("auth-error").textContent = message || "";
  showState("idle");
}

async function onRecovery(recovered, channels) {
  try {
    await resync(recovered, channels);
  } catch (err) {
    console.warn("resync failed:", err.message);
  }
}

async function resync(recovered, channels) {
  // Whatever failed to load while the connection was down, load now.
  if (!rooms.size) await loadRooms();
  else if (active !== null && !rooms.get(active).loaded) await openRoom(active);
  if (recovered) { showState("recovered", "every missed message was replayed"); return; }
  // Some channel could not be replayed exactly (a restart without durable
  // channels, a long absence): reload what it carries from the database.
  for (const [channel, ok] of Object.entries(channels)) {
    if (ok !== false) continue;
    if (channel.startsWith("user:")) await loadRooms();
    const id = roomIdOf(channel);
    if (id !== null && rooms.has(id)) await reloadNewer(rooms.get(id));
  }
  showState("reloaded", "reloaded from the server after missing messages");
}

function roomIdOf(channel) {
  const m = /^room:(\d+)$/.exec(channel);
  return m ? Number(m[1]) : null;
}

// -- rooms ---------------------------------------------------------------------------------

async function loadRooms() {
  const [joined, open] = await Promise.all([
    client.call("rooms.list", { scope: "joined" }),
    client.call("rooms.list", { scope: "public" }),
  ]);
  for (const view of joined.rooms) addRoom(view);
  renderRooms();
  renderPublicRooms(open.rooms.filter((r) => !rooms.has(r.id)));
  if (active === null && rooms.size) openRoom(Number(sessionStorage.getItem(`${SAVED}.room`)) || [...rooms.keys()][0]);
}

function addRoom(view) {
  let room = rooms.get(view.id);
  if (room) { room.view = view; room.unread = view.unread ?? room.unread; return room; }
  room = { view, messages: new Map(), loaded: false, unread: view.unread || 0, presence: new Map() };
  rooms.set(view.id, room);
  client.subscribe(view.channel, {
    onPublication: (pub) => onRoomEvent(room, pub.data),
    onJoin: (info) => { room.presence.set(info.user, true); if (active === room.view.id) renderPresence(); },
    onLeave: (info) => { room.presence.delete(info.user); if (active === room.view.id) renderPresence(); },
    onSubscribed: ({ resubscribed }) => { if (resubscribed && active === room.view.id) loadPresence(room); },
    onError: (err) => console.warn(`cannot follow ${view.channel}:`, err.message),
  });
  return room;
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren(...[...rooms.values()].sort((a, b) => a.view.name.localeCompare(b.view.name)).map((room) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "room";
    button.dataset.roomId = room.view.id;
    button.setAttribute("aria-current", String(room.view.id === active));
    button.append(Object.assign(document.createElement("span"), { className: "name", textContent: `# ${room.view.name}` }));
    if (room.unread && room.view.id !== active) {
      button.append(Object.assign(document.createElement("span"), { className: "unread", textContent: room.unread }));
    }
    button.addEventListener("click", () => openRoom(room.view.id));
    li.append(button);
    return li;
  }));
  $("no-rooms").hidden = rooms.size > 0;
}

function renderPublicRooms(list) {
  $("public-rooms").replaceChildren(...list.map((view) => {
    const li = document.createElement("li");
    li.dataset.roomId = view.id;
    const join = Object.assign(document.createElement("button"), { type: "button", className: "join", textContent: "Join" });
    join.addEventListener("click", () => joinRoom(view.id));
    li.append(Object.assign(document.createElement("span"), { textContent: `# ${view.name}` }), join);
    return li;
  }));
  $("public-heading").hidden = list.length === 0;
}

async function joinRoom(id) {
  try {
    await client.call("rooms.join", { room: id });
  } catch (err) {
    if (!(err instanceof StagewireError && err.code === 110)) { alert(err.message); return; } // 110: already a member
  }
  const { room } = await client.call("rooms.get", { room: id });
  addRoom(room);
  await refreshPublicRooms();
  openRoom(id);
}

async function refreshPublicRooms() {
  const open = await client.call("rooms.list", { scope: "public" });
  renderPublicRooms(open.rooms.filter((r) => !rooms.has(r.id)));
}

async function onCreateRoom(event) {
  event.preventDefault();
  $("create-error").textContent = "";
  const name = $("room-name").value.trim();
  if (!name) { $("create-error").textContent = "Give the room a name"; return; }
  try {
    const { room } = await client.call("rooms.create", { name, public: $("room-public").checked });
    $("room-name").value = "";
    addRoom(room);
    openRoom(room.id);
  } catch (err) {
    $("create-error").textContent = err.fields ? Object.values(err.fields).join("; ") : err.message;
  }
}

async function openRoom(id) {
  const room = rooms.get(id);
  if (!room) return;
  active = id;
  sessionStorage.setItem(`${SAVED}.room`, String(id));
  document.body.classList.remove("show-rooms");
  $("room-title").textContent = `# ${room.view.name}`;
  $("room-topic").textContent = room.view.topic || (room.view.public ? "public room" : "private room");
  $("composer").hidden = false;
  clearTypists();
  followTyping(room);
  renderRooms();
  renderMessages(room);
  try {
    if (!room.loaded) {
      const page = await client.call("messages.list", { room: id, limit: 50 });
      for (const m of page.messages) room.messages.set(m.id, m);
      room.loaded = true;
      if (active === id) renderMessages(room);
    }
    await loadPresence(room);
    markRead(room);
  } catch (err) {
    console.warn(`room ${id} not loaded:`, err.message); // loaded again after the next reconnect
  }
}

async function reloadNewer(room) {
  if (!room.loaded) return;
  let after = Math.max(0, ...room.messages.keys());
  for (;;) {
    const page = await client.call("messages.list", { room: room.view.id, after, limit: 100 });
    for (const m of page.messages) room.messages.set(m.id, m);
    if (!page.next) break;
    after = page.next;
  }
  if (active === room.view.id) { renderMessages(room); markRead(room); }
}

async function loadPresence(room) {
  try {
    const { users } = await client.presence(room.view.channel);
    room.presence = new Map(users.map((u) => [u.user, true]));
  } catch (err) {
    console.warn("no presence:", err.message);
  }
  if (active === room.view.id) renderPresence();
}

function markRead(room) {
  const ids = [...room.messages.keys()];
  if (!ids.length) return;
  room.unread = 0;
  renderRooms();
  client.call("read", { room: room.view.id, message: Math.max(...ids) }).catch(() => {});
}

// -- events ----------------------------------------------------------------------------------

function onRoomEvent(room, event) {
  switch (event.event) {
    case "message.created":
    case "message.edited": {
      const isNew = !room.messages.has(event.message.id);
      room.messages.set(event.message.id, event.message);
      if (active === room.view.id) {
        renderMessages(room);
        if (event.message.author !== me.username) markRead(room);
        typists.has(event.message.author) && stopTyping(event.message.author);
      } else if (isNew && event.message.author !== me.username && event.event === "message.created") {
        room.unread += 1;
        renderRooms();
      }
      break;
    }
    case "message.deleted": {
      const m = room.messages.get(event.id);
      if (m) { m.deleted = true; m.body = null; if (active === room.view.id) renderMessages(room); }
      break;
    }
    case "member.joined":
    case "member.invited":
    case "member.left":
      if (active === room.view.id) systemLine(memberText(event));
      break;
    default:
      break;
  }
}

function memberText(e) {
  if (e.event === "member.joined") return `${e.user} joined the room`;
  if (e.event === "member.invited") return `${e.by} invited ${e.user}`;
  return `${e.user} left the room`;
}

function onUserEvent(pub) {
  const e = pub.data;
  if (e.event === "unread" && rooms.has(e.room)) {
    rooms.get(e.room).unread = e.room === active ? 0 : e.unread;
    renderRooms();
  } else if (e.event === "room.invited") {
    addRoom(e.room);
    renderRooms();
  }
}

// -- typing -----------------------------------------------------------------------------------

function followTyping(room) {
  if (typingSub) typingSub.unsubscribe();
  // Typing notices are ephemeral: nothing to recover after a reconnect.
  typingSub = client.subscribe(room.view.typing_channel, {
    recover: false,
    onPublication: (pub) => {
      const user = pub.data.user;
      if (user === me.username || pub.data.room !== active) return;
      clearTimeout(typists.get(user));
      typists.set(user, setTimeout(() => stopTyping(user), TYPING_SHOWN_MS));
      renderTyping();
    },
  });
}

function stopTyping(user) {
  clearTimeout(typists.get(user));
  typists.delete(user);
  renderTyping();
}

function clearTypists() {
  for (const timer of typists.values()) clearTimeout(timer);
  typists.clear();
  renderTyping();
}

function renderTyping() {
  const names = [...typists.keys()];
  $("typing").textContent = !names.length ? "" : names.length === 1 ? `${names[0]} is typing…`
    : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
}

function onComposerInput() {
  const now = Date.now();
  if (active === null || !$("message-input").value || now - lastTypingSent < TYPING_SEND_EVERY_MS) return;
  lastTypingSent = now;
  client.call("typing", { room: active }).catch(() => {});
}

async function onSend(event) {
  event.preventDefault();
  const input = $("message-input");
  const body = input.value;
  $("composer-error").textContent = "";
  if (!body.trim() || active === null) return;
  const room = rooms.get(active);
  input.value = "";
  lastTypingSent = 0;
  try {
    const { message } = await client.call("messages.send", { room: room.view.id, body });
    room.messages.set(message.id, message);
    if (active === room.view.id) renderMessages(room);
  } catch (err) {
    input.value = input.value || body; // keep what was typed
    $("composer-error").textContent = err.fields ? Object.values(err.fields).join("; ") : err.message;
  }
}

// -- rendering ------------------------------------------------------------------------------------

function renderMessages(room) {
  const list = $("messages");
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const sorted = [...room.messages.values()].sort((a, b) => a.id - b.id);
  list.replaceChildren(...sorted.map(messageItem));
  if (!sorted.length) list.append(Object.assign(document.createElement("li"), { className: "system", textContent: "No messages yet: say hello." }));
  if (stick || sorted.length) list.scrollTop = list.scrollHeight;
}

function messageItem(m) {
  const li = document.createElement("li");
  li.className = `message${m.author === me.username ? " mine" : ""}${m.deleted ? " deleted" : ""}`;
  li.dataset.id = m.id;
  const head = document.createElement("div");
  head.className = "meta";
  head.append(Object.assign(document.createElement("span"), { className: "author", textContent: m.author }),
    Object.assign(document.createElement("time"), { textContent: new Date(m.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), dateTime: m.created_at }));
  if (m.edited_at) head.append(Object.assign(document.createElement("span"), { className: "edited", textContent: "edited" }));
  const body = Object.assign(document.createElement("div"), { className: "body", textContent: m.deleted ? "message deleted" : m.body });
  li.append(head, body);
  return li;
}

function systemLine(text) {
  $("messages").append(Object.assign(document.createElement("li"), { className: "system", textContent: text }));
}

function renderPresence() {
  const room = rooms.get(active);
  const users = room ? [...room.presence.keys()].sort() : [];
  $("presence").replaceChildren(...users.map((u) => {
    const li = Object.assign(document.createElement("li"), { textContent: u });
    li.dataset.user = u;
    if (u === me.username) li.classList.add("me");
    return li;
  }));
  $("presence-count").textContent = users.length;
  $("online-list").textContent = users.join(", ");
}

// -- wiring ------------------------------------------------------------------------------------------

$("tab-login").addEventListener("click", () => setMode("login"));
$("tab-register").addEventListener("click", () => setMode("register"));
$("auth-form").addEventListener("submit", onAuthSubmit);
$("create-room").addEventListener("submit", onCreateRoom);
$("composer").addEventListener("submit", onSend);
$("message-input").addEventListener("input", onComposerInput);
$("message-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("toggle-rooms").addEventListener("click", () => document.body.classList.toggle("show-rooms"));
$("logout").addEventListener("click", async () => {
  const old = token;
  endChat();
  try { await logout(old); } catch { /* the session may be gone already */ }
});

setMode("login");
const saved = sessionStorage.getItem(SAVED);
if (saved) {
  const { token: savedToken, user } = JSON.parse(saved);
  startChat(savedToken, user);
}

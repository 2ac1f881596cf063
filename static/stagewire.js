// Stagewire browser client: one dependency-free ES module.
//
//   import { Stagewire, login } from "/static/stagewire.js";
//   const { token } = await login("alice", "correct horse");
//   const sw = new Stagewire({ token });
//   sw.subscribe("chat:lobby", { onPublication: (pub) => console.log(pub.data) });
//   await sw.connect();
//   await sw.publish("chat:lobby", { text: "hi" });
//
// It speaks docs/protocol.md: connect with a token, subscribe, publish, call
// any handler and await its reply; several messages per frame both ways;
// reconnect with full-jitter exponential backoff following the close-code ranges
// (and the server's `reconnect_after` hint);
// resubscribe with the last offset and epoch and report `recovered`; refresh
// the token before it expires (or, with `cookies: true`, connect with the page's
// cookies and let the server's connect proxy decide); JSON, or msgpack (static/vendor/msgpack, loaded
// only when asked for). docs/client-js.md is the manual.

/** Close codes after which the client does not reconnect by itself (besides 4500-4999). */
const FINAL_STANDARD_CODES = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010]);
const MAX_COMMANDS_PER_FRAME = 100;
const TOKEN_EXPIRED_CLOSE = 4003;
const TOKEN_EXPIRED_ERROR = 109;

/**
 * Milliseconds to wait before reconnect attempt `attempt` (0 for the first): full jitter,
 * uniformly random in [0, min(maxDelay, minDelay * 2^attempt)], so that clients cut off
 * together come back spread over the whole step.
 */
export function backoffDelay(attempt, minDelay, maxDelay) {
  return Math.random() * Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 32));
}

/**
 * The wait a `disconnect` push's `reconnect_after: [min_ms, max_ms]` asks for: uniformly
 * random in the range; null when `hint` is not such a range.
 */
export function hintedDelay(hint) {
  if (!Array.isArray(hint) || hint.length !== 2) return null;
  const [low, high] = hint;
  if (typeof low !== "number" || typeof high !== "number" || !(low >= 0) || !(high >= low)) return null;
  return low + Math.random() * (high - low);
}

/** Whether a connection closed with `code` should be reopened (see docs/protocol.md, close codes). */
export function shouldReconnect(code) {
  if (code >= 4000 && code < 4500) return true;
  if (code >= 4500 && code < 5000) return false;
  return !FINAL_STANDARD_CODES.has(code);
}

/** The server refused a command or an HTTP request: `code` is the numeric error code. */
export class StagewireError extends Error {
  constructor(code, message, { fields = null, temporary = false, status = null } = {}) {
    super(message);
    this.name = "StagewireError";
    this.code = code;
    this.fields = fields;
    this.temporary = temporary;
    this.status = status;
  }
}

/** The connection ended before a reply came, or the client was closed. */
export class DisconnectedError extends Error {
  constructor(code, reason, reconnect) {
    super(reason || `disconnected (${code})`);
    this.name = "DisconnectedError";
    this.code = code;
    this.reason = reason;
    this.reconnect = reconnect;
  }
}

/** No reply within the call's timeout. */
export class CallTimeoutError extends Error {
  constructor(type, ms) {
    super(`${type}: no reply within ${ms} ms`);
    this.name = "CallTimeoutError";
  }
}

// -- HTTP helpers (accounts) ----------------------------------------------------

function httpBase(base) {
  if (base) return base.replace(/\/+$/, "");
  return typeof location !== "undefined" ? location.origin : "";
}

async function postJSON(path, body, { baseUrl, token } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(httpBase(baseUrl) + path, { method: "POST", headers, body: JSON.stringify(body || {}) });
  let data = null;
  try { data = await response.json(); } catch { /* not JSON: reported below */ }
  if (!response.ok) {
    const err = (data && data.error) || { code: 100, message: `HTTP ${response.status}` };
    throw new StagewireError(err.code, err.message, { fields: err.fields || null, temporary: !!err.temporary, status: response.status });
  }
  return data;
}

/** `POST /api/auth/register`: resolves to `{user}`; rejects with a StagewireError (`fields` on 422). */
export function register(username, password, options) {
  return postJSON("/api/auth/register", { username, password }, options);
}

/** `POST /api/auth/login`: resolves to `{token, expires_in, user}`. */
export function login(username, password, options) {
  return postJSON("/api/auth/login", { username, password }, options);
}

/** `POST /api/auth/refresh`: a new token for the same session, `{token, expires_in, user}`. */
export function refreshToken(token, options) {
  return postJSON("/api/auth/refresh", {}, { ...options, token });
}

/** `POST /api/auth/logout`: revokes the session; its connections are closed with 4503. */
export function logout(token, options) {
  return postJSON("/api/auth/logout", {}, { ...options, token });
}

// -- codecs ----------------------------------------------------------------------

const jsonCodec = {
  subprotocol: "stagewire.json",
  encodeFrame(messages) { return messages.map((m) => JSON.stringify(m)).join("\n"); },
  decodeFrame(data) {
    if (typeof data !== "string") throw new Error("binary frame on a JSON connection");
    const out = [];
    for (const line of data.split("\n")) if (line) out.push(JSON.parse(line));
    return out;
  },
};

let msgpackCodec = null;
async function loadMsgpack() {
  if (msgpackCodec) return msgpackCodec;
  const mp = await import(new URL("./vendor/msgpack/index.mjs", import.meta.url).href);
  msgpackCodec = {
    subprotocol: "stagewire.msgpack",
    encodeFrame(messages) {
      const parts = messages.map((m) => mp.encode(m));
      if (parts.length === 1) return parts[0];
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) { out.set(p, at); at += p.length; }
      return out;
    },
    decodeFrame(data) {
      if (typeof data === "string") throw new Error("text frame on a msgpack connection");
      return Array.from(mp.decodeMulti(new Uint8Array(data)));
    },
  };
  return msgpackCodec;
}

// -- subscriptions -------------------------------------------------------------

/**
 * One channel subscription. It survives reconnects: after one, the client
 * subscribes again with the last offset and epoch and reports whether every
 * missed publication came back (`recovered`).
 */
export class Subscription {
  constructor(client, channel, handlers) {
    this.client = client;
    this.channel = channel;
    this.handlers = handlers;
    this.offset = handlers.since ? handlers.since.offset : null;
    this.epoch = handlers.since ? handlers.since.epoch : null;
    this.recovered = null; // result of the last recovery; null until one happened
    this.active = false; // the server has confirmed it on the current connection
    this.closed = false;
    this._early = []; // pushes that came in the reply's frame, before the reply was handled
    this._settle = null;
    this.ready = new Promise((resolve, reject) => { this._settle = { resolve, reject }; });
    this.ready.catch(() => {}); // a refusal also goes to onError; nobody has to await this
  }

  /** The last position seen, to resume from (`{offset, epoch}`), or null. */
  get position() {
    return this.epoch === null ? null : { offset: this.offset, epoch: this.epoch };
  }

  /** Stop receiving; resolves once the server has confirmed (or at once when offline). */
  async unsubscribe() {
    if (this.closed) return;
    this.closed = true;
    const wasActive = this.active;
    this.active = false;
    this.client._subs.delete(this.channel);
    if (wasActive && this.client.state === "connected") {
      try { await this.client.call("unsubscribe", { channel: this.channel }); } catch { /* gone anyway */ }
    }
  }

  _emit(name, ...args) {
    const fn = this.handlers[name];
    if (!fn) return;
    try { fn(...args); } catch (err) { this.client._report(err); }
  }

  _push(m) {
    if (m.type === "pub") this._publication(m, false);
    else this._emit(m.type === "join" ? "onJoin" : "onLeave", m.info);
  }

  _publication(pub, recovered) {
    if (this.offset !== null && pub.offset <= this.offset) return; // already seen
    this.offset = pub.offset;
    this._emit("onPublication", { channel: this.channel, offset: pub.offset, data: pub.data, info: pub.info || null, recovered });
  }
}

// -- the client ----------------------------------------------------------------

const DEFAULTS = {
  url: null,
  token: null,
  cookies: false,
  connectData: undefined,
  refreshToken: undefined,
  encoding: "json",
  minDelay: 500,
  maxDelay: 20000,
  timeout: 10000,
  pingGrace: 10000,
  refreshAt: 0.8,
  WebSocket: null,
};

/**
 * A Stagewire connection that keeps itself open.
 *
 * States: "idle" → "connecting" → "connected" ⇄ "reconnecting" → "closed".
 * Events (`on(name, fn)` returns a function that removes the listener):
 * "state", "connect", "disconnect", "recovery", "push", "error", "token".
 */
export class Stagewire {
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    if (!this.options.token && !this.options.cookies) {
      throw new TypeError("a token (string or async function) is required, or cookies: true");
    }
    this.url = wsUrl(this.options.url);
    this.state = "idle";
    this.info = null; // the connect result: {client, user, ping, expires_in, node}
    this._token = typeof this.options.token === "string" ? this.options.token : null;
    this._listeners = new Map();
    this._subs = new Map();
    this._pending = new Map(); // id -> {resolve, reject, timer, type}
    this._waiting = []; // calls made while not connected
    this._outbox = [];
    this._flushQueued = false;
    this._nextId = 1;
    this._ws = null;
    this._codec = null;
    this._attempt = 0;
    this._everConnected = false;
    this._timers = { reconnect: null, heartbeat: null, refresh: null };
    this._readyWaiters = [];
    this._opening = false; // between _open() and the socket's creation
    // Back online: try now rather than at the end of a long backoff step.
    this._onOnline = () => { if (this.state === "reconnecting" && !this._ws && !this._opening) this._retryNow(); };
  }

  // -- events ----------------------------------------------------------------

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event).delete(fn);
  }

  _emit(event, value) {
    for (const fn of this._listeners.get(event) || []) {
      try { fn(value); } catch (err) { if (event !== "error") this._report(err); else console.error(err); }
    }
  }

  _report(err) {
    if ((this._listeners.get("error") || new Set()).size) this._emit("error", err);
    else console.error("stagewire:", err);
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous });
  }

  // -- connecting --------------------------------------------------------------

  /** Open the connection; resolves with the connect result, rejects if the client closes first. */
  connect() {
    if (this.state === "closed") return Promise.reject(new DisconnectedError(1000, "client closed", false));
    if (this.state === "connected") return Promise.resolve(this.info);
    const ready = new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
    if (this.state === "idle") {
      if (typeof addEventListener === "function") addEventListener("online", this._onOnline);
      this._setState("connecting");
      this._open();
    }
    return ready;
  }

  /** Close for good: no reconnect; pending and later calls fail with DisconnectedError(1000). */
  disconnect() {
    if (this.state === "closed") return;
    const ws = this._ws;
    this._finish(1000, "client closed");
    if (ws && ws.readyState <= 1) ws.close(1000, "client closed");
  }

  async _open() {
    let token, codec;
    this._opening = true;
    try {
      codec = this.options.encoding === "msgpack" ? await loadMsgpack() : jsonCodec;
      token = await this._currentToken();
    } catch (err) {
      this._opening = false;
      if (err instanceof StagewireError && err.code === TOKEN_EXPIRED_ERROR) {
        // No way to a new token: the app has to log in again.
        this._emit("disconnect", { code: TOKEN_EXPIRED_CLOSE, reason: "token expired", reconnect: false });
        this._finish(TOKEN_EXPIRED_CLOSE, "token expired");
      } else {
        this._report(err);
        this._lost(4000, `cannot get a token: ${err.message}`, true);
      }
      return;
    }
    this._opening = false;
    if (this.state === "closed") return;
    this._codec = codec;
    const WS = this.options.WebSocket || WebSocket;
    let ws;
    try {
      ws = new WS(this.url, [codec.subprotocol]);
    } catch (err) {
      this._report(err);
      this._lost(1006, String(err.message || err), true);
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    let disconnectPush = null;
    ws.onopen = () => {
      const id = this._nextId++;
      this._track(id, "connect", this.options.timeout).then(
        (result) => { if (this._ws === ws) this._connected(result); },
        (err) => {
          // The server closes right after a refused connect; onclose decides what comes next.
          if (err instanceof StagewireError && err.code !== TOKEN_EXPIRED_ERROR) this._report(err);
          if (err instanceof CallTimeoutError) this._drop(ws, 4000, "no reply to connect");
        },
      );
      const connect = { id, type: "connect" };
      // Without a token the server's connect proxy decides, from the cookies sent with the upgrade.
      if (token) connect.token = token;
      if (this.options.connectData !== undefined) connect.data = this.options.connectData;
      ws.send(codec.encodeFrame([connect]));
    };
    ws.onmessage = (event) => {
      let messages;
      try {
        messages = codec.decodeFrame(event.data);
      } catch (err) {
        this._report(err);
        return;
      }
      this._armHeartbeat();
      for (const m of messages) {
        if (m.type === "disconnect" && m.id === undefined) disconnectPush = m;
        this._dispatch(m);
      }
    };
    ws.onclose = (event) => {
      if (this._ws !== ws) return; // replaced (heartbeat timeout)
      const code = disconnectPush ? disconnectPush.code : event.code;
      const reason = disconnectPush ? disconnectPush.reason : event.reason;
      const reconnect = disconnectPush ? !!disconnectPush.reconnect : shouldReconnect(code);
      this._lost(code, reason, reconnect, disconnectPush ? disconnectPush.reconnect_after : undefined);
    };
  }

  async _currentToken() {
    if (this.options.cookies && !this.options.token) return null;
    if (this._token) return this._token;
    const source = this.options.token;
    if (typeof source === "function") {
      this._token = await source();
      return this._token;
    }
    // The token expired and refreshing failed: nothing left to try.
    throw new StagewireError(TOKEN_EXPIRED_ERROR, "token expired");
  }

  _connected(result) {
    const reconnected = this._everConnected;
    this.info = result;
    this._attempt = 0;
    this._everConnected = true;
    this._setState("connected");
    this._armHeartbeat();
    this._scheduleRefresh(result.expires_in);
    const resubscribing = [];
    for (const sub of this._subs.values()) resubscribing.push(this._subscribe(sub, reconnected));
    const waiting = this._waiting;
    this._waiting = [];
    for (const w of waiting) this._send(w);
    this._emit("connect", { ...result, reconnected });
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.resolve(result);
    if (reconnected) {
      Promise.all(resubscribing).then((outcomes) => {
        const channels = {};
        for (const o of outcomes) if (o) channels[o.channel] = o.recovered;
        const values = Object.values(channels);
        this._emit("recovery", { recovered: values.every((v) => v !== false), channels });
      });
    }
  }

  _lost(code, reason, reconnect, hint) {
    if (this.state === "closed") return;
    this._ws = null;
    this._clearTimers();
    for (const sub of this._subs.values()) { sub.active = false; sub._early = []; }
    const error = new DisconnectedError(code, reason, reconnect);
    for (const [id, p] of this._pending) { clearTimeout(p.timer); p.reject(error); this._pending.delete(id); }
    this._outbox = [];
    // An expired token cannot be refreshed: the next attempt asks the token provider, if any.
    if (code === TOKEN_EXPIRED_CLOSE) this._token = null;
    this._emit("disconnect", { code, reason, reconnect });
    if (!reconnect) { this._finish(code, reason); return; }
    this._schedule(hint);
  }

  _schedule(hint) {
    if (this.state === "closed") return;
    // The server's hint (a draining node spreading its clients out) replaces the first step.
    const hinted = this._attempt === 0 ? hintedDelay(hint) : null;
    const delay = hinted ?? backoffDelay(this._attempt, this.options.minDelay, this.options.maxDelay);
    this._attempt += 1;
    this.nextRetryIn = delay; // set before the state event, so that its listeners see it
    this._setState(this._everConnected ? "reconnecting" : "connecting");
    clearTimeout(this._timers.reconnect);
    this._timers.reconnect = setTimeout(() => this._open(), delay);
  }

  _retryNow() {
    clearTimeout(this._timers.reconnect);
    this._attempt = 0;
    this._open();
  }

  _finish(code, reason) {
    this._clearTimers();
    this._ws = null;
    this._setState("closed");
    if (typeof removeEventListener === "function") removeEventListener("online", this._onOnline);
    const error = new DisconnectedError(code, reason, false);
    for (const [, p] of this._pending) { clearTimeout(p.timer); p.reject(error); }
    this._pending.clear();
    for (const w of this._waiting) { clearTimeout(w.timer); w.reject(error); }
    this._waiting = [];
    for (const sub of this._subs.values()) sub._settle.reject(error);
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.reject(error);
  }

  _clearTimers() {
    for (const key of Object.keys(this._timers)) { clearTimeout(this._timers[key]); this._timers[key] = null; }
  }

  _armHeartbeat() {
    if (!this.info) return;
    clearTimeout(this._timers.heartbeat);
    // The server pushes a ping every `ping` seconds: silence past that plus a grace means a dead link.
    const limit = this.info.ping * 1000 + this.options.pingGrace;
    const ws = this._ws;
    this._timers.heartbeat = setTimeout(() => this._drop(ws, 1006, "no heartbeat from the server"), limit);
  }

  /** Give up on a socket that went silent, and reconnect. */
  _drop(ws, code, reason) {
    if (!ws || this._ws !== ws) return;
    this._lost(code, reason, true); // forgets the socket: its late onclose is ignored
    try { ws.close(); } catch { /* already closing */ }
  }

  // -- tokens --------------------------------------------------------------------

  _scheduleRefresh(expiresIn) {
    clearTimeout(this._timers.refresh);
    // With cookies the server refreshes the session itself (its refresh proxy).
    if (!expiresIn || this.options.refreshToken === null || (this.options.cookies && !this.options.token)) return;
    const delay = Math.max(1000, expiresIn * 1000 * this.options.refreshAt);
    this._timers.refresh = setTimeout(() => this.refresh().catch((err) => {
      this._report(err);
      // Try again while the token lasts; once it expires the server closes with 4003.
      const left = expiresIn * (1 - this.options.refreshAt);
      if (this.state === "connected" && left > 2) this._scheduleRefresh(left / this.options.refreshAt / 2);
    }), delay);
  }

  /** Get a fresh token (the `refreshToken` option, or POST /api/auth/refresh) and hand it to the connection. */
  async refresh() {
    const token = await this._fetchNewToken(this._token);
    this._token = token;
    this._emit("token", token);
    if (this.state === "connected") {
      const result = await this.call("refresh", { token });
      this._scheduleRefresh(result.expires_in);
      return result.expires_in;
    }
    return null;
  }

  async _fetchNewToken(old) {
    const custom = this.options.refreshToken;
    if (typeof custom === "function") return await custom(old);
    if (typeof this.options.token === "function") return await this.options.token();
    const base = this.url.replace(/^ws/, "http").replace(/\/ws$/, "");
    return (await refreshToken(old, { baseUrl: base })).token;
  }

  // -- calls -------------------------------------------------------------------------

  /**
   * Send any command (an application handler included) and resolve with its result.
   * While the client is (re)connecting the call waits for the connection, within `timeout`.
   */
  call(type, params = {}, { timeout } = {}) {
    const ms = timeout || this.options.timeout;
    if (this.state === "closed") return Promise.reject(new DisconnectedError(1000, "client closed", false));
    return new Promise((resolve, reject) => {
      const entry = { type, params, resolve, reject, ms, timer: null };
      if (this.state === "connected") {
        this._send(entry);
      } else {
        entry.timer = setTimeout(() => {
          this._waiting = this._waiting.filter((w) => w !== entry);
          reject(new CallTimeoutError(type, ms));
        }, ms);
        this._waiting.push(entry);
      }
    });
  }

  _send(entry) {
    clearTimeout(entry.timer);
    const id = this._nextId++;
    this._track(id, entry.type, entry.ms).then(entry.resolve, entry.reject);
    this._outbox.push({ id, type: entry.type, ...entry.params });
    if (!this._flushQueued) {
      this._flushQueued = true;
      queueMicrotask(() => this._flush());
    }
  }

  _track(id, type, ms) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new CallTimeoutError(type, ms));
      }, ms);
      this._pending.set(id, { resolve, reject, timer, type });
    });
  }

  _flush() {
    this._flushQueued = false;
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return;
    // Commands queued in one tick leave together: one frame, at most 100 commands each.
    while (this._outbox.length) {
      ws.send(this._codec.encodeFrame(this._outbox.splice(0, MAX_COMMANDS_PER_FRAME)));
    }
  }

  _dispatch(m) {
    if (m.id !== undefined && m.id !== null) {
      const p = this._pending.get(m.id);
      if (!p) return;
      this._pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.error) p.reject(new StagewireError(m.error.code, m.error.message, m.error));
      else p.resolve(m.result);
      return;
    }
    switch (m.type) {
      case "pub":
      case "join":
      case "leave": {
        const sub = this._subs.get(m.channel);
        // Channels the server subscribed us to (connect result `subscriptions`) come as "push".
        if (!sub) { if (this.info && this.info.subscriptions && m.channel in this.info.subscriptions) this._emit("push", m); break; }
        if (sub.closed) break;
        // The server sends the subscribe reply first, but its handler runs a few
        // microtasks later: keep what follows it in the same frame until then.
        if (sub.active) sub._push(m);
        else sub._early.push(m);
        break;
      }
      case "unsubscribe": {
        const sub = this._subs.get(m.channel);
        if (!sub || sub.closed) break;
        if (m.code >= 2500 && m.code < 3000) {
          // The server could not keep the channel's stream whole: subscribe again,
          // recovering from the last offset seen; onRecovery says whether all came back.
          sub.active = false;
          sub._early = [];
          this._subscribe(sub, true);
          break;
        }
        // The server ended the subscription (e.g. access lost): it will not come back by itself.
        sub.closed = true;
        sub.active = false;
        this._subs.delete(m.channel);
        sub._emit("onUnsubscribed", { channel: m.channel, reason: m.reason, code: m.code });
        break;
      }
      case "ping":
      case "disconnect":
        break;
      case "error":
        this._report(new StagewireError(m.error.code, m.error.message, m.error));
        break;
      default:
        this._emit("push", m);
    }
  }

  // -- channels --------------------------------------------------------------------------

  /**
   * Subscribe to `channel`; returns a Subscription at once (its `ready` promise
   * settles with the server's answer). Handlers: onPublication(pub),
   * onJoin(info), onLeave(info), onSubscribed(result), onRecovery(recovered,
   * result), onError(err). `since: {offset, epoch}` recovers from a saved position;
   * `recover: false` never asks for recovery (for ephemeral channels).
   */
  subscribe(channel, handlers = {}) {
    if (this._subs.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, handlers);
    this._subs.set(channel, sub);
    if (this.state === "connected") this._subscribe(sub, false);
    return sub;
  }

  /** The subscription of `channel`, if any. */
  subscription(channel) {
    return this._subs.get(channel) || null;
  }

  async _subscribe(sub, resubscribing) {
    // `recover: false` (ephemeral channels such as typing notices): a plain subscribe every time.
    const recover = sub.epoch !== null && sub.handlers.recover !== false;
    const params = recover ? { channel: sub.channel, recover: true, offset: sub.offset, epoch: sub.epoch } : { channel: sub.channel };
    let result;
    try {
      result = await this.call("subscribe", params);
    } catch (err) {
      if (err instanceof DisconnectedError || err instanceof CallTimeoutError || sub.closed) return null; // retried on the next connection
      if (err.temporary) {
        setTimeout(() => { if (!sub.closed && this.state === "connected" && !sub.active) this._subscribe(sub, resubscribing); }, 1000 + Math.random() * 1000);
        return null;
      }
      this._subs.delete(sub.channel);
      sub.closed = true;
      sub._settle.reject(err);
      sub._emit("onError", err);
      return null;
    }
    if (sub.closed) {
      // Unsubscribed while the subscribe was in flight: undo it on the server.
      this.call("unsubscribe", { channel: sub.channel }).catch(() => {});
      return null;
    }
    sub.epoch = result.epoch;
    if (recover) {
      sub.recovered = !!result.recovered;
      if (result.recovered) for (const pub of result.publications) sub._publication(pub, true);
    }
    // Live publications continue from the channel's current offset.
    sub.offset = result.offset;
    sub.active = true;
    const early = sub._early;
    sub._early = [];
    const info = { offset: result.offset, epoch: result.epoch, resubscribed: resubscribing, recovered: recover ? sub.recovered : undefined };
    sub._settle.resolve(info);
    sub._emit("onSubscribed", info);
    if (recover) sub._emit("onRecovery", sub.recovered, info);
    for (const m of early) sub._push(m);
    return { channel: sub.channel, recovered: recover ? sub.recovered : null };
  }

  /** Publish; resolves with `{offset, epoch}`. */
  publish(channel, data, { idempotencyKey } = {}) {
    const params = { channel, data };
    if (idempotencyKey) params.idempotency_key = idempotencyKey;
    return this.call("publish", params);
  }

  /** `{publications, offset, epoch}`; `since: {offset, epoch}`, `limit`, `reverse`. */
  history(channel, { since, limit, reverse } = {}) {
    const params = { channel };
    if (since) params.since = since;
    if (limit !== undefined) params.limit = limit;
    if (reverse) params.reverse = true;
    return this.call("history", params);
  }

  /** `{users: [{user, connections}]}` across the cluster. */
  presence(channel) {
    return this.call("presence", { channel });
  }

  /** `{clients, users}`. */
  presenceStats(channel) {
    return this.call("presence_stats", { channel });
  }

  /** Call `method` on the backend (the server's RPC proxy); resolves with its answer's `data`. */
  rpc(method, data = null, options) {
    return this.call("rpc", { method, data }, options).then((result) => result.data);
  }

  ping() {
    return this.call("ping");
  }
}

function wsUrl(url) {
  const here = typeof location !== "undefined" ? location : null;
  if (!url) {
    if (!here) throw new TypeError("url is required outside a browser page");
    return `${here.protocol === "https:" ? "wss" : "ws"}://${here.host}/ws`;
  }
  if (url.startsWith("/") && here) return `${here.protocol === "https:" ? "wss" : "ws"}://${here.host}${url}`;
  if (/^https?:/.test(url)) {
    const u = url.replace(/^http/, "ws").replace(/\/+$/, "");
    return u.endsWith("/ws") ? u : `${u}/ws`;
  }
  return url;
}

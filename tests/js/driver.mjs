// A Node process that drives real pusher-js (and laravel-echo) clients for the Python tests.
//
// Commands come one JSON object per line on stdin ({id, op, ...}); the answer
// to each is {id, result} or {id, error} on stdout, and everything the
// clients see is reported as it happens: {type: "event" | "state" | "auth" | "error", ...}.
// Channel and user authorization ask the test ({type: "auth", request}) and
// wait for its {op: "auth_reply", request, auth}, so the test signs with the
// official pusher server library.
import { createInterface } from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const Pusher = require("pusher-js");
const Echo = (await import("laravel-echo")).default;

const clients = new Map();   // name → Pusher
const echos = new Map();     // name → Echo
const pendingAuth = new Map();
let nextAuth = 0;

function out(message) { process.stdout.write(JSON.stringify(message) + "\n"); }

function relay(client, kind) {
  return (params, callback) => {
    const request = ++nextAuth;
    pendingAuth.set(request, callback);
    out({ type: "auth", client, kind, request, socket_id: params.socketId, channel: params.channelName });
  };
}

function options(name, o) {
  const opts = {
    cluster: "local", wsHost: o.host, wsPort: o.port, forceTLS: false, enabledTransports: ["ws"],
    disableStats: true, activityTimeout: o.activityTimeout || 120000,
  };
  if (o.authEndpoint) {
    opts.channelAuthorization = { endpoint: o.authEndpoint, transport: "ajax", headers: o.headers || {} };
    opts.userAuthentication = { endpoint: o.authEndpoint, transport: "ajax", headers: o.headers || {} };
  } else {
    opts.channelAuthorization = { customHandler: relay(name, "channel") };
    opts.userAuthentication = { customHandler: relay(name, "user") };
  }
  return opts;
}

function watch(name, pusher) {
  pusher.connection.bind("state_change", (s) => out({ type: "state", client: name, previous: s.previous, current: s.current }));
  pusher.connection.bind("error", (e) => out({ type: "error", client: name, error: e && e.error ? e.error : e }));
  pusher.user.bind_global((event, data) => out({ type: "user_event", client: name, event, data }));
}

function bindChannel(name, channel) {
  channel.bind_global((event, data, metadata) => {
    let payload = data;
    if (event === "pusher:subscription_succeeded" && data && data.members) {
      payload = { members: Object.keys(data.members).sort(), count: data.count, me: data.me };
    }
    out({ type: "event", client: name, channel: channel.name, event, data: payload, metadata: metadata || null });
  });
}

const ops = {
  connect({ client, key, ...o }) {
    const pusher = new Pusher(key, options(client, o));
    clients.set(client, pusher);
    watch(client, pusher);
    return {};
  },
  socket_id({ client }) { return clients.get(client).connection.socket_id; },
  subscribe({ client, channel }) { bindChannel(client, clients.get(client).subscribe(channel)); return {}; },
  bind({ client, channel, event }) {
    // bind_global sees no metadata; a bound callback does (user_id of client events).
    clients.get(client).channel(channel).bind(event, (data, metadata) =>
      out({ type: "bound", client, channel, event, data, metadata: metadata || null }));
    return {};
  },
  unsubscribe({ client, channel }) { clients.get(client).unsubscribe(channel); return {}; },
  trigger({ client, channel, event, data }) { return clients.get(client).channel(channel).trigger(event, data); },
  members({ client, channel }) {
    const members = clients.get(client).channel(channel).members;
    const list = [];
    members.each((m) => list.push({ id: m.id, info: m.info }));
    return { count: members.count, members: list.sort((a, b) => (a.id < b.id ? -1 : 1)) };
  },
  signin({ client }) { clients.get(client).signin(); return {}; },
  disconnect({ client }) { clients.get(client).disconnect(); return {}; },
  reconnect({ client }) { clients.get(client).connect(); return {}; },
  auth_reply({ request, auth, error }) {
    const callback = pendingAuth.get(request);
    pendingAuth.delete(request);
    if (error) callback(new Error(error), null); else callback(null, auth);
    return {};
  },
  echo_connect({ client, key, ...o }) {
    const pusher = new Pusher(key, options(client, o));
    clients.set(client, pusher);
    watch(client, pusher);
    echos.set(client, new Echo({ broadcaster: "pusher", client: pusher }));
    return {};
  },
  echo_listen({ client, channel, event, kind }) {
    const echo = echos.get(client);
    const ch = kind === "private" ? echo.private(channel) : echo.channel(channel);
    ch.listen(event, (data) => out({ type: "echo", client, channel, event, data }));
    return {};
  },
  echo_whisper({ client, channel, event, data }) { echos.get(client).private(channel).whisper(event, data); return {}; },
  echo_listen_whisper({ client, channel, event }) {
    echos.get(client).private(channel).listenForWhisper(event, (data) => out({ type: "echo", client, channel, event: "whisper:" + event, data }));
    return {};
  },
  echo_join({ client, channel }) {
    echos.get(client).join(channel)
      .here((users) => out({ type: "echo", client, channel, event: "here", data: users }))
      .joining((user) => out({ type: "echo", client, channel, event: "joining", data: user }))
      .leaving((user) => out({ type: "echo", client, channel, event: "leaving", data: user }));
    return {};
  },
  echo_leave({ client, channel }) { echos.get(client).leave(channel); return {}; },
};

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  try {
    const result = ops[command.op](command);
    out({ id: command.id, result: result === undefined ? null : result });
  } catch (e) {
    out({ id: command.id, error: String(e && e.stack ? e.stack : e) });
  }
});
lines.on("close", () => {
  for (const pusher of clients.values()) pusher.disconnect();
  process.exit(0);
});
out({ type: "ready" });

// TypeScript typings of the browser client, static/stagewire.js (docs/client-js.md).
//
//   import { Stagewire, login } from "/static/stagewire.js";
//
// Checked by `tsc --noEmit` in the test suite (tests/static/test_typings.py),
// which also checks that every export of stagewire.js is declared here.

/** Whether a connection closed with `code` should be reopened (docs/protocol.md, close codes). */
export function shouldReconnect(code: number): boolean;

/** Milliseconds before reconnect attempt `attempt` (0 first): random in [0, min(maxDelay, minDelay·2^attempt)]. */
export function backoffDelay(attempt: number, minDelay: number, maxDelay: number): number;

/** Milliseconds a `disconnect` push's `reconnect_after: [min_ms, max_ms]` asks for (random in it); null if malformed. */
export function hintedDelay(hint: unknown): number | null;

/** The server refused a command or an HTTP request: `code` is the numeric error code. */
export class StagewireError extends Error {
  constructor(code: number, message: string, options?: { fields?: Record<string, string> | null; temporary?: boolean; status?: number | null });
  readonly name: "StagewireError";
  /** The error code (docs/protocol.md, error codes), e.g. 103 permission denied. */
  code: number;
  /** A message per invalid field, when the request had some. */
  fields: Record<string, string> | null;
  /** The same call may succeed later. */
  temporary: boolean;
  /** The HTTP status, for errors of HTTP calls. */
  status: number | null;
}

/** The connection ended before a reply came, or the client was closed. */
export class DisconnectedError extends Error {
  constructor(code: number, reason: string, reconnect: boolean);
  readonly name: "DisconnectedError";
  code: number;
  reason: string;
  reconnect: boolean;
}

/** No reply within the call's timeout. */
export class CallTimeoutError extends Error {
  constructor(type: string, ms: number);
  readonly name: "CallTimeoutError";
}

/** `{id, username, role}` of an account. */
export interface User {
  id: number;
  username: string;
  role: "user" | "admin";
}

/** What login and refresh answer. */
export interface Session {
  token: string;
  expires_in: number;
  user: User;
}

export interface HttpOptions {
  /** The server's base URL; the page's origin by default. */
  baseUrl?: string;
}

/** `POST /api/auth/register`: resolves to `{user}`; rejects with a StagewireError (`fields` on 422). */
export function register(username: string, password: string, options?: HttpOptions): Promise<{ user: User }>;
/** `POST /api/auth/login`. */
export function login(username: string, password: string, options?: HttpOptions): Promise<Session>;
/** `POST /api/auth/refresh`: a new token for the same session. */
export function refreshToken(token: string, options?: HttpOptions): Promise<Session>;
/** `POST /api/auth/logout`: revokes the session; its connections are closed with 4503. */
export function logout(token: string, options?: HttpOptions): Promise<Record<string, never>>;

/** A channel's position: the offset of its newest publication and its epoch. */
export interface Position {
  offset: number;
  epoch: string;
}

/** A publication as `onPublication` receives it. */
export interface Publication<T = unknown> {
  channel: string;
  offset: number;
  data: T;
  /** `{user}` when a client published; `{event}` when a Pusher event or a named server publication; null otherwise. */
  info: Record<string, unknown> | null;
  /** True when it was replayed by a recovery after a reconnect. */
  recovered: boolean;
}

/** The `info` of join and leave pushes. */
export interface PresenceInfo {
  user: string;
  [key: string]: unknown;
}

/** What `ready` resolves with and `onSubscribed` receives. */
export interface SubscribedInfo extends Position {
  /** True when this was a resubscribe after a reconnect. */
  resubscribed: boolean;
  /** The outcome of recovery, when it was asked for. */
  recovered?: boolean;
}

export interface SubscriptionHandlers<T = unknown> {
  onPublication?(pub: Publication<T>): void;
  onJoin?(info: PresenceInfo): void;
  onLeave?(info: PresenceInfo): void;
  onSubscribed?(info: SubscribedInfo): void;
  onRecovery?(recovered: boolean, info: SubscribedInfo): void;
  /** The server ended the subscription (e.g. the user lost access). */
  /** The server ended the subscription for good (code 2000-2499); 2500-2999 resubscribe by themselves. */
  onUnsubscribed?(event: { channel: string; reason: string; code: number }): void;
  onError?(err: StagewireError): void;
  /** Recover from a saved position on the first subscribe. */
  since?: Position;
  /** `false`: never ask for recovery (ephemeral channels). */
  recover?: boolean;
}

/** One channel subscription; it survives reconnects. */
export class Subscription<T = unknown> {
  readonly client: Stagewire;
  readonly channel: string;
  readonly handlers: SubscriptionHandlers<T>;
  offset: number | null;
  epoch: string | null;
  /** The result of the last recovery; null until one happened. */
  recovered: boolean | null;
  /** The server has confirmed it on the current connection. */
  active: boolean;
  closed: boolean;
  /** Settles with the server's first answer. */
  readonly ready: Promise<SubscribedInfo>;
  /** The last position seen, to resume from, or null. */
  readonly position: Position | null;
  /** Stop receiving; resolves once the server has confirmed (or at once when offline). */
  unsubscribe(): Promise<void>;
}

export type ConnectionState = "idle" | "connecting" | "connected" | "reconnecting" | "closed";

/** The `connect` result. */
export interface ConnectInfo {
  client: string;
  user: User;
  ping: number;
  expires_in: number;
  node: string;
}

export interface StagewireOptions {
  /** A token, or a function that gives one (called on every connect). */
  token: string | (() => string | Promise<string>);
  /** ws(s):// or http(s):// URL, with or without /ws; this page's host by default. */
  url?: string | null;
  /** How to get a fresh token before it expires; null: never refresh. */
  refreshToken?: ((oldToken: string) => string | Promise<string>) | null;
  encoding?: "json" | "msgpack";
  /** Reconnect backoff bounds, in milliseconds. */
  minDelay?: number;
  maxDelay?: number;
  /** Milliseconds a call waits for its reply. */
  timeout?: number;
  /** Milliseconds of silence, beyond the server's ping interval, before the connection counts as dead. */
  pingGrace?: number;
  /** Refresh the token when this fraction of its life has passed. */
  refreshAt?: number;
  /** A WebSocket implementation (Node, tests); the global one by default. */
  WebSocket?: unknown;
}

export interface StagewireEvents {
  state: { state: ConnectionState; previous: ConnectionState };
  connect: ConnectInfo & { reconnected: boolean };
  disconnect: { code: number; reason: string; reconnect: boolean };
  recovery: { recovered: boolean; channels: Record<string, boolean | null> };
  token: string;
  push: Record<string, unknown> & { type: string };
  error: Error;
}

/** A Stagewire connection that keeps itself open. */
export class Stagewire {
  constructor(options: StagewireOptions);
  readonly options: Required<Omit<StagewireOptions, "url" | "refreshToken" | "WebSocket">> & StagewireOptions;
  readonly url: string;
  state: ConnectionState;
  /** The last connect result, or null. */
  info: ConnectInfo | null;

  /** Listen to an event; returns a function that removes the listener. */
  on<E extends keyof StagewireEvents>(event: E, fn: (value: StagewireEvents[E]) => void): () => void;
  /** Open the connection; resolves with the connect result. */
  connect(): Promise<ConnectInfo>;
  /** Close for good: no reconnect. */
  disconnect(): void;
  /** Get a fresh token and hand it to the connection: its new `expires_in`, or null when offline. */
  refresh(): Promise<number | null>;
  /** Send any command (an application handler included) and resolve with its result. */
  call<R = unknown>(type: string, params?: Record<string, unknown>, options?: { timeout?: number }): Promise<R>;
  /** Subscribe; returns the Subscription at once. */
  subscribe<T = unknown>(channel: string, handlers?: SubscriptionHandlers<T>): Subscription<T>;
  /** The subscription of `channel`, if any. */
  subscription(channel: string): Subscription | null;
  publish(channel: string, data: unknown, options?: { idempotencyKey?: string }): Promise<Position>;
  history<T = unknown>(channel: string, options?: { since?: Position; limit?: number; reverse?: boolean }):
    Promise<{ publications: Array<{ offset: number; data: T; info?: Record<string, unknown> }> } & Position>;
  presence(channel: string): Promise<{ users: Array<{ user: string; connections: number }> }>;
  presenceStats(channel: string): Promise<{ clients: number; users: number }>;
  ping(): Promise<Record<string, never>>;
}

/**
 * @module headers
 * Pure header handling shared by the primary and the mirrors: what never crosses the proxy
 * (hop-by-hop, Cloudflare's edge fields), the forwarding fields (X-Forwarded-*, Forwarded,
 * X-Real-IP), and HTTPRoute-style set/add/remove.
 */
/**
 * The header that marks a mirrored copy. Only a signed marker (see `headers/marker`) stops a
 * request from being mirrored again; whatever a client sends under this name is dropped.
 */
export const MIRROR_MARKER = "x-edge-mirror";
/** Counts edge-mirror hops on the primary leg so that a request routed back to itself ends. */
export const HOP_HEADER = "x-edge-mirror-hops";
/**
 * Names each durable copy (`<request id>;mirror=<mirror>`), the same on every delivery of it, so
 * that a receiver can drop a copy it has had: delivery is at least once. Never the client's to
 * send: a receiver that deduplicates on it would drop real copies.
 */
export const COPY_ID_HEADER = "x-edge-mirror-id";
export const MAX_HOPS = 4;

/** RFC 9110 §7.6.1 connection-specific fields, plus the proxy-era ones still seen in the wild. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Fields the runtime writes from the URL and the body it sends; a Worker's own are not used. */
const SET_BY_RUNTIME = new Set(["host", "content-length", "transfer-encoding"]);

/**
 * What `dropUnforwardable` removes by name. The marker is not hop-by-hop, but never the client's
 * to send: see MIRROR_MARKER.
 */
const UNFORWARDABLE = new Set([...HOP_BY_HOP, ...SET_BY_RUNTIME, MIRROR_MARKER, COPY_ID_HEADER]);

/**
 * The hop count a request arrived with, clamped to 0…MAX_HOPS: a client may make its own
 * request fail early (any value ≥ MAX_HOPS), never let a loop run longer (`-16`, `1e9`, `x`).
 */
export function hopsSoFar(headers: Headers): number {
  const value = headers.get(HOP_HEADER);
  if (value === null) return 0;
  const hops = Number.parseInt(value, 10);
  return hops > 0 ? Math.min(hops, MAX_HOPS) : 0;
}

/**
 * A WebSocket handshake (RFC 6455 §4.1): a GET carrying `Upgrade: websocket`,
 * `Connection: upgrade` and `Sec-WebSocket-Key`. Only a handshake keeps `Upgrade` on its way to
 * the primary: workerd's `fetch` turns any request that carries `Upgrade: websocket` into a
 * WebSocket handshake, a GET without a body, so a POST that kept it would reach the primary as a
 * different request. Every other request is served (and mirrored) as what it is, its `Upgrade`
 * and `Connection` dropped as hop-by-hop, as is any upgrade other than WebSocket, which a proxy
 * that does not speak the protocol must serve as plain HTTP. The method is read first: a request
 * of any other method costs no header lookup.
 */
export function isWebSocketUpgrade(method: string, headers: Headers): boolean {
  return (
    method === "GET" &&
    upgradesToWebSocket(headers.get("upgrade"), headers.get("connection")) &&
    headers.has("sec-websocket-key")
  );
}

function upgradesToWebSocket(upgrade: string | null, connection: string | null): boolean {
  if (upgrade === null || connection === null || upgrade.trim().toLowerCase() !== "websocket") return false;
  return /(^|,)\s*upgrade\s*(,|$)/i.test(connection);
}

/** Connection options that name no header field; anything else in `Connection` names one to drop. */
const CONNECTION_OPTIONS = new Set(["keep-alive", "close", "upgrade"]);

/** The fields a `Connection` header names beyond its usual options, or undefined when none. */
function namedByConnection(connection: string | null): Set<string> | undefined {
  if (connection === null || CONNECTION_OPTIONS.has(connection.toLowerCase())) return undefined;
  let named: Set<string> | undefined;
  for (const raw of connection.split(",")) {
    const token = raw.trim().toLowerCase();
    if (!token || CONNECTION_OPTIONS.has(token)) continue;
    named ??= new Set();
    named.add(token);
  }
  return named;
}

/**
 * `cf-*` fields belong to Cloudflare's edge (`cf-connecting-ip`, `cf-ray`, `cf-ipcountry`, …), and
 * the edge sets its own on the way to an origin. `cf-access-*` are the exception: Cloudflare
 * Access hands the origin its signed assertion (`Cf-Access-Jwt-Assertion`) and the user's email
 * in them, and clients send service-token credentials in them; an origin that checks the
 * assertion refuses every request that arrives without it.
 */
function isEdgeField(name: string): boolean {
  return name.startsWith("cf-") && !name.startsWith("cf-access-");
}

/**
 * The forwarding fields `setForwarded` must read before it changes them, one bit each, as
 * `dropUnforwardable` finds them: a request without them costs it no lookup.
 */
export const Carried = { xForwardedFor: 1, forwarded: 2, xRealIp: 4 } as const;
const CARRIED_BY_NAME = new Map<string, number>([
  ["x-forwarded-for", Carried.xForwardedFor],
  ["forwarded", Carried.forwarded],
  ["x-real-ip", Carried.xRealIp],
]);

/**
 * Removes from `headers` everything that must not be forwarded: hop-by-hop fields, the fields
 * the `Connection` header names, the fields of Cloudflare's edge (see `isEdgeField`), and the
 * mirror marker. A WebSocket handshake (see `isWebSocketUpgrade`; `method` is the request's)
 * keeps `Upgrade: websocket` and `Connection: upgrade`. Returns which forwarding fields the
 * request carries (`Carried` bits), for `setForwarded`.
 *
 * `headers` is the primary request's own copy of the client's, which `new Request` makes inside
 * the runtime. This runs for every request of the zone, and every call on a `Headers` crosses
 * into the runtime: so one pass over the names, a `get` only when `Connection` is there (and of
 * `Upgrade` only on a GET that has it and a `Sec-WebSocket-Key`), and a `delete` only for what
 * is found. (Appending the kept fields one by one to a new `Headers` cost about a microsecond
 * per field, and `fetch` then copied them all once more.)
 */
export function dropUnforwardable(headers: Headers, method: string): number {
  const names = [...headers.keys()];
  const drop: string[] = [];
  let carried = 0;
  for (const name of names) {
    if (UNFORWARDABLE.has(name) || isEdgeField(name)) drop.push(name);
    else carried |= CARRIED_BY_NAME.get(name) ?? 0;
  }
  let webSocket = false;
  if (drop.includes("connection")) {
    const connection = headers.get("connection");
    // Only names that are there: a token that is no header name would make `delete` throw.
    for (const name of namedByConnection(connection) ?? []) if (names.includes(name)) drop.push(name);
    webSocket =
      method === "GET" &&
      drop.includes("upgrade") &&
      names.includes("sec-websocket-key") &&
      upgradesToWebSocket(headers.get("upgrade"), connection);
  }
  for (const name of drop) headers.delete(name);
  if (webSocket) {
    headers.set("upgrade", "websocket");
    headers.set("connection", "upgrade");
  }
  return carried;
}

export interface ForwardedFrom {
  host: string;
  proto: string;
  clientIp: string | null;
}

/** Reads where the request came from before any header is changed. */
export function forwardedFrom(request: Request, url: URL): ForwardedFrom {
  return {
    host: url.host,
    proto: url.protocol.slice(0, -1),
    clientIp: request.headers.get("cf-connecting-ip"),
  };
}

/**
 * The forwarding fields, by one rule. A field that lists the hops a request took
 * (`X-Forwarded-For`, `Forwarded`) keeps the client's entries and gets edge-mirror's own last,
 * where an origin that trusts edge-mirror (and nothing before it) must read; a field that holds
 * one value (`X-Forwarded-Host`, `X-Forwarded-Proto`, `X-Real-IP`) is edge-mirror's alone, and a
 * client's own value never passes. `Forwarded` gets its element (`for=…;host=…;proto=…`, RFC 7239)
 * only when the client sent one, so that an origin reading its last element never reads the
 * client's; without one, the X-Forwarded-* fields say the same, and a request costs no field more.
 * `carried` is what `dropUnforwardable` found.
 *
 * What Cloudflare's edge does (developers.cloudflare.com/fundamentals/reference/http-headers/,
 * "CF-Connecting-IP in Worker subrequests", "X-Forwarded-For", "X-Forwarded-Proto"): a Worker's
 * request carries `CF-Connecting-IP`, the client's address, and `X-Forwarded-Proto` and
 * `X-Real-IP` set by the edge over whatever the client sent (cloudflare-docs pull request 5871
 * lists a Worker's incoming headers: no `X-Forwarded-For` when the client sent none). To a
 * client's `X-Forwarded-For` the edge appends the address that connected to it, the client's; a
 * Worker handed such a field finds the client last already, so the address is appended only
 * when it is not the last entry, and the client is never listed twice. On the Worker's
 * subrequest the edge sets `CF-Connecting-IP` again, while `X-Real-IP` is the Worker's to change,
 * and on a subrequest to the same zone the edge derives `CF-Connecting-IP` from it: so
 * `X-Real-IP` is set from `CF-Connecting-IP`, or removed when the address is not known (a
 * request that did not come through the edge).
 */
export function setForwarded(headers: Headers, from: ForwardedFrom, carried: number): void {
  headers.set("x-forwarded-host", from.host);
  headers.set("x-forwarded-proto", from.proto);
  const client = from.clientIp;
  if (client) {
    const listed = carried & Carried.xForwardedFor ? headers.get("x-forwarded-for") : null;
    if (listed === null) headers.set("x-forwarded-for", client);
    else if (lastEntry(listed) !== client) headers.set("x-forwarded-for", `${listed}, ${client}`);
    // The edge's X-Real-IP is the client's address already: then it is only read.
    if (!(carried & Carried.xRealIp) || headers.get("x-real-ip") !== client) headers.set("x-real-ip", client);
  } else if (carried & Carried.xRealIp) {
    headers.delete("x-real-ip");
  }
  if (carried & Carried.forwarded) {
    const own = forwardedElement(from);
    const listed = headers.get("forwarded");
    headers.set("forwarded", listed ? `${listed}, ${own}` : own);
  }
}

/** The last entry of a comma-separated list, trimmed. */
function lastEntry(list: string): string {
  return list.slice(list.lastIndexOf(",") + 1).trim();
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** edge-mirror's element of `Forwarded` (RFC 7239 §4): `for` only when the client's address is known. */
export function forwardedElement(from: ForwardedFrom): string {
  const hostAndProto = `host=${forwardedValue(from.host)};proto=${forwardedValue(from.proto)}`;
  return from.clientIp ? `for=${forwardedNode(from.clientIp)};${hostAndProto}` : hostAndProto;
}

/** RFC 7239 §6: an IPv6 address is bracketed, and quoted, since `[`, `]` and `:` are no token characters. */
function forwardedNode(address: string): string {
  return address.includes(":") ? `"[${address}]"` : forwardedValue(address);
}

/** A token as it is, anything else (a host with a port, say) as a quoted-string (RFC 9110 §5.6.4). */
function forwardedValue(value: string): string {
  return TOKEN.test(value) ? value : `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/**
 * Why a route's `requestHeaders` may not set, add or remove the field `name`, or undefined when
 * it may: the runtime writes it, it describes one connection and never crosses a proxy, the edge
 * writes it, or it is edge-mirror's own (a route that set the hop count would switch loop
 * protection off). The lists are the ones `dropUnforwardable` drops by.
 */
export function headerChangeRefusal(name: string): string | undefined {
  const field = name.toLowerCase();
  if (SET_BY_RUNTIME.has(field)) return "is set by the runtime and cannot be changed";
  if (HOP_BY_HOP.has(field)) return "is a hop-by-hop field (it describes one connection) and cannot be changed";
  if (field === MIRROR_MARKER) return "is edge-mirror's mirror marker and cannot be changed";
  if (field === HOP_HEADER) return "is edge-mirror's loop protection and cannot be changed";
  if (field === COPY_ID_HEADER)
    return "is edge-mirror's copy id, which receivers deduplicate on, and cannot be changed";
  if (isEdgeField(field)) return "is set by Cloudflare's edge and cannot be changed (cf-access-* fields can)";
  return undefined;
}

/**
 * The names `headerChangeRefusal` refuses, as a regular expression for the policy's JSON Schema,
 * so that editors flag them too: the same lists, in any letter case.
 */
export function refusedHeaderPattern(): string {
  const anyCase = (text: string) => text.replace(/[a-z]/g, (c) => `[${c}${c.toUpperCase()}]`);
  const names = new Set([...SET_BY_RUNTIME, ...HOP_BY_HOP, MIRROR_MARKER, HOP_HEADER, COPY_ID_HEADER]);
  const exact = [...names].map(anyCase).join("|");
  return `^(?:${exact})$|^${anyCase("cf-")}(?!${anyCase("access-")})`;
}

/**
 * A route's or a mirror's changes to the request's headers, as applied here: the policy's
 * `HeaderOps` (src/policy), validated against this module's refusals before it gets here.
 */
export interface HeaderChanges {
  readonly set: Readonly<Record<string, string>>;
  readonly add: Readonly<Record<string, string>>;
  readonly remove: readonly string[];
}

/** HTTPRoute semantics: `set` overwrites, `add` appends to an existing value with ",", `remove` deletes. */
export function applyHeaderOps(headers: Headers, ops: HeaderChanges | undefined): void {
  if (!ops) return;
  for (const [name, value] of Object.entries(ops.set)) headers.set(name, value);
  for (const [name, value] of Object.entries(ops.add)) {
    const prior = headers.get(name);
    headers.set(name, prior === null ? value : `${prior},${value}`);
  }
  for (const name of ops.remove) headers.delete(name);
}

/**
 * Envoy's shadow convention: `localhost:10000` → `localhost-shadow:10000`. The suffix goes
 * before the port; an empty suffix leaves the host unchanged.
 */
export function shadowHost(host: string, suffix: string): string {
  if (!suffix) return host;
  const portAt = host.startsWith("[") ? host.indexOf("]:") + 1 : host.lastIndexOf(":");
  return portAt > 0 ? `${host.slice(0, portAt)}${suffix}${host.slice(portAt)}` : `${host}${suffix}`;
}

/**
 * @module headers
 * Pure header handling shared by the primary and the mirrors: what never crosses the proxy
 * (hop-by-hop, Cloudflare-internal), the X-Forwarded-* set, and HTTPRoute-style set/add/remove.
 */
import type { HeaderOps } from "../policy/index.js";

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
  "host",
  "content-length",
]);

/** The header that marks a mirrored copy; a request carrying it is never mirrored again. */
export const MIRROR_MARKER = "x-edge-mirror";
/** Counts edge-mirror hops on the primary leg so that a request routed back to itself ends. */
export const HOP_HEADER = "x-edge-mirror-hops";
export const MAX_HOPS = 4;

/**
 * Copies `incoming` minus everything that must not be forwarded: hop-by-hop fields, the
 * fields the `Connection` header names, and `cf-*` fields that belong to Cloudflare's edge.
 */
export function forwardableHeaders(incoming: Headers): Headers {
  const named = new Set(
    (incoming.get("connection") ?? "")
      .split(",")
      .map((token) => token.trim().toLowerCase())
      .filter(Boolean),
  );
  const out = new Headers();
  for (const [name, value] of incoming) {
    if (HOP_BY_HOP.has(name) || named.has(name) || name.startsWith("cf-")) continue;
    out.append(name, value);
  }
  return out;
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

/** Sets X-Forwarded-Host/-Proto and appends the client to X-Forwarded-For. */
export function setForwarded(headers: Headers, from: ForwardedFrom): void {
  headers.set("x-forwarded-host", from.host);
  headers.set("x-forwarded-proto", from.proto);
  if (from.clientIp) {
    const prior = headers.get("x-forwarded-for");
    headers.set("x-forwarded-for", prior ? `${prior}, ${from.clientIp}` : from.clientIp);
  }
}

/** HTTPRoute semantics: `set` overwrites, `add` appends to an existing value with ",", `remove` deletes. */
export function applyHeaderOps(headers: Headers, ops: HeaderOps | undefined): void {
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

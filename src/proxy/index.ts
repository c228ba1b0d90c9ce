/**
 * @module proxy
 * The primary leg: choose the origin (weighted backends, PRIMARY_ORIGIN, or the request URL),
 * forward with the path and query byte-exact, and turn timeouts and network failures into
 * 504/502. Nothing mirror-related ever runs here.
 */
import { UpstreamError } from "../errors/index.js";
import type { Backend, Route } from "../policy/index.js";

/** `https://h:1/a%2Fb?x=1#f` → `/a%2Fb?x=1`, copied from the URL string rather than re-serialised. */
export function rawPathAndQuery(url: string): string {
  const afterScheme = url.indexOf("//") + 2;
  const pathAt = url.indexOf("/", afterScheme);
  const queryAt = url.indexOf("?", afterScheme);
  const start = pathAt === -1 ? queryAt : queryAt === -1 ? pathAt : Math.min(pathAt, queryAt);
  if (start === -1) return "/";
  const hashAt = url.indexOf("#", start);
  const tail = hashAt === -1 ? url.slice(start) : url.slice(start, hashAt);
  return tail.startsWith("/") ? tail : `/${tail}`;
}

/** HTTPRoute-style weighted choice; weight 0 backends never receive traffic. */
export function pickBackend(backends: readonly Backend[], random: () => number): Backend | undefined {
  let total = 0;
  for (const b of backends) total += b.weight;
  if (total <= 0) return undefined;
  let point = random() * total;
  for (const b of backends) {
    point -= b.weight;
    if (point < 0 && b.weight > 0) return b;
  }
  return backends.findLast((b) => b.weight > 0);
}

let fallback = { raw: "", origin: "" };

/** PRIMARY_ORIGIN is parsed once per isolate, not per request. */
function fallbackOriginOf(raw: string): string {
  if (fallback.raw !== raw) fallback = { raw, origin: new URL(raw).origin };
  return fallback.origin;
}

/** Resolves the primary's origin, or throws an `UpstreamError` the client will see. */
export function primaryOrigin(
  route: Route | undefined,
  clusters: ReadonlyMap<string, string>,
  fallbackOrigin: string | undefined,
  requestUrl: URL,
  random: () => number,
): string {
  if (route?.backends) {
    const backend = pickBackend(route.backends, random);
    if (!backend) throw new UpstreamError("no_backend", `route "${route.id}" has no backend with weight > 0`);
    if (backend.origin !== undefined) return backend.origin;
    const origin = clusters.get(backend.cluster as string);
    if (origin === undefined) {
      throw new UpstreamError("unknown_cluster", `route "${route.id}" names undefined cluster "${backend.cluster}"`);
    }
    return origin;
  }
  return fallbackOrigin ? fallbackOriginOf(fallbackOrigin) : requestUrl.origin;
}

export interface PrimaryRequest {
  url: string;
  method: string;
  headers: Headers;
  body: ReadableStream | null;
  timeoutMs: number;
}

/**
 * Resolves with the primary's response as soon as its headers arrive; the body then streams
 * to the client untouched. The timeout covers the wait for those headers.
 */
export async function forwardToPrimary(req: PrimaryRequest): Promise<Response> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, req.timeoutMs);
  try {
    return await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      redirect: "manual",
      signal: controller.signal,
    });
  } catch (err) {
    if (timedOut) {
      throw new UpstreamError("primary_timeout", `primary did not answer within ${req.timeoutMs} ms`);
    }
    throw new UpstreamError("primary_unreachable", `primary unreachable: ${(err as Error).message ?? String(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

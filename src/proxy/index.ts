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

/** After the primary fails, how long the rest of the client's upload may take to read and drop. */
export const DRAIN_AFTER_FAILURE_MS = 5_000;

/**
 * The client's body on its way to the primary, read chunk by chunk by the worker (one chunk
 * in flight, never buffered) and written to a stream the worker owns, which is what `fetch`
 * gets. Handing `request.body` itself to `fetch` gives it to the runtime: when the primary
 * fails, the rest of the upload is never read, and workerd closes a connection whose request
 * body was left unread (more than 64 KiB of it) without saying so in the response, so a client
 * still uploading, or the next request on that keep-alive connection, gets a reset instead of
 * the 502. (`pipeTo` does not help: the runtime's native pipe tears the source down with the
 * failed fetch.) With the relay, `discardRest` reads the rest of the upload and drops it, and
 * the connection survives.
 */
export interface RelayedBody {
  /** What `fetch` sends: Content-Length when the client declared one, chunked otherwise. */
  readonly stream: ReadableStream;
  /** Settles once the client's body has been read to its end (forwarded or dropped) or abandoned. */
  readonly done: Promise<void>;
  /** Stops forwarding and reads the rest of the upload, dropping it; gives up after `limitMs`. */
  discardRest(limitMs: number): Promise<void>;
}

/**
 * The runtime itself reads and drops up to 64 KiB of a body the worker left unread, so a body
 * declared at most this long keeps its connection without a relay and goes to `fetch` as is.
 */
export const RUNTIME_DRAINS_BYTES = 60 * 1024;

/** Read size of the relay: the default reader would hand the worker 4 KiB chunks. */
const RELAY_CHUNK_BYTES = 256 * 1024;

/** BYOB reads in large chunks where the stream allows it (the runtime's own bodies do). */
function chunkReader(source: ReadableStream) {
  try {
    const reader = source.getReader({ mode: "byob" });
    // The previous chunk's buffer, once written, is read into again: a fresh 256 KiB buffer per
    // read would leave a 100 MB upload's worth of garbage for the collector to catch up with.
    const read = (spare?: ArrayBufferLike) =>
      reader.read(new Uint8Array(spare?.byteLength === RELAY_CHUNK_BYTES ? spare : new ArrayBuffer(RELAY_CHUNK_BYTES)));
    return { reader, read };
  } catch {
    // A stream built in JavaScript (tests, or a tee of one) is not a byte stream.
    const reader = source.getReader();
    return {
      reader,
      read: (_spare?: ArrayBufferLike) => reader.read() as Promise<ReadableStreamReadResult<Uint8Array>>,
    };
  }
}

export function relayBody(source: ReadableStream, contentLength: string | null): RelayedBody {
  const length = contentLength === null ? Number.NaN : Number(contentLength);
  const declared = Number.isSafeInteger(length) && length >= 0;
  if (declared && length <= RUNTIME_DRAINS_BYTES) {
    return { stream: source, done: Promise.resolve(), discardRest: async () => {} };
  }
  const { readable, writable } = declared ? new FixedLengthStream(length) : new IdentityTransformStream();
  const writer = writable.getWriter();
  const { reader, read } = chunkReader(source);
  let forwarding = true;
  const stopForwarding = (reason?: unknown) => {
    if (!forwarding) return;
    forwarding = false;
    writer.abort(reason).catch(() => {});
  };
  const done = (async () => {
    try {
      let spare: ArrayBufferLike | undefined;
      for (;;) {
        const { done: end, value } = await read(spare);
        if (end) break;
        // A write fails once the primary stops reading (it failed or answered early): keep
        // reading the client's body and drop it from then on.
        if (forwarding) await writer.write(value).catch(stopForwarding);
        spare = value.buffer;
      }
      if (forwarding) await writer.close().catch(() => {});
    } catch (err) {
      // The client's upload broke off: the primary must not take a truncated body as complete.
      stopForwarding(err);
    }
  })();
  return {
    stream: readable,
    done,
    async discardRest(limitMs) {
      stopForwarding(new Error("primary failed"));
      let timer = 0;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), limitMs);
      });
      // Too slow an upload is abandoned: the runtime then closes the connection, as before.
      if ((await Promise.race([done, late])) === "late") await reader.cancel().catch(() => {});
      clearTimeout(timer);
    },
  };
}

export interface PrimaryRequest {
  url: string;
  method: string;
  headers: Headers;
  body: RelayedBody | null;
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
      body: req.body?.stream ?? null,
      redirect: "manual",
      signal: controller.signal,
    });
  } catch (err) {
    // Read the rest of the client's upload before answering, so that its connection survives.
    await req.body?.discardRest(DRAIN_AFTER_FAILURE_MS);
    if (timedOut) {
      throw new UpstreamError("primary_timeout", `primary did not answer within ${req.timeoutMs} ms`);
    }
    throw new UpstreamError("primary_unreachable", `primary unreachable: ${(err as Error).message ?? String(err)}`);
  } finally {
    clearTimeout(timer);
  }
}

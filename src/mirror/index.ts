/**
 * @module mirror
 * Sends the planned copies. Runs only inside `ctx.waitUntil`: the body copy is read from its
 * tee branch once, up to the route's cap, and shared by every mirror; each mirror has its own
 * timeout (never the client's signal) and its response body is cancelled unread.
 */
import { applyHeaderOps, HOP_HEADER, MIRROR_MARKER, shadowHost } from "../headers/index.js";
import type { MirrorErrorKind, OutcomeSink } from "../record/index.js";
import { MirrorBreaker } from "./breaker.js";
import type { MirrorTarget } from "./plan.js";

export { isSampled, type MirrorPlan, type MirrorTarget, planMirrors } from "./plan.js";

/** The mirror's copy of the request body, decided before anything is buffered. */
export type MirrorBody =
  | { kind: "none" }
  | { kind: "stream"; stream: ReadableStream<Uint8Array>; cap: number }
  | { kind: "too_large"; declared: number; cap: number };

export interface MirrorJob {
  routeId: string;
  requestId: string;
  method: string;
  pathAndQuery: string;
  /** Headers as sent to the primary (route changes applied), before mirror-only changes. */
  headers: Headers;
  /** The client-facing host, for `X-Forwarded-Host: <host><suffix>`. */
  host: string;
  hops: number;
  targets: readonly MirrorTarget[];
  body: MirrorBody;
  sink: OutcomeSink;
  /** Isolate-wide ejection state; tests pass their own. */
  breaker?: MirrorBreaker;
}

const isolateBreaker = new MirrorBreaker();

type BodyRead =
  | { ok: true; bytes: Uint8Array | null }
  | { ok: false; reason: "body_too_large" | "body_read_failed"; detail: string };

/**
 * Reads at most `cap` bytes. Past the cap the branch is cancelled at once, so the tee stops
 * holding chunks for it and the primary's branch streams on unhindered.
 */
export async function readCapped(stream: ReadableStream<Uint8Array>, cap: number): Promise<BodyRead> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > cap) {
        await reader.cancel("mirror body cap reached").catch(() => {});
        return { ok: false, reason: "body_too_large", detail: `body exceeds maxMirrorBodyBytes (${cap})` };
      }
      chunks.push(value);
    }
  } catch (err) {
    return { ok: false, reason: "body_read_failed", detail: String(err) };
  }
  if (chunks.length === 1) return { ok: true, bytes: chunks[0] as Uint8Array };
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return { ok: true, bytes };
}

async function mirrorBodyBytes(body: MirrorBody): Promise<BodyRead> {
  switch (body.kind) {
    case "none":
      return { ok: true, bytes: null };
    case "too_large":
      return {
        ok: false,
        reason: "body_too_large",
        detail: `content-length ${body.declared} exceeds maxMirrorBodyBytes (${body.cap})`,
      };
    case "stream":
      return readCapped(body.stream, body.cap);
  }
}

export function classifyMirrorError(err: unknown): MirrorErrorKind {
  const name = (err as { name?: string })?.name;
  if (name === "TimeoutError" || name === "AbortError") return "timeout";
  const message = String((err as { message?: string })?.message ?? err);
  if (/dns|resolve|not known|ENOTFOUND|getaddrinfo|no such host/i.test(message)) return "dns";
  if (/refused|ECONNREFUSED|failed to connect|connect failed/i.test(message)) return "connect";
  return "network";
}

export async function runMirrors(job: MirrorJob): Promise<void> {
  const body = await mirrorBodyBytes(job.body);
  if (!body.ok) {
    for (const target of job.targets) {
      job.sink({
        kind: "skipped",
        route: job.routeId,
        mirror: target.label,
        requestId: job.requestId,
        reason: body.reason,
        detail: body.detail,
      });
    }
    return;
  }
  await Promise.all(job.targets.map((target) => sendOne(job, target, body.bytes)));
}

async function sendOne(job: MirrorJob, target: MirrorTarget, bytes: Uint8Array | null): Promise<void> {
  const headers = new Headers(job.headers);
  applyHeaderOps(headers, target.requestHeaders);
  headers.set("x-forwarded-host", shadowHost(job.host, target.hostSuffix));
  headers.set(MIRROR_MARKER, job.routeId);
  headers.set(HOP_HEADER, String(job.hops + 1));
  const base = { route: job.routeId, mirror: target.label, requestId: job.requestId };
  const breaker = job.breaker ?? isolateBreaker;
  const started = Date.now();
  const admission = breaker.admit(target.origin, started);
  if (!admission.allowed) {
    job.sink({
      ...base,
      kind: "failed",
      error: "circuit_open",
      message: `ejected until ${new Date(admission.ejectedUntil).toISOString()} after ${admission.failures} consecutive failures`,
      latencyMs: 0,
    });
    return;
  }
  try {
    const response = await fetch(target.origin + job.pathAndQuery, {
      method: job.method,
      headers,
      body: bytes,
      redirect: "manual",
      signal: AbortSignal.timeout(target.timeoutMs),
    });
    // Mirror answers are ignored (as in Envoy and Gateway API); never buffer them.
    await response.body?.cancel().catch(() => {});
    breaker.record(target.origin, true, Date.now());
    job.sink({
      ...base,
      kind: "sent",
      status: response.status,
      latencyMs: Date.now() - started,
      bodyBytes: bytes?.byteLength ?? 0,
    });
  } catch (err) {
    const now = Date.now();
    const ejectedUntil = breaker.record(target.origin, false, now);
    const message = String((err as Error)?.message ?? err).slice(0, 200);
    job.sink({
      ...base,
      kind: "failed",
      error: classifyMirrorError(err),
      message: ejectedUntil ? `${message}; ejected until ${new Date(ejectedUntil).toISOString()}` : message,
      latencyMs: now - started,
    });
  }
}

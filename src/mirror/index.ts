/**
 * @module mirror
 * Sends the planned copies. Runs only inside `ctx.waitUntil`: the body copy is read from its
 * tee branch once, up to the route's cap, and shared by every mirror; each mirror has its own
 * timeout (never the client's signal) and its response body is cancelled unread.
 */
import {
  type Capture,
  type CompareSummary,
  compareResponses,
  type DiffSample,
  diffSample,
  NoiseMemory,
  summarizeComparison,
} from "../compare/index.js";
import { applyHeaderOps, HOP_HEADER, MIRROR_MARKER, shadowHost } from "../headers/index.js";
import type { MirrorErrorKind, OutcomeSink } from "../record/index.js";
import { MirrorBreaker } from "./breaker.js";
import type { CompareTarget, MirrorTarget } from "./plan.js";

export { compareBodyCap, isSampled, type MirrorPlan, type MirrorTarget, planMirrors } from "./plan.js";

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
  /** The primary's answer as read for comparison; set when a sampled mirror compares. */
  primary?: Promise<Capture>;
}

const isolateBreaker = new MirrorBreaker();
const isolateNoise = new NoiseMemory();

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

function copyHeaders(job: MirrorJob, target: MirrorTarget, ops: MirrorTarget["requestHeaders"]): Headers {
  const headers = new Headers(job.headers);
  applyHeaderOps(headers, ops);
  headers.set("x-forwarded-host", shadowHost(job.host, target.hostSuffix));
  headers.set(MIRROR_MARKER, job.routeId);
  headers.set(HOP_HEADER, String(job.hops + 1));
  return headers;
}

async function sendOne(job: MirrorJob, target: MirrorTarget, bytes: Uint8Array | null): Promise<void> {
  const base = { route: job.routeId, mirror: target.label, requestId: job.requestId };
  const breaker = job.breaker ?? isolateBreaker;
  const started = Date.now();
  const admission = breaker.admit(target.origin, started);
  if (!admission.allowed) {
    const message = `ejected until ${new Date(admission.ejectedUntil).toISOString()} after ${admission.failures} consecutive failures`;
    job.sink({
      ...base,
      kind: "failed",
      error: "circuit_open",
      message,
      latencyMs: 0,
      ...comparedError(target, "mirror ejected"),
    });
    return;
  }
  // The reference answers in parallel with the mirror so that both see the same moment.
  const reference = target.compare ? fetchReference(job, target, target.compare, bytes) : undefined;
  try {
    const response = await fetch(target.origin + job.pathAndQuery, {
      method: job.method,
      headers: copyHeaders(job, target, target.requestHeaders),
      body: bytes,
      redirect: "manual",
      signal: AbortSignal.timeout(target.timeoutMs),
    });
    breaker.record(target.origin, true, Date.now());
    const latencyMs = Date.now() - started;
    let compared = {};
    if (target.compare && reference) {
      compared = await compareWithPrimary(job, target, target.compare, response, reference);
    } else {
      // Mirror answers are ignored (as in Envoy and Gateway API); never buffer them.
      await response.body?.cancel().catch(() => {});
    }
    job.sink({
      ...base,
      kind: "sent",
      status: response.status,
      latencyMs,
      bodyBytes: bytes?.byteLength ?? 0,
      ...compared,
    });
  } catch (err) {
    const now = Date.now();
    const ejectedUntil = breaker.record(target.origin, false, now);
    const message = errorMessage(err);
    job.sink({
      ...base,
      kind: "failed",
      error: classifyMirrorError(err),
      message: ejectedUntil ? `${message}; ejected until ${new Date(ejectedUntil).toISOString()}` : message,
      latencyMs: now - started,
      ...comparedError(target, "mirror failed"),
    });
  }
}

/** Errors end up in log lines and samples: keep them short. */
function errorMessage(err: unknown): string {
  return String((err as Error)?.message ?? err).slice(0, 200);
}

function compareError(error: string): { compare: CompareSummary } {
  return { compare: { verdict: "error", fields: [], noise: [], error: error.slice(0, 200) } };
}

function comparedError(target: MirrorTarget, error: string): { compare?: CompareSummary } {
  return target.compare ? compareError(error) : {};
}

/** Reads a response body up to `cap` for comparison; past the cap there is nothing to compare. */
export async function captureResponse(response: Response, cap: number): Promise<Capture> {
  const read: BodyRead = response.body ? await readCapped(response.body, cap) : { ok: true, bytes: null };
  if (!read.ok) return { ok: false, error: read.detail };
  return {
    ok: true,
    response: { status: response.status, headers: response.headers, body: read.bytes ?? new Uint8Array() },
  };
}

/**
 * Splits the primary's body so that the client streams one branch untouched while the other is
 * read, up to `cap`, for comparison. Past the cap the comparison branch is cancelled, so at most
 * `cap` bytes are ever held for it.
 */
export function teeForComparison(response: Response, cap: number): { response: Response; capture: Promise<Capture> } {
  if (!response.body) return { response, capture: captureResponse(response, cap) };
  const [toClient, toCompare] = response.body.tee();
  const capture = captureResponse(new Response(toCompare, response), cap).catch(
    (err: unknown): Capture => ({ ok: false, error: `primary body: ${String(err)}` }),
  );
  return { response: new Response(toClient, response), capture };
}

async function fetchReference(
  job: MirrorJob,
  target: MirrorTarget,
  compare: CompareTarget,
  bytes: Uint8Array | null,
): Promise<Capture | undefined> {
  const reference = compare.reference;
  if (!reference) return undefined;
  if ("problem" in reference) return { ok: false, error: reference.problem };
  try {
    const response = await fetch(reference.origin + job.pathAndQuery, {
      method: job.method,
      headers: copyHeaders(job, target, undefined),
      body: bytes,
      redirect: "manual",
      signal: AbortSignal.timeout(target.timeoutMs),
    });
    return await captureResponse(response, compare.spec.maxBodyBytes);
  } catch (err) {
    return { ok: false, error: `reference: ${errorMessage(err)}` };
  }
}

async function compareWithPrimary(
  job: MirrorJob,
  target: MirrorTarget,
  compare: CompareTarget,
  response: Response,
  reference: Promise<Capture | undefined>,
): Promise<{ compare: CompareSummary; sample?: DiffSample }> {
  const [candidate, primary, ref] = await Promise.all([
    captureResponse(response, compare.spec.maxBodyBytes).catch(
      (err: unknown): Capture => ({ ok: false, error: String(err) }),
    ),
    job.primary ?? Promise.resolve<Capture>({ ok: false, error: "primary response not captured" }),
    reference,
  ]);
  if (!primary.ok) return compareError(`primary: ${primary.error}`);
  if (!candidate.ok) return compareError(`mirror: ${candidate.error}`);
  if (ref && !ref.ok) return compareError(ref.error);
  const noiseKey = `${job.routeId}\n${target.label}`;
  const comparison = compareResponses({
    primary: primary.response,
    candidate: candidate.response,
    reference: ref?.ok ? ref.response : undefined,
    spec: compare.spec,
    knownNoise: compare.reference ? isolateNoise.known(noiseKey) : [],
  });
  isolateNoise.learn(noiseKey, comparison.referenceNoise);
  const summary = summarizeComparison(comparison);
  if (comparison.verdict !== "differ") return { compare: summary };
  const sample = await diffSample(comparison, compare.spec, {
    at: Date.now(),
    route: job.routeId,
    mirror: target.label,
    requestId: job.requestId,
    method: job.method,
    pathAndQuery: job.pathAndQuery,
  });
  return { compare: summary, sample };
}

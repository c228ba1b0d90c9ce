/**
 * @module mirror
 * Plans a matched request's copies (`planCopies`) and sends them (`sendCopies`), from one
 * `CopyJob` the request path builds: the request as the primary got it, the targets, the body's
 * copy, and the isolate's breaker, noise, secret and budget; for a comparison, the primary's
 * answer as the request path reads it (src/app.ts owns the answer; nothing here touches it).
 * Sending runs only inside `ctx.waitUntil`: the body copy is read from its
 * tee branch once, up to the route's cap, and shared by every mirror; each copy carries a marker
 * made for it (headers/marker); each mirror has its own timeout (never the client's signal) and
 * its answer is dropped (see `discardAnswer`). What the body copy and a comparison's reads hold is
 * taken from the isolate's memory budget and given back once the copies that needed it are done,
 * however they ended.
 */
import type { Hold, MemoryBudget } from "../body/budget.js";
import { captureResponse, discardAnswer, isBodyless, type MirrorBody, readMirrorBody } from "../body/index.js";
import {
  type Capture,
  type CompareSummary,
  compareResponses,
  type DiffSample,
  diffSample,
  type NoiseMemory,
  summarizeComparison,
} from "../compare/index.js";
import { applyHeaderOps, HOP_HEADER, isWebSocketUpgrade, MIRROR_MARKER, shadowHost } from "../headers/index.js";
import {
  bodyDigest,
  copyAddress,
  EMPTY_BODY_DIGEST,
  type MarkedCopy,
  signMarker,
  verifyMarker,
} from "../headers/marker.js";
import type { Route } from "../policy/index.js";
import type { OutcomeSink, PrimaryAnswer, SkipReason } from "../record/index.js";
import type { DeploymentSecret } from "../secret/index.js";
import type { Spool } from "../spool/index.js";
import { ejectedMessage, type MirrorBreaker } from "./breaker.js";
import { besidePrimary, type CopyParts, classifyMirrorError, copyInit, errorMessage, requestBody } from "./copy.js";
import { inlineTimeoutMs, sendDurable } from "./durable.js";
import { type CompareTarget, type MirrorPlan, type MirrorTarget, planMirrors } from "./plan.js";
import { rewritePathAndQuery } from "./rewrite.js";

export { classifyMirrorError } from "./copy.js";
export { compareBodyCap, isSampled, type MirrorPlan, type MirrorTarget, planMirrors } from "./plan.js";

/**
 * Which copies this request gets. Only a marker this deployment can verify, made for this very
 * request, makes it a copy already; a WebSocket handshake is never copied (any other request that
 * asks to upgrade is copied as what it is, without the `Upgrade`). Planning is pure, but a bug in
 * it must cost the mirrors, never the client.
 */
export function planCopies(
  route: Route,
  request: Request,
  url: URL,
  clusters: ReadonlyMap<string, string>,
  secret: Pick<DeploymentSecret, "stickyKey" | "verifyingKeys">,
  random: () => number,
): MirrorPlan | Promise<MirrorPlan> {
  const plan = (marked: boolean): MirrorPlan => {
    try {
      return planMirrors(route, request.headers, clusters, random, {
        marked,
        upgrade: isWebSocketUpgrade(request.method, request.headers),
        get query() {
          return url.searchParams;
        },
        stickyKey: secret.stickyKey,
      });
    } catch (err) {
      console.error(JSON.stringify({ msg: "edge-mirror.plan_failed", route: route.id, error: String(err) }));
      return { targets: [], skipped: [] };
    }
  };
  // Only a request that carries a marker waits for its signature to be checked.
  const marker = request.headers.get(MIRROR_MARKER);
  if (marker === null) return plan(false);
  return markedBody(marker, request, url, secret).then((digest) => {
    if (digest === undefined) return plan(false);
    // Copies of a GET or HEAD, and of a request without a body, carry none: the marker decides now.
    if (isBodyless(request.method) || request.body === null) return plan(digest === EMPTY_BODY_DIGEST);
    // Otherwise the body decides: it is read for the copies anyway (see runMirrors).
    const planned = plan(false);
    return planned.targets.length > 0 ? { ...planned, markedBodyDigest: digest } : planned;
  });
}

/** The body digest a marker made for this request vouches for; undefined when it counts for nothing. */
async function markedBody(
  marker: string,
  request: Request,
  url: URL,
  secret: Pick<DeploymentSecret, "verifyingKeys">,
): Promise<string | undefined> {
  try {
    return await verifyMarker(marker, copyAddress(request.method, url), await secret.verifyingKeys(), Date.now());
  } catch {
    return undefined;
  }
}

/**
 * Everything a request's copies are made of, gathered once by the request path (src/app.ts):
 * the request as the primary was sent it, the planned targets, the body's copy, where outcomes
 * go, and the isolate's breaker, noise, secret and budget.
 */
export interface CopyJob {
  routeId: string;
  /** The request's `cf-ray` (or a generated id), to join with the primary's logs. */
  requestId: string;
  method: string;
  /** The path and query as the client sent them (`rawPathAndQuery`). */
  pathAndQuery: string;
  /** Headers as sent to the primary (route changes applied), before mirror-only changes. */
  headers: Headers;
  /** The client-facing host, for `X-Forwarded-Host: <host><suffix>`. */
  host: string;
  hops: number;
  targets: readonly MirrorTarget[];
  /**
   * Set when the request carries a verified marker whose body digest is still to be compared:
   * when the body read for the copies has this digest, the request is a copy already.
   */
  markedBodyDigest?: string | undefined;
  body: MirrorBody;
  sink: OutcomeSink;
  /** Isolate-wide ejection state and learned compare noise. */
  breaker: MirrorBreaker;
  noise: NoiseMemory;
  /** Signs the `x-edge-mirror` marker every copy carries. */
  secret: Pick<DeploymentSecret, "signingKey">;
  /** What comparisons' reads take from. */
  budget: MemoryBudget;
  /** Where durable copies that were not delivered inline go; without it they are sent once. */
  spool?: Spool | undefined;
  /**
   * The primary's answer as the request path reads it for comparison, and what that read holds
   * (given back when the job ends); set when a sampled mirror compares.
   */
  primary?: { capture: Promise<Capture>; hold: Hold } | undefined;
  /**
   * The primary's status and time to response headers, recorded beside each copy's outcome that
   * went out (the release verdict's other side); set by the request path for every copied request.
   */
  primaryAnswer?: Promise<PrimaryAnswer> | undefined;
}

/** Records each mirror the plan skipped, one outcome apiece. */
export function recordSkips(skipped: MirrorPlan["skipped"], route: string, requestId: string, sink: OutcomeSink): void {
  for (const skip of skipped) sink({ kind: "skipped", route, requestId, ...skip });
}

/** Sends the job's copies inside `waitUntil`; a crash is logged, and never reaches the client. */
export function sendCopies(job: CopyJob, waitUntil: (promise: Promise<unknown>) => void): void {
  waitUntil(
    runMirrors(job, Date.now()).catch((err: unknown) =>
      console.error(JSON.stringify({ msg: "edge-mirror.mirror_crashed", error: String(err) })),
    ),
  );
}

/**
 * Sends the job's copies. `startedAt` is when the request came (before its response): a durable
 * copy's inline send ends in time to be spooled before `waitUntil` is cut off, 30 s after the
 * response (mirror/durable).
 */
export async function runMirrors(job: CopyJob, startedAt = Date.now()): Promise<void> {
  try {
    await sendAll(job, startedAt);
  } finally {
    // Every copy and comparison of the request is done with the body and the primary's answer
    // (or the job failed): their bytes are dropped, and a read still under way stops.
    if (job.body.kind === "stream") job.body.hold.release();
    job.primary?.hold.release();
  }
}

async function sendAll(job: CopyJob, startedAt: number): Promise<void> {
  const read = job.body.kind === "none" ? NO_BODY : await readMirrorBody(job.body);
  if (!read.ok) return skipAll(job, read.reason, read.detail);
  // GET and HEAD copies cannot carry a body: it is dropped rather than failing the copy.
  const body = BODYLESS.has(job.method) ? null : read.body;
  const digest = await bodyDigest(body?.parts ?? null);
  // The request's marker was made for this very copy, body included: it is a copy already.
  if (digest === job.markedBodyDigest) return skipAll(job, "loop_marker");
  const headers = copyHeadersOnce(job);
  const marker = copyMarkers(job, digest);
  const deadline = sharedDeadlines();
  try {
    // Settled, not merely all resolved: the body is shared until the last copy is done with it.
    const hold = job.body.kind === "stream" ? job.body.hold : undefined;
    let durableJob: (CopyJob & { startedAt: number }) | undefined;
    let now = 0;
    const copies = await Promise.allSettled(
      job.targets.map((target) => {
        if (!target.durable) {
          return sendOne(job, target, { body, headers: headers(target), marker, signal: deadline(target.timeoutMs) });
        }
        if (!durableJob) {
          durableJob = { ...job, startedAt };
          now = Date.now();
        }
        const timeoutMs = inlineTimeoutMs(target.timeoutMs, startedAt, now);
        return sendDurable(
          durableJob,
          { ...target, durable: target.durable },
          {
            body,
            headers: headers(target),
            marker,
            signal: timeoutMs === undefined ? undefined : deadline(timeoutMs),
            digest,
            hold,
          },
        );
      }),
    );
    for (const copy of copies) if (copy.status === "rejected") throw copy.reason;
  } finally {
    deadline.clear();
  }
}

function skipAll(job: CopyJob, reason: SkipReason, detail?: string): void {
  for (const target of job.targets) {
    job.sink({
      kind: "skipped",
      route: job.routeId,
      mirror: target.label,
      requestId: job.requestId,
      reason,
      ...(detail === undefined ? {} : { detail }),
    });
  }
}

/**
 * Each copy's marker, made for the URL it is sent to (headers/marker): one signature per distinct
 * URL of the request's copies, at one time, over the one body digest. Copies to one origin and
 * path (mirrors of one cluster, a compare reference) share it, and its URL is parsed once.
 */
function copyMarkers(job: CopyJob, digest: string): (url: string) => Promise<string> {
  const seconds = Math.floor(Date.now() / 1000);
  const made = new Map<string, Promise<string>>();
  let key: Promise<CryptoKey | undefined> | undefined;
  return (url) => {
    let marker = made.get(url);
    if (!marker) {
      key ??= job.secret.signingKey();
      const copy: MarkedCopy = { ...copyAddress(job.method, new URL(url)), route: job.routeId, bodyDigest: digest };
      // Without a secret (none could be read yet) the marker is the route id, which nothing trusts.
      marker = key.then((k) => (k ? signMarker(k, copy, seconds) : job.routeId)).catch(() => job.routeId);
      made.set(url, marker);
    }
    return marker;
  };
}

/**
 * One timer per distinct timeout for all the copies of a request: they start together, so they
 * share their deadline, and the timer is cleared once they are done — rather than a timer per
 * copy left to fire long after its answer came.
 */
function sharedDeadlines(): ((timeoutMs: number) => AbortSignal) & { clear(): void } {
  const timers = new Map<number, { signal: AbortSignal; timer: ReturnType<typeof setTimeout> }>();
  const deadline = (timeoutMs: number) => {
    let entry = timers.get(timeoutMs);
    if (!entry) {
      const controller = new AbortController();
      const timer = setTimeout(
        () => controller.abort(new DOMException(`no answer within ${timeoutMs} ms`, "TimeoutError")),
        timeoutMs,
      );
      entry = { signal: controller.signal, timer };
      timers.set(timeoutMs, entry);
    }
    return entry.signal;
  };
  return Object.assign(deadline, {
    clear() {
      for (const { timer } of timers.values()) clearTimeout(timer);
    },
  });
}

const NO_BODY = { ok: true, body: null } as const;
const BODYLESS = new Set(["GET", "HEAD"]);

/**
 * Each copy's headers but its marker: the primary's, the mirror's own changes, the shadow host
 * and the hop count. Mirrors without header changes of their own share one set per host suffix —
 * the copies of one request are alike, and each copy adds its marker to a copy of them.
 */
function copyHeadersOnce(job: CopyJob): (target: MirrorTarget) => Headers {
  const shared = new Map<string, Headers>();
  const build = (target: MirrorTarget) => {
    const headers = new Headers(job.headers);
    applyHeaderOps(headers, target.requestHeaders);
    headers.set("x-forwarded-host", shadowHost(job.host, target.hostSuffix));
    headers.set(HOP_HEADER, String(job.hops + 1));
    return headers;
  };
  return (target) => {
    if (target.requestHeaders) return build(target);
    let headers = shared.get(target.hostSuffix);
    if (!headers) {
      headers = build(target);
      shared.set(target.hostSuffix, headers);
    }
    return headers;
  };
}

async function sendOne(job: CopyJob, target: MirrorTarget, parts: CopyParts): Promise<void> {
  const base = { route: job.routeId, mirror: target.label, requestId: job.requestId };
  const pathAndQuery = target.rewrite ? rewritePathAndQuery(job.pathAndQuery, target.rewrite) : job.pathAndQuery;
  const { breaker } = job;
  const started = Date.now();
  const admission = breaker.admit(target.origin, started);
  if (!admission.allowed) {
    const message = ejectedMessage(admission);
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
  // What this copy's comparison reads (the mirror's answer and the reference's) holds, until it ends.
  const hold = target.compare ? job.budget.hold() : undefined;
  // The reference answers in parallel with the mirror so that both see the same moment.
  const reference = target.compare ? fetchReference(job, parts, target.compare, hold) : undefined;
  const body = requestBody(parts);
  try {
    const url = target.origin + pathAndQuery;
    const response = await fetch(url, await copyInit(job.method, parts, url, body.init));
    // A mirror that answers 5xx is as unhealthy as one that does not answer.
    breaker.report(target.origin, response.status < 500, Date.now());
    const latencyMs = Date.now() - started;
    let compared = {};
    let dropped: Promise<void> | undefined;
    if (target.compare && reference) {
      compared = await compareWithPrimary(job, target, target.compare, response, reference, hold);
    } else {
      // Mirror answers are ignored (as in Envoy and Gateway API): at most 64 KiB is read, then dropped.
      dropped = discardAnswer(response);
    }
    job.sink({
      ...base,
      kind: "sent",
      status: response.status,
      latencyMs,
      bodyBytes: parts.body?.size ?? 0,
      ...compared,
      ...(await besidePrimary(job)),
    });
    await dropped;
  } catch (err) {
    const now = Date.now();
    const ejectedUntil = breaker.report(target.origin, false, now);
    const message = errorMessage(err);
    job.sink({
      ...base,
      kind: "failed",
      error: classifyMirrorError(err),
      message: ejectedUntil ? `${message}; ejected until ${new Date(ejectedUntil).toISOString()}` : message,
      latencyMs: now - started,
      ...comparedError(target, "mirror failed"),
      ...(await besidePrimary(job)),
    });
  } finally {
    body.stop();
    // A reference still being read after the mirror failed is refused its next chunk and stops;
    // it is waited for, as it reads the shared body too.
    hold?.release();
    await reference;
  }
}

function compareError(error: string): { compare: CompareSummary } {
  return { compare: { verdict: "error", fields: [], noise: [], error: error.slice(0, 200) } };
}

function comparedError(target: MirrorTarget, error: string): { compare?: CompareSummary } {
  return target.compare ? compareError(error) : {};
}

async function fetchReference(
  job: CopyJob,
  copy: CopyParts,
  compare: CompareTarget,
  hold?: Hold,
): Promise<Capture | undefined> {
  const reference = compare.reference;
  if (!reference) return undefined;
  if ("problem" in reference) return { ok: false, error: reference.problem };
  const body = requestBody(copy);
  try {
    // The reference gets the mirror's copy, so that only the versions differ, but at the client's
    // path: it runs the primary's version, which serves that path, not the one a rewrite made
    // for the mirror's version.
    const url = reference.origin + job.pathAndQuery;
    const response = await fetch(url, await copyInit(job.method, copy, url, body.init));
    const captured = await captureResponse(response, compare.spec.maxBodyBytes, hold);
    return captured.ok ? captured : { ok: false, error: `reference: ${captured.error}` };
  } catch (err) {
    return { ok: false, error: `reference: ${errorMessage(err)}` };
  } finally {
    body.stop();
  }
}

async function compareWithPrimary(
  job: CopyJob,
  target: MirrorTarget,
  compare: CompareTarget,
  response: Response,
  reference: Promise<Capture | undefined>,
  hold: Hold | undefined,
): Promise<{ compare: CompareSummary; sample?: DiffSample }> {
  const [candidate, primary, ref] = await Promise.all([
    captureResponse(response, compare.spec.maxBodyBytes, hold).catch(
      (err: unknown): Capture => ({ ok: false, error: String(err) }),
    ),
    job.primary?.capture ?? Promise.resolve<Capture>({ ok: false, error: "primary response not captured" }),
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
    knownNoise: compare.reference ? job.noise.known(noiseKey) : [],
  });
  job.noise.learn(noiseKey, comparison.referenceNoise);
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

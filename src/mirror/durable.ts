/**
 * @module mirror/durable
 * A durable copy's inline send. It goes out as a best-effort copy does, with its copy id; when it
 * fails in a way worth another attempt (no answer, 408, 425, 429, 5xx, the mirror ejected by the
 * breaker) or cannot finish within `waitUntil`, it is spooled (src/spool) exactly as it was sent —
 * headers after the mirror's changes, path after any rewrite, the body it held — to be redelivered
 * by the worker's own queue consumer (mirror/redeliver). Any other answer is final: 1xx–3xx
 * delivered it, another 4xx refused it. A copy that cannot be spooled falls back to what a
 * best-effort copy is: sent once, and counted `spool_unavailable`.
 */

import type { Hold } from "../body/budget.js";
import { type CopyBody, discardAnswer } from "../body/index.js";
import { COPY_ID_HEADER } from "../headers/index.js";
import type { OutcomeSink, PrimaryAnswer, RetryCause } from "../record/index.js";
import { copyId, isRetryableStatus, retryDelaySeconds, SPOOL_MESSAGE_VERSION, type Spool } from "../spool/index.js";
import { ejectedMessage, type MirrorBreaker } from "./breaker.js";
import { besidePrimary, type CopyParts, classifyMirrorError, copyInit, errorMessage, requestBody } from "./copy.js";
import type { MirrorTarget } from "./plan.js";
import { rewritePathAndQuery } from "./rewrite.js";

/** `waitUntil` work may run this long after the response; copies start before it is sent. */
export const WAIT_UNTIL_MS = 30_000;
/**
 * Kept back from the end of `waitUntil` to spool a copy its inline send did not deliver: a body
 * over the queue's message limit is written to R2 first, up to 32 MiB of it.
 */
export const SPOOL_RESERVE_MS = 5_000;
/** With less time left than this, a durable copy is not sent inline but spooled at once. */
export const MIN_INLINE_MS = 1_000;

/**
 * How long a durable copy's inline send may wait for the mirror: its `timeoutMs`, shortened so
 * that a copy not delivered by then can still be spooled before `waitUntil` is cut off, counted
 * from `startedAt` (before the response, so the cut is at least that far away); undefined when too
 * little is left to try.
 */
export function inlineTimeoutMs(timeoutMs: number, startedAt: number, now: number): number | undefined {
  const left = startedAt + WAIT_UNTIL_MS - SPOOL_RESERVE_MS - now;
  return left < MIN_INLINE_MS ? undefined : Math.min(timeoutMs, left);
}

/** What a durable copy's inline send needs of its request's copy job (mirror/index `CopyJob`). */
export interface DurableJob {
  routeId: string;
  requestId: string;
  method: string;
  pathAndQuery: string;
  sink: OutcomeSink;
  breaker: MirrorBreaker;
  spool?: Spool | undefined;
  /** When the request came (epoch ms): the spooled copy's `firstSeen`. */
  startedAt: number;
  /** The primary's answer, recorded beside an inline send's `sent` outcome (mirror/index `CopyJob`). */
  primaryAnswer?: Promise<PrimaryAnswer> | undefined;
}

/** A durable copy's parts: without a deadline when there is no time to send it inline. */
export type DurableParts = Omit<CopyParts, "signal"> & {
  signal: AbortSignal | undefined;
  /** SHA-256 of the body: the marker signed at each redelivery covers it. */
  digest: string;
  /** What the body holds of the isolate's budget (a body joined for a queue message takes from it too). */
  hold: Hold | undefined;
};

interface Failure {
  error: RetryCause;
  status?: number;
  message: string;
  /** An answer's `Retry-After`, honoured for the first wait. */
  retryAfter?: string | null;
}

export async function sendDurable(
  job: DurableJob,
  target: MirrorTarget & { durable: NonNullable<MirrorTarget["durable"]> },
  parts: DurableParts,
): Promise<void> {
  const base = { route: job.routeId, mirror: target.label, requestId: job.requestId };
  const pathAndQuery = target.rewrite ? rewritePathAndQuery(job.pathAndQuery, target.rewrite) : job.pathAndQuery;
  const url = target.origin + pathAndQuery;
  const id = copyId(job.requestId, target.label);
  const bodyBytes = parts.body?.size ?? 0;
  const spool = (failure: Failure, latencyMs: number, sentInline: boolean) => {
    // As it was sent, its id included; the marker is signed again at each delivery.
    const headers: Array<[string, string]> = [...parts.headers, [COPY_ID_HEADER, id]];
    const copy = { url, headers, body: parts.body, digest: parts.digest, hold: parts.hold };
    return spoolCopy(job, target, copy, failure, { latencyMs, sentInline, bodyBytes });
  };
  if (!parts.signal) {
    const message = "too little of waitUntil's 30 s was left to send it inline";
    return spool({ error: "wait_until_budget", message }, 0, false);
  }
  const { breaker } = job;
  const started = Date.now();
  const admission = breaker.admit(target.origin, started);
  if (!admission.allowed) {
    const message = ejectedMessage(admission);
    return spool({ error: "circuit_open", message }, 0, false);
  }
  const body = requestBody(parts);
  let failure: Failure;
  try {
    const init = await copyInit(job.method, { ...parts, signal: parts.signal }, url, body.init, id);
    const response = await fetch(url, init);
    breaker.report(target.origin, response.status < 500, Date.now());
    const dropped = discardAnswer(response);
    if (!isRetryableStatus(response.status)) {
      const latencyMs = Date.now() - started;
      job.sink({ ...base, kind: "sent", status: response.status, latencyMs, bodyBytes, ...(await besidePrimary(job)) });
      return await dropped;
    }
    failure = {
      error: "status",
      status: response.status,
      message: `answered ${response.status}`,
      retryAfter: response.headers.get("retry-after"),
    };
    await dropped;
  } catch (err) {
    breaker.report(target.origin, false, Date.now());
    failure = { error: classifyMirrorError(err), message: errorMessage(err) };
  } finally {
    body.stop();
  }
  return spool(failure, Date.now() - started, true);
}

async function spoolCopy(
  job: DurableJob,
  target: MirrorTarget & { durable: NonNullable<MirrorTarget["durable"]> },
  copy: {
    url: string;
    headers: Array<[string, string]>;
    body: CopyBody | null;
    digest: string;
    hold: Hold | undefined;
  },
  failure: Failure,
  inline: { latencyMs: number; sentInline: boolean; bodyBytes: number },
): Promise<void> {
  const base = { route: job.routeId, mirror: target.label, requestId: job.requestId };
  const result = job.spool
    ? await job.spool.put({
        copy: {
          v: SPOOL_MESSAGE_VERSION,
          route: job.routeId,
          mirror: target.label,
          requestId: job.requestId,
          method: job.method,
          url: copy.url,
          headers: copy.headers,
          bodyDigest: copy.digest,
          firstSeen: job.startedAt,
          sentInline: inline.sentInline,
          timeoutMs: target.timeoutMs,
          retry: target.durable,
        },
        body: copy.body,
        hold: copy.hold,
        delaySeconds: retryDelaySeconds(target.durable, 0, failure.retryAfter),
      })
    : { ok: false as const, detail: "no MIRROR_SPOOL queue binding" };
  if (result.ok) {
    job.sink({
      ...base,
      kind: "spooled",
      error: failure.error,
      ...(failure.status === undefined ? {} : { status: failure.status }),
      message: failure.message,
      latencyMs: inline.latencyMs,
      bodyBytes: inline.bodyBytes,
      bodyIn: result.bodyIn,
    });
    return;
  }
  job.sink({
    ...base,
    kind: "skipped",
    reason: "spool_unavailable",
    detail: `${failure.message}; not spooled: ${result.detail}`.slice(0, 400),
  });
}

/**
 * @module spool/message
 * The spool's message: a durable copy as it waits in the Cloudflare Queue, with everything to send
 * it again as it was first sent — method, URL (after any `urlRewrite`), headers (after the
 * mirror's changes, with its copy id; never the marker, which covers the time and is signed again
 * at each delivery), the body or the R2 object that holds it, when the request came, whether it
 * was sent inline, and its retry schedule. Also the rules that schedule depends on: which
 * answers are worth another attempt, how long to wait, and how large a message may be. Pure.
 */
import type { Retry } from "../policy/index.js";
import { MAX_RETRY_DELAY_SECONDS } from "../policy/index.js";

/** The layout's version: a consumer meeting another drops the message, logged, rather than guess. */
export const SPOOL_MESSAGE_VERSION = 1;

/** Where a spooled copy's body is. */
export type SpooledBody =
  | { kind: "none" }
  /** In the message itself (the whole message stays under Queues' 128 KB). */
  | { kind: "inline"; bytes: Uint8Array }
  /** One R2 object of its own, deleted once the copy is delivered or dead. */
  | { kind: "r2"; key: string; size: number }
  /** A dead copy's R2 body, deleted when it died: the copy cannot be sent again. */
  | { kind: "dropped"; size: number };

export interface SpooledCopy {
  v: typeof SPOOL_MESSAGE_VERSION;
  route: string;
  mirror: string;
  requestId: string;
  method: string;
  /** The mirror's origin and the copy's path and query, as first sent. */
  url: string;
  /** As first sent, in order, but the marker. */
  headers: Array<[string, string]>;
  body: SpooledBody;
  /** SHA-256 of the body, hex: what the marker signed at each delivery covers. */
  bodyDigest: string;
  /** When the request came, in epoch milliseconds. */
  firstSeen: number;
  /** Whether the copy was sent inline before it was spooled (not when there was no time, or the mirror was ejected). */
  sentInline: boolean;
  /** Each attempt's wait for the mirror's answer: the mirror's `timeoutMs`. */
  timeoutMs: number;
  retry: Retry;
  /** Set on a copy in the dead-letter queue: when it died, after how many attempts, and why. */
  dead?: { at: number; attempts: number; cause: string };
  /** How often the copy was sent again from the dead-letter queue. */
  redriven?: number;
}

/** Queues' limit on one message, and on one `sendBatch` (its count and its bytes). */
export const MAX_MESSAGE_BYTES = 128_000;
export const MAX_BATCH_MESSAGES = 100;
export const MAX_BATCH_BYTES = 256_000;

/**
 * What a message may be estimated at and still carry its body: Queues' limit less room for
 * what the estimate leaves out (the structured clone's tags and lengths, the delivery's own
 * fields) and for a dead copy's cause, added when it moves to the dead-letter queue.
 */
export const INLINE_MESSAGE_BYTES = MAX_MESSAGE_BYTES - 8 * 1024;

/**
 * The size of a message as Queues measures it, give or take the structured clone's small tags:
 * header values are byte strings and everything else ASCII, one byte a character; the body as is.
 */
export function messageBytes(copy: Omit<SpooledCopy, "body">, bodyBytes: number): number {
  let bytes = 512 + bodyBytes + copy.url.length + copy.route.length + copy.mirror.length + copy.requestId.length;
  for (const [name, value] of copy.headers) bytes += name.length + value.length + 8;
  return bytes;
}

/**
 * An answer worth another attempt: 408 Request Timeout, 425 Too Early, 429 Too Many Requests and
 * every 5xx, as Prometheus's remote write and most retrying clients decide. Any other 4xx is the
 * mirror's final word on the copy.
 */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 425 || status === 429;
}

/**
 * The wait before the next attempt once `attempts` have been made from the spool (0 before the
 * first): `firstDelaySeconds`, doubled at each attempt, at most an hour. A `Retry-After` longer
 * than that (in seconds; an HTTP date is not honoured) is waited instead, up to the same hour.
 */
export function retryDelaySeconds(retry: Retry, attempts: number, retryAfter?: string | null): number {
  const backoff = Math.min(MAX_RETRY_DELAY_SECONDS, retry.firstDelaySeconds * 2 ** Math.min(attempts, 30));
  const asked = retryAfter ? Number(retryAfter.trim()) : Number.NaN;
  if (!Number.isInteger(asked) || asked <= backoff) return backoff;
  return Math.min(MAX_RETRY_DELAY_SECONDS, asked);
}

/** The copy id a durable copy carries in `x-edge-mirror-id` (headers `COPY_ID_HEADER`). */
export function copyId(requestId: string, mirror: string): string {
  return `${requestId};mirror=${mirror}`;
}

const isString = (value: unknown): value is string => typeof value === "string";
const isCount = (value: unknown, max: number): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;

function bodyProblem(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null) return "body is not an object";
  const b = body as Record<string, unknown>;
  switch (b.kind) {
    case "none":
      return undefined;
    case "inline":
      return b.bytes instanceof Uint8Array ? undefined : "inline body is not bytes";
    case "r2":
      return isString(b.key) && b.key.startsWith(SPOOL_KEY_PREFIX) && isCount(b.size, 2 ** 31)
        ? undefined
        : "r2 body needs a spool key and a size";
    case "dropped":
      return isCount(b.size, 2 ** 31) ? undefined : "dropped body needs a size";
    default:
      return `unknown body kind ${JSON.stringify(b.kind)}`;
  }
}

/** Where spooled bodies live in the bucket: the prefix the R2 lifecycle rule expires. */
export const SPOOL_KEY_PREFIX = "spool/";

/**
 * A queue message as a spooled copy, or why it is not one. Messages come from this worker, but a
 * message written by another version, or sent by hand, must not crash the consumer or be sent
 * anywhere half-understood.
 */
export function parseSpooledCopy(value: unknown): SpooledCopy | string {
  if (typeof value !== "object" || value === null) return "not an object";
  const m = value as Record<string, unknown>;
  if (m.v !== SPOOL_MESSAGE_VERSION) return `message version ${JSON.stringify(m.v)}, not ${SPOOL_MESSAGE_VERSION}`;
  for (const field of ["route", "mirror", "requestId", "method", "url", "bodyDigest"] as const) {
    if (!isString(m[field])) return `${field} is not a string`;
  }
  let url: URL;
  try {
    url = new URL(m.url as string);
  } catch {
    return "url is not absolute";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "url is not http(s)";
  if (!Array.isArray(m.headers) || !m.headers.every((h) => Array.isArray(h) && h.length === 2 && h.every(isString))) {
    return "headers are not name and value pairs";
  }
  const problem = bodyProblem(m.body);
  if (problem) return problem;
  if (!isCount(m.firstSeen, Number.MAX_SAFE_INTEGER)) return "firstSeen is not a time";
  if (typeof m.sentInline !== "boolean") return "sentInline is not a boolean";
  if (!isCount(m.timeoutMs, 300_000)) return "timeoutMs is not a count";
  const retry = m.retry as Record<string, unknown> | undefined;
  if (
    !retry ||
    !isCount(retry.maxAttempts, 100) ||
    !isCount(retry.firstDelaySeconds, MAX_RETRY_DELAY_SECONDS) ||
    retry.maxAttempts < 1 ||
    retry.firstDelaySeconds < 1
  ) {
    return "retry is not a schedule";
  }
  return value as SpooledCopy;
}

/**
 * @module capture
 * Capture on the request path: a route with `capture` has a sample of its requests recorded,
 * each with the primary's answer, to R2 (`MIRROR_CAPTURES`) for export and replay. Sampling is
 * decided before anything is read, as for a mirror (at random, or sticky by `sampleBy`); only a
 * sampled request has its body tee'd (capture's branch read up to `maxBodyBytes`) and the
 * primary's answer tee'd (one tee, shared with a compared mirror's comparison). The client's
 * branches stream untouched: nothing here delays or alters the client's answer. The record is
 * built (capture/record, redacted there) and batched (capture/batch) inside `waitUntil`, and
 * written by capture/r2. Without the binding, capture is off and says so once per isolate.
 */

import type { Hold, MemoryBudget } from "../body/budget.js";
import { declaredLength, isBodyless, teeForComparison } from "../body/index.js";
import type { Capture } from "../compare/index.js";
import { HOP_HEADER, isWebSocketUpgrade, MIRROR_MARKER } from "../headers/index.js";
import { isMirrorSampled, isSampled } from "../mirror/plan.js";
import type { CaptureSpec, Route } from "../policy/index.js";
import { type PrimaryRequest, UpstreamError } from "../proxy/index.js";
import type { SipKey } from "../siphash/index.js";
import { CaptureBuffer, DEFAULT_CAPTURE_FLUSH_MS, MAX_CAPTURE_FLUSH_MS } from "./batch.js";
import { r2Writer } from "./r2.js";
import { readPrefix, splitAnswer } from "./read.js";
import { type BodyPrefix, buildRecord, type RecordParts, recordLine } from "./record.js";

/**
 * The label sticky capture hashes with (mirror/plan's `stickyPoint`): not a cluster name or an
 * origin, so that whether a session is captured is decided apart from whether it is mirrored, and
 * alike on every route that captures.
 */
export const CAPTURE_LABEL = "(capture)";

/** What capture needs of the env: the bucket binding and `CAPTURE_FLUSH_MS`. */
interface CaptureEnv {
  MIRROR_CAPTURES?: R2Bucket;
  CAPTURE_FLUSH_MS?: string;
}

/** `CAPTURE_FLUSH_MS`: how long an isolate's batch stays open, 0–60,000 ms (default 5,000). */
export function captureFlushMs(value: string | undefined): number {
  const n = Number(value);
  return value !== undefined && value.trim() !== "" && Number.isInteger(n) && n >= 0 && n <= MAX_CAPTURE_FLUSH_MS
    ? n
    : DEFAULT_CAPTURE_FLUSH_MS;
}

/** What the isolate's capture state is built from: equal fingerprints build equal states. */
export function captureFingerprint(env: CaptureEnv): string {
  return `${env.MIRROR_CAPTURES ? "captures" : ""}:${env.CAPTURE_FLUSH_MS ?? ""}`;
}

/** An isolate's capture: its batch buffer (undefined without the binding), and whether it said so. */
export class CaptureState {
  readonly buffer: CaptureBuffer | undefined;
  #toldUnbound = false;

  constructor(env: CaptureEnv, budget: MemoryBudget) {
    const bucket = env.MIRROR_CAPTURES;
    this.buffer = bucket
      ? new CaptureBuffer(r2Writer(bucket), budget, { flushMs: captureFlushMs(env.CAPTURE_FLUSH_MS) })
      : undefined;
  }

  /** Logs, once per isolate, that routes ask for capture but there is no bucket to write to. */
  unbound(route: string): void {
    if (this.#toldUnbound) return;
    this.#toldUnbound = true;
    console.error(
      JSON.stringify({
        msg: "edge-mirror.capture_unavailable",
        route,
        error: "no MIRROR_CAPTURES R2 binding: capture is off (add the binding as in wrangler.toml)",
      }),
    );
  }
}

/** What the request path gives capture of the isolate. */
export interface CaptureIsolate {
  readonly capture: CaptureState;
  readonly budget: MemoryBudget;
  readonly secret: { readonly stickyKey: SipKey | undefined };
}

/** A sampled request's capture, as the request path uses it. */
export interface Capturing {
  /** What the primary is sent as the body: the other branch of capture's tee, or `body` as given. */
  body: ReadableStream | null;
  /**
   * Follows the primary's answer: records it with the request once both are read, and hands the
   * client its branch untouched. When a sampled mirror compares (`compare`), the comparison reads
   * the answer through capture's one tee (`compared`).
   */
  follow(
    answer: Promise<Response>,
    primary: PrimaryRequest,
    waitUntil: (promise: Promise<unknown>) => void,
    compare?: { cap: number; hold: Hold },
  ): { response: Promise<Response>; compared?: Promise<Capture> };
}

/** Headers edge-mirror adds for its own loop protection: not part of what is recorded. */
const OWN_HEADERS = new Set([HOP_HEADER, MIRROR_MARKER]);

function* sentHeaders(headers: Headers): Generator<[string, string]> {
  for (const pair of headers) if (!OWN_HEADERS.has(pair[0])) yield pair;
}

function isStickySampled(
  spec: CaptureSpec,
  request: Request,
  url: URL,
  isolate: CaptureIsolate,
  random: () => number,
): boolean {
  const context = {
    get query() {
      return url.searchParams;
    },
    stickyKey: isolate.secret.stickyKey,
  };
  return isMirrorSampled(spec, CAPTURE_LABEL, request.headers, context, random);
}

/**
 * Starts capturing the request when its route captures and the sample says so; undefined
 * otherwise (then nothing was read or allocated). `body` is what the primary would be sent.
 */
export function startCapture(
  route: Route,
  spec: CaptureSpec,
  request: Request,
  url: URL,
  body: ReadableStream | null,
  isolate: CaptureIsolate,
  random: () => number,
): Capturing | undefined {
  const buffer = isolate.capture.buffer;
  if (!buffer) {
    isolate.capture.unbound(route.id);
    return undefined;
  }
  // The sample first: an unsampled request costs a draw (or a hash, with sampleBy) and nothing else.
  if (!(spec.sampleBy ? isStickySampled(spec, request, url, isolate, random) : isSampled(spec, random))) {
    return undefined;
  }
  // A WebSocket's socket belongs to the client and the primary: there is no answer to record.
  if (isWebSocketUpgrade(request.method, request.headers)) return undefined;

  const startedAt = Date.now();
  const hold = isolate.budget.hold();
  let primaryBody = body;
  let requestBody: Promise<BodyPrefix> | null = null;
  if (body && !isBodyless(request.method)) {
    const [toPrimary, toCapture] = body.tee();
    primaryBody = toPrimary;
    const declared = declaredLength(request.headers.get("content-length"));
    requestBody = readPrefix(toCapture, spec.maxBodyBytes, hold, declared);
  }
  const id = request.headers.get("cf-ray") ?? crypto.randomUUID();
  const rules = spec.redact;

  return {
    body: primaryBody,
    follow(answer, primary, waitUntil, compare) {
      const record = (
        response: Omit<NonNullable<RecordParts["response"]>, "body"> | null,
        responseBody: Promise<BodyPrefix | null>,
        latencyMs: number | null,
        error?: string,
      ) => {
        const done = (async () => {
          try {
            const [requestPrefix, responsePrefix] = await Promise.all([requestBody, responseBody]);
            const line = recordLine(
              buildRecord({
                id,
                route: route.id,
                startedAt,
                latencyMs,
                method: request.method,
                url: request.url,
                requestHeaders: sentHeaders(primary.request.headers),
                requestBody: requestPrefix,
                response: response ? { ...response, body: responsePrefix } : null,
                error,
                rules,
              }),
            );
            // The bodies are in the line now; the batch takes the line's own size.
            hold.release();
            buffer.add(route.id, startedAt, line, waitUntil);
          } catch (err) {
            console.error(JSON.stringify({ msg: "edge-mirror.capture_failed", route: route.id, error: String(err) }));
          } finally {
            hold.release();
          }
        })();
        waitUntil(done);
      };
      const split = answer.then(
        (response): { response: Response; compared?: Promise<Capture> } => {
          const latencyMs = Date.now() - startedAt;
          let teed: ReturnType<typeof splitAnswer> | undefined;
          try {
            // A HEAD's answer has no body for the client, whatever the primary sent.
            if (spec.includeResponse && request.method !== "HEAD") {
              teed = splitAnswer(response, { cap: spec.maxBodyBytes, hold }, compare);
            }
          } catch (err) {
            // Nothing was tee'd: the answer goes on as it would have without capture.
            console.error(JSON.stringify({ msg: "edge-mirror.capture_failed", route: route.id, error: String(err) }));
          }
          record({ status: response.status, headers: response.headers }, teed?.body ?? NO_BODY, latencyMs);
          if (teed) return teed;
          if (!compare) return { response };
          // Capture reads nothing of this answer: a comparison tees it alone.
          const own = teeForComparison(response, compare.cap, compare.hold);
          return { response: own.response, compared: own.capture };
        },
        (err: unknown) => {
          record(null, NO_BODY, null, failureCode(err));
          throw err;
        },
      );
      return {
        response: split.then((s) => s.response),
        ...(compare
          ? {
              compared: split.then(
                (s) => s.compared ?? Promise.resolve<Capture>({ ok: false, error: "primary answer not read" }),
                (err: unknown): Capture => ({ ok: false, error: failureCode(err) }),
              ),
            }
          : {}),
      };
    },
  };
}

const NO_BODY: Promise<BodyPrefix | null> = Promise.resolve(null);

function failureCode(err: unknown): string {
  return err instanceof UpstreamError ? err.code : "primary_failed";
}

/**
 * @module scripts/replay/run
 * Sends the planned requests to the target and hands each answer to the report. With a speed,
 * each request leaves when it is due (the recorded gap divided by the speed) or, when
 * `concurrency` requests are still waiting for their answers, as soon as one is answered: the
 * schedule says how late the sends were. With `max`, `concurrency` requests are always in flight.
 * Requests go over keep-alive connections (undici's pool, at most `concurrency` of them), headers
 * in their recorded order, bodies as bytes with their length.
 */
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";
import { Pool } from "undici";
import type { OutgoingRequest, Speed } from "./plan.js";
import type { Answer } from "./report.js";

export interface Target {
  origin: string;
  concurrency: number;
  timeoutMs: number;
  /** Read answers' bodies (for a comparison) up to this many bytes; otherwise they are drained. */
  readBodies: boolean;
  maxBodyBytes: number;
}

export type Send = (request: OutgoingRequest) => Promise<Answer>;

/** Decodes a body the candidate content-encoded: the recorded answers are as the client read them. */
function decoded(body: Buffer, encoding: string | undefined): Buffer {
  switch (encoding?.trim().toLowerCase()) {
    case "gzip":
    case "x-gzip":
      return gunzipSync(body);
    case "deflate":
      return inflateSync(body);
    case "br":
      return brotliDecompressSync(body);
    default:
      return body;
  }
}

/**
 * An HTTP client for `target`: undici's pool of at most `concurrency` keep-alive connections (about
 * twice the rate of node:http's agent on the bench's origin, where the replayer has to keep up
 * with wrk). Answers are never decoded by it, and redirects are not followed: the candidate's
 * answer is compared as it came.
 */
export function httpSender(target: Target): { send: Send; close: () => Promise<void> } {
  const pool = new Pool(target.origin, {
    connections: target.concurrency,
    headersTimeout: target.timeoutMs,
    bodyTimeout: target.timeoutMs,
  });
  const send: Send = async (out) => {
    const started = performance.now();
    // Flat, in their recorded order: a name that came twice goes as two lines, as it came.
    const headers: string[] = [];
    for (const [name, value] of out.headers) headers.push(name, value);
    try {
      const res = await pool.request({ method: out.method, path: out.path, headers, body: out.body });
      const latencyMs = performance.now() - started;
      if (!target.readBodies) {
        // Nothing of the answer is kept: the report needs its status and latency only.
        await res.body.dump({ limit: Number.POSITIVE_INFINITY });
        return { ok: true, status: res.statusCode, headers: [], body: undefined, latencyMs };
      }
      const headerPairs: Array<[string, string]> = [];
      for (const [name, value] of Object.entries(res.headers)) {
        for (const one of Array.isArray(value) ? value : [value ?? ""]) headerPairs.push([name, one]);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.byteLength;
        if (size > target.maxBodyBytes) {
          res.body.destroy();
          return { ok: true, status: res.statusCode, headers: headerPairs, body: undefined, latencyMs };
        }
        chunks.push(chunk);
      }
      const encoding = res.headers["content-encoding"];
      const body = decoded(Buffer.concat(chunks), Array.isArray(encoding) ? encoding.join(",") : encoding);
      return { ok: true, status: res.statusCode, headers: headerPairs, body: new Uint8Array(body), latencyMs };
    } catch (err) {
      const error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      return { ok: false, error: String(error), latencyMs: performance.now() - started };
    }
  };
  return { send, close: () => pool.close() };
}

export interface Clock {
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface Sent {
  /** When it was due and when it left, in ms after the first was due; `planned` undefined at `max`. */
  planned: number | undefined;
  sent: number;
}

/**
 * Sends every request (`count` of them; `prepare(i)` gives the i-th) and hands each answer to
 * `answered`, at most `concurrency` at once, on the schedule `offsets` (undefined: as fast as
 * concurrency allows). Resolves with when each left and how long the whole took.
 */
export async function dispatch(options: {
  count: number;
  offsets: number[] | undefined;
  concurrency: number;
  send: (i: number) => Promise<void>;
  clock?: Clock;
}): Promise<{ sent: Sent[]; durationMs: number }> {
  const clock = options.clock ?? realClock;
  const { count, offsets, concurrency } = options;
  const sent: Sent[] = new Array(count);
  const start = clock.now();
  if (!offsets) {
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < count; i = next++) {
        sent[i] = { planned: undefined, sent: clock.now() - start };
        await options.send(i);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
    return { sent, durationMs: clock.now() - start };
  }
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < count; i++) {
    const due = start + (offsets[i] as number);
    const wait = due - clock.now();
    if (wait > 0) await clock.sleep(wait);
    while (inFlight.size >= concurrency) await Promise.race(inFlight);
    sent[i] = { planned: offsets[i], sent: clock.now() - start };
    const running: Promise<void> = options.send(i).finally(() => inFlight.delete(running));
    inFlight.add(running);
  }
  await Promise.all(inFlight);
  return { sent, durationMs: clock.now() - start };
}

/** How the sends kept to the schedule. */
export function scheduleSummary(sent: readonly Sent[], speed: Speed) {
  const kept = sent.filter((s): s is Sent => s !== undefined);
  const planned = kept.map((s) => s.planned).filter((p): p is number => p !== undefined);
  const late = kept.filter((s) => s.planned !== undefined).map((s) => s.sent - (s.planned as number));
  const span = (values: number[]) => (values.length === 0 ? 0 : Math.max(...values) - Math.min(...values));
  const round = (n: number) => Math.round(n * 10) / 10;
  const sortedLate = [...late].sort((a, b) => a - b);
  return {
    speed,
    plannedSpanMs: speed === "max" ? null : round(span(planned)),
    sentSpanMs: round(span(kept.map((s) => s.sent))),
    lateMs:
      late.length === 0
        ? null
        : {
            p50: round(sortedLate[Math.floor(sortedLate.length / 2)] as number),
            p99: round(sortedLate[Math.min(sortedLate.length - 1, Math.ceil(sortedLate.length * 0.99) - 1)] as number),
            max: round(sortedLate[sortedLate.length - 1] as number),
          },
  };
}

/**
 * @module scripts/replay/run
 * Sends the planned requests to the target and hands each answer to the report. With a speed,
 * each request leaves when it is due (the recorded gap divided by the speed) or, when
 * `concurrency` requests are still waiting for their answers, as soon as one is answered: the
 * schedule says how late the sends were. With `max`, `concurrency` requests are always in flight.
 * Requests go over keep-alive connections (node:http, at most `concurrency` of them), headers in
 * their recorded order, bodies as bytes with their length.
 */
import http from "node:http";
import https from "node:https";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";
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

/** An HTTP client for `target`: one keep-alive pool of `concurrency` connections. */
export function httpSender(target: Target): { send: Send; close: () => void } {
  const url = new URL(target.origin);
  const secure = url.protocol === "https:";
  const agent = new (secure ? https : http).Agent({ keepAlive: true, maxSockets: target.concurrency });
  const request = secure ? https.request : http.request;
  const send: Send = (out) =>
    new Promise((resolve) => {
      const started = performance.now();
      // In their recorded order; a name that came twice goes as two lines, as it came.
      const headers: Record<string, string | string[]> = Object.create(null);
      for (const [name, value] of out.headers) {
        const had = headers[name];
        headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
      }
      if (out.body !== null) headers["content-length"] = String(out.body.byteLength);
      let settled = false;
      const finish = (answer: Answer) => {
        if (settled) return;
        settled = true;
        resolve(answer);
      };
      const req = request(
        {
          protocol: url.protocol,
          hostname: url.hostname,
          port: url.port,
          method: out.method,
          path: out.path,
          headers,
          agent,
          timeout: target.timeoutMs,
        },
        (res) => {
          const latencyMs = performance.now() - started;
          const headers: Array<[string, string]> = [];
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            headers.push([(res.rawHeaders[i] as string).toLowerCase(), res.rawHeaders[i + 1] as string]);
          }
          const status = res.statusCode ?? 0;
          if (!target.readBodies) {
            res.resume();
            res.on("end", () => finish({ ok: true, status, headers, body: undefined, latencyMs }));
            res.on("error", (err) => finish({ ok: false, error: err.message, latencyMs }));
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          let tooLarge = false;
          res.on("data", (chunk: Buffer) => {
            size += chunk.byteLength;
            if (size > target.maxBodyBytes) tooLarge = true;
            else chunks.push(chunk);
          });
          res.on("error", (err) => finish({ ok: false, error: err.message, latencyMs }));
          res.on("end", () => {
            if (tooLarge) return finish({ ok: true, status, headers, body: undefined, latencyMs });
            try {
              const body = decoded(Buffer.concat(chunks), res.headers["content-encoding"]);
              finish({ ok: true, status, headers, body: new Uint8Array(body), latencyMs });
            } catch (err) {
              finish({ ok: false, error: `undecodable body: ${(err as Error).message}`, latencyMs });
            }
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer within ${target.timeoutMs} ms`)));
      req.on("error", (err: NodeJS.ErrnoException) =>
        finish({ ok: false, error: err.code ?? err.message, latencyMs: performance.now() - started }),
      );
      req.end(out.body === null ? undefined : out.body);
    });
  return { send, close: () => agent.destroy() };
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

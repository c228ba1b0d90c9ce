import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { vi } from "vitest";
import app, { createWorker, type EdgeMirrorWorker, type WorkerOptions } from "../../src/index.js";
import type { MirrorOutcome } from "../../src/record/index.js";
import { clusterKey, routeKey } from "../../src/store/keys.js";

/**
 * What the worker-pool tests share: their own worker (`testWorker`), a request through a worker
 * and its `waitUntil` work (`callWorker`, `TestWorker.send`), the admin stats (`adminStats`), and
 * fetch, KV and body helpers.
 */

export interface SeenRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

export type Responder = (req: Request) => Response | Promise<Response>;

/**
 * Replaces the worker's outbound fetch with per-origin responders and records every request
 * (bodies read in full) so that tests can compare what the primary and each mirror received.
 */
export function interceptFetch(responders: Record<string, Responder>) {
  const seen: SeenRequest[] = [];
  const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init as RequestInit);
    const origin = new URL(req.url).origin;
    const body = new Uint8Array(await req.arrayBuffer());
    seen.push({ url: req.url, method: req.method, headers: Object.fromEntries(req.headers), body });
    const responder = responders[origin];
    if (!responder) throw new TypeError(`fetch failed: no responder for ${origin}`);
    return responder(new Request(req, { body: body.byteLength ? body : null }));
  });
  return {
    seen,
    to: (origin: string) => seen.filter((s) => s.url.startsWith(origin)),
    restore: () => spy.mockRestore(),
  };
}

export async function putPolicies(policies: { clusters?: Record<string, string>; routes?: object[] }) {
  for (const [name, origin] of Object.entries(policies.clusters ?? {})) {
    await env.MIRROR_CONFIG.put(clusterKey(name), JSON.stringify({ origin }));
  }
  for (const route of policies.routes ?? []) {
    await env.MIRROR_CONFIG.put(routeKey((route as { id: string }).id), JSON.stringify(route));
  }
}

export function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  return bytes;
}

/**
 * `request` through `worker` (the exported one unless given) with `environment`, and every piece
 * of `waitUntil` work it left; the answer's body is the caller's to read, unless `readFirst`,
 * which reads a copy of it before waiting (work that waits for the answer to be read).
 */
export async function callWorker(
  request: Request,
  environment: Env,
  options: { worker?: Pick<EdgeMirrorWorker, "fetch">; readFirst?: boolean } = {},
): Promise<Response> {
  const ctx = createExecutionContext();
  const response = await (options.worker ?? app).fetch(request, environment, ctx);
  if (options.readFirst) await response.clone().arrayBuffer();
  await waitOnExecutionContext(ctx);
  return response;
}

/** `GET <ADMIN_PREFIX>/api/stats` through the exported worker, with the admin token of `environment`. */
export function adminStats(environment: Env, query = ""): Promise<Response> {
  return callWorker(
    new Request(`https://edge.example.com/__mirror/api/stats${query}`, {
      headers: { authorization: `Bearer ${environment.ADMIN_TOKEN}` },
    }),
    environment,
  );
}

/** A worker of a test's own (`testWorker`): fresh breaker, noise, secret, budget and caches. */
export interface TestWorker {
  worker: EdgeMirrorWorker;
  /** Every outcome of every request it served, in order; requests are not counted. */
  outcomes: MirrorOutcome[];
  /**
   * Runs one request through the worker, sampling with `random` (0 unless given), reads the whole
   * answer and waits for the `waitUntil` work.
   */
  send(request: Request, environment: Env, random?: () => number): Promise<{ response: Response; body: Uint8Array }>;
}

/**
 * A worker built for one test (or one file): its outcomes collected, its draws the test's, its
 * policy log silent unless `options` says otherwise, and nothing shared with any other test.
 */
export function testWorker(options: Omit<WorkerOptions, "outcomes" | "random"> = {}): TestWorker {
  const outcomes: MirrorOutcome[] = [];
  let draw: () => number = () => 0;
  const worker = createWorker({
    policyLog: () => {},
    ...options,
    random: () => draw(),
    outcomes: (outcome) => outcomes.push(outcome),
  });
  return {
    worker,
    outcomes,
    async send(request, environment, random = () => 0) {
      draw = random;
      const ctx = createExecutionContext();
      const response = await worker.fetch(request, environment, ctx);
      const body = new Uint8Array(await response.arrayBuffer());
      await waitOnExecutionContext(ctx);
      return { response, body };
    },
  };
}

/** KV operations as Workers KV bills them: a bulk get reads, and is billed for, each of its keys. */
export interface KvCounts {
  keysRead: number;
  lists: number;
  writes: number;
}

/**
 * `inner`, counting what it is asked; `fail(method, key)` makes a call reject before it reaches
 * KV, as KV refuses a second write of a key within a second (429).
 */
export function countingKv(inner: KVNamespace, fail?: (method: string, key: unknown) => boolean) {
  const counts: KvCounts = { keysRead: 0, lists: 0, writes: 0 };
  const kv = new Proxy(inner, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (fail?.(String(prop), args[0]))
          return Promise.reject(new Error(`KV ${String(prop)} failed: 429 Too Many Requests`));
        if (prop === "get" || prop === "getWithMetadata")
          counts.keysRead += Array.isArray(args[0]) ? args[0].length : 1;
        if (prop === "list") counts.lists++;
        if (prop === "put" || prop === "delete") counts.writes++;
        return value.apply(target, args);
      };
    },
  });
  return { kv, counts };
}

/** How long, at least, the recording spool's messages wait in the real queue (see `recordingSpool`). */
const HELD_SECONDS = 3600;
/** `options` with their wait raised to at least `HELD_SECONDS`. */
const held = <T extends { delaySeconds?: number }>(options: T | undefined): T =>
  ({ ...options, delaySeconds: Math.max(options?.delaySeconds ?? 0, HELD_SECONDS) }) as T;

/**
 * The spool's real local bindings (`MIRROR_SPOOL`, `MIRROR_DEAD_LETTERS`, `MIRROR_SPOOL_BODIES`),
 * wrapped so that a test counts what was sent and written: every message goes on to the real
 * queue, held there at least an hour (`HELD_SECONDS`) — a test delivers the messages it means to
 * itself, and the pool's consumer, which outlives the test that sent them, must never send one
 * to an origin nobody intercepts any more (a redriven copy asks for no wait at all) — and every
 * body to the real bucket. What a test reads back is what the worker asked for. `failQueue` makes
 * the spool's queue refuse, as a full or unavailable one does.
 */
export function recordingSpool(environment: Env) {
  const spooled: MessageSendRequest[] = [];
  const deadLetters: MessageSendRequest[] = [];
  const calls = { send: 0, sendBatch: 0, put: 0, get: 0, delete: 0 };
  const state = { failQueue: false };
  const wrapQueue = (queue: Queue, into: MessageSendRequest[]): Queue => ({
    metrics: () => queue.metrics(),
    async send(body, options) {
      calls.send++;
      if (state.failQueue) throw new Error("Queue send failed: Too Many Requests");
      into.push({ body, ...options });
      return queue.send(body, held(options));
    },
    async sendBatch(messages, options) {
      calls.sendBatch++;
      if (state.failQueue) throw new Error("Queue sendBatch failed: Too Many Requests");
      const list = [...messages];
      into.push(...list);
      return queue.sendBatch(
        list.map((message) => held(message)),
        held(options),
      );
    },
  });
  const bucket = environment.MIRROR_SPOOL_BODIES;
  const bodies = {
    put: (...args: Parameters<R2Bucket["put"]>) => {
      calls.put++;
      return bucket.put(...args);
    },
    get: (...args: Parameters<R2Bucket["get"]>) => {
      calls.get++;
      return bucket.get(...args);
    },
    delete: (...args: Parameters<R2Bucket["delete"]>) => {
      calls.delete++;
      return bucket.delete(...args);
    },
    head: (key: string) => bucket.head(key),
    list: (options?: R2ListOptions) => bucket.list(options),
  } as unknown as R2Bucket;
  const wrapped = {
    ...environment,
    MIRROR_SPOOL: wrapQueue(environment.MIRROR_SPOOL, spooled),
    MIRROR_DEAD_LETTERS: wrapQueue(environment.MIRROR_DEAD_LETTERS, deadLetters),
    MIRROR_SPOOL_BODIES: bodies,
  } as Env;
  return { env: wrapped, spooled, deadLetters, calls, state, bucket };
}

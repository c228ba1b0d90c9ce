/**
 * Cost benchmark entry (`npm run bench -- --mode cost`): the real worker, with every billed
 * binding wrapped once per isolate so that the bench can count what a client request costs —
 * KV keys read (a bulk read is billed per key), lists, writes and deletes; Durable Object requests
 * and the SQLite rows each stats flush wrote (the shard reports them); Analytics Engine data
 * points; queue messages and R2 operations, where bound. `GET /__bench/cost` answers this
 * isolate's counts; the scheduled handler (the cron) runs on the same wrapped bindings. Nothing
 * else differs from the deployed worker.
 */
import { createWorker } from "../../src/index.js";
import type { FlushResult } from "../../src/stats/tables.js";
import {
  DEPLOYMENT_KEY_KEY,
  POLICY_MARKER_KEY,
  POLICY_SNAPSHOT_KEY,
  parsePolicyKey,
  SESSION_EPOCH_KEY,
} from "../../src/store/keys.js";

export { MirrorStatsShard } from "../../src/index.js";

const worker = createWorker();

const counts = {
  kv: {
    keysRead: 0,
    lists: 0,
    writes: 0,
    deletes: 0,
    /** Keys read, by what they are. */
    read: { marker: 0, snapshot: 0, deploymentKey: 0, sessionEpoch: 0, policies: 0, other: 0 },
  },
  durableObjects: {
    requests: 0,
    flushes: 0,
    rowsWritten: 0,
    counterRows: 0,
    compactionRows: 0,
    compactions: 0,
    sampleRows: 0,
  },
  analyticsEngine: { points: 0 },
  queues: { messages: 0, calls: 0, bound: false },
  r2: { classA: 0, classB: 0, bound: false },
};

function readKind(key: string): keyof typeof counts.kv.read {
  if (key === POLICY_MARKER_KEY) return "marker";
  if (key === POLICY_SNAPSHOT_KEY) return "snapshot";
  if (key === DEPLOYMENT_KEY_KEY) return "deploymentKey";
  if (key === SESSION_EPOCH_KEY) return "sessionEpoch";
  return parsePolicyKey(key) ? "policies" : "other";
}

/** `target` with each method call first handed to `count(method, args)`; the result passes through it too. */
function counting<T extends object>(
  target: T,
  count: (method: string, args: unknown[]) => void,
  result?: (method: string, value: unknown) => unknown,
): T {
  return new Proxy(target, {
    get(inner, prop) {
      const value = Reflect.get(inner, prop);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        count(String(prop), args);
        // Reflect.apply: an RPC stub's method answers any property, `apply` included, as a remote call.
        const returned = Reflect.apply(value, inner, args);
        return result ? result(String(prop), returned) : returned;
      };
    },
  });
}

function countingKv(kv: KVNamespace): KVNamespace {
  return counting(kv, (method, args) => {
    if (method === "get" || method === "getWithMetadata") {
      const keys = Array.isArray(args[0]) ? (args[0] as string[]) : [String(args[0])];
      counts.kv.keysRead += keys.length;
      for (const key of keys) counts.kv.read[readKind(key)]++;
    } else if (method === "list") counts.kv.lists++;
    else if (method === "put") counts.kv.writes++;
    else if (method === "delete") counts.kv.deletes++;
  });
}

function countFlush(result: FlushResult): void {
  const d = counts.durableObjects;
  d.flushes++;
  d.rowsWritten += result.rowsWritten;
  d.counterRows += result.counterRows;
  d.compactionRows += result.compactionRows;
  if (result.compactionRows > 0) d.compactions++;
  d.sampleRows += result.rowsWritten - result.counterRows - result.compactionRows;
}

function countingStats(namespace: NonNullable<Env["MIRROR_STATS"]>): NonNullable<Env["MIRROR_STATS"]> {
  return counting(
    namespace,
    () => {},
    (method, stub) =>
      method !== "get"
        ? stub
        : counting(
            stub as object,
            () => {
              counts.durableObjects.requests++;
            },
            (call, promise) =>
              call === "add"
                ? (promise as Promise<FlushResult>).then((r) => {
                    countFlush(r);
                    return r;
                  })
                : promise,
          ),
  );
}

function countingAnalytics(dataset: AnalyticsEngineDataset): AnalyticsEngineDataset {
  return counting(dataset, (method) => {
    if (method === "writeDataPoint") counts.analyticsEngine.points++;
  });
}

const R2_CLASS_A = new Set(["put", "list", "createMultipartUpload", "uploadPart", "completeMultipartUpload"]);
const R2_CLASS_B = new Set(["get", "head"]);

/** Queues and R2 buckets by their methods: whichever the deployment binds, under any name. */
function countingOther(value: unknown): unknown {
  if (typeof value !== "object" || value === null) return value;
  const has = (name: string) => typeof Reflect.get(value, name) === "function";
  if (has("send") && has("sendBatch")) {
    counts.queues.bound = true;
    return counting(value, (method, args) => {
      counts.queues.calls++;
      if (method === "send") counts.queues.messages++;
      if (method === "sendBatch") counts.queues.messages += (args[0] as unknown[]).length;
    });
  }
  if (has("head") && has("createMultipartUpload")) {
    counts.r2.bound = true;
    return counting(value, (method) => {
      if (R2_CLASS_A.has(method)) counts.r2.classA++;
      if (R2_CLASS_B.has(method)) counts.r2.classB++;
    });
  }
  return value;
}

/** The env the worker sees: made once per env the runtime passes, as the deployed worker's is. */
let wrapped: { from: Env; env: Env } | undefined;

function wrap(env: Env): Env {
  if (wrapped?.from === env) return wrapped.env;
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) out[name] = countingOther(value);
  out.MIRROR_CONFIG = countingKv(env.MIRROR_CONFIG);
  if (env.MIRROR_STATS) out.MIRROR_STATS = countingStats(env.MIRROR_STATS);
  if (env.MIRROR_ANALYTICS) out.MIRROR_ANALYTICS = countingAnalytics(env.MIRROR_ANALYTICS);
  wrapped = { from: env, env: out as unknown as Env };
  return wrapped.env;
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const bound = wrap(env);
    if (request.url.endsWith("/__bench/cost")) return Response.json(counts);
    return worker.fetch(request, bound, ctx);
  },
  scheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext) {
    worker.scheduled(controller, wrap(env), ctx);
  },
} satisfies ExportedHandler<Env>;

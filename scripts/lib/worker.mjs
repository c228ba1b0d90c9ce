/**
 * @module scripts/lib/worker
 * Runs the bundled worker in workerd through Miniflare's API, with a local KV namespace:
 * what the end-to-end tests, the fault suite and the benchmarks use (`wrangler dev` adds a
 * proxy of its own and is several times slower).
 */
import { dirname, join } from "node:path";
import { Log, LogLevel, Miniflare } from "miniflare";
import { CAPTURES_BINDING } from "../../src/capture/binding.js";
import { clusterKey, KV_BINDING, routeKey } from "../../src/store/keys.js";
import { localConfig } from "./wrangler-config.mjs";

/**
 * @param {object} options
 * @param {string} options.scriptPath        from buildWorker()
 * @param {Record<string, string>} [options.vars]
 * @param {Record<string, unknown>} [options.policies]  KV entries to seed: key → JSON value
 * @param {(line: string) => void} [options.onLog]     receives the worker's console output
 * @param {boolean} [options.withoutKv]  no MIRROR_CONFIG binding at all: the policy store is unavailable
 * @param {boolean} [options.withoutStats]  no MIRROR_STATS Durable Object (a script that does not export MirrorStatsShard)
 * @param {boolean} [options.analytics]  bind MIRROR_ANALYTICS to a local Analytics Engine dataset (optional when deployed)
 * @param {boolean} [options.withoutCaptures]  no MIRROR_CAPTURES R2 bucket: capture is off
 * @param {string} [options.persistTo]  read KV from this wrangler --persist-to directory (what `wrangler dev` and `policy --local` use)
 * @param {number} [options.inspectorPort]  expose workerd's V8 inspector (CPU profiles)
 * @param {number} [options.isolates]  run the script as this many workers (one isolate each, each
 *   on its own port, all sharing KV and the MIRROR_STATS objects), as a zone's traffic lands on
 *   many isolates; `urls` lists them
 * @param {boolean} [options.direct]  also serve the first worker on a socket of its own, with no
 *   Miniflare entry worker in front, as a deployed worker is reached; `directUrl` is its address.
 *   (The entry worker passes each request on with a `fetch` of its own, and workerd's `fetch`
 *   makes a request carrying `Upgrade: websocket` a WebSocket GET before the worker sees it.)
 * @param {object} [options.spool]  the spool as wrangler.toml declares it (its queues, the first
 *   worker as the consumer, the bucket), local and real; these change it for a test
 * @param {{ maxBatchSize?: number, maxBatchTimeout?: number, maxRetries?: number }} [options.spool.consumer]  the consumer's settings over wrangler.toml's
 * @param {"inspect" | "redrive"} [options.spool.deadLetters]  who consumes the dead-letter queue:
 *   "inspect", a worker of the test's that keeps what it receives (`deadLetters()`); "redrive",
 *   the first worker itself, which spools dead copies again (README "Dead copies"); by default no
 *   one, and Miniflare drops what is sent to a queue without a consumer
 * @param {boolean} [options.withoutSpool]  no spool bindings at all: durable copies are sent once
 */
export async function startWorker(options) {
  const local = await localConfig();
  const isolates = options.isolates ?? 1;
  const kv = options.persistTo
    ? { kvNamespaces: { [KV_BINDING]: local.namespaceId } }
    : options.withoutKv
      ? {}
      : { kvNamespaces: [KV_BINDING] };
  const bindings = {
    PRIMARY_ORIGIN: "",
    POLICY_CACHE_TTL_MS: "5000",
    LOG_LEVEL: "info",
    // Tests read outcomes from the log: every line, unless a test asks for the deployed sampling.
    LOG_SAMPLE_RATE: "1",
    STATS_FLUSH_MS: "0",
    ...options.vars,
  };
  const spool = options.withoutSpool ? undefined : spoolConfig(local, options.spool ?? {});
  /** @param {number} i */
  const worker = (i) => ({
    name: `edge-mirror-${i}`,
    modules: true,
    scriptPath: options.scriptPath,
    // Module names are relative to this root; a bundle outside the project must still load.
    modulesRoot: dirname(options.scriptPath),
    compatibilityDate: local.compatibilityDate,
    modulesRules: local.modulesRules,
    ...kv,
    ...(options.analytics ? { analyticsEngineDatasets: { MIRROR_ANALYTICS: { dataset: "edge_mirror" } } } : {}),
    // One bucket of each for every isolate, as in production.
    r2Buckets: {
      ...spool?.buckets,
      ...(options.withoutCaptures ? {} : { [CAPTURES_BINDING]: local.r2Buckets[CAPTURES_BINDING] ?? CAPTURES_BINDING }),
    },
    ratelimits: local.ratelimits,
    ...(options.withoutStats
      ? {}
      : {
          durableObjects: {
            MIRROR_STATS: {
              className: "MirrorStatsShard",
              useSQLite: true,
              // Every isolate writes to the same objects, as in production.
              ...(i > 0 ? { scriptName: "edge-mirror-0" } : {}),
            },
          },
        }),
    bindings,
    ...(spool
      ? {
          queueProducers: spool.producers,
          // A queue has one consumer: the first isolate.
          ...(i === 0 ? { queueConsumers: spool.consumers } : {}),
        }
      : {}),
    ...(i > 0 || options.direct ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
  });
  const mf = new Miniflare({
    workers: [
      ...Array.from({ length: isolates }, (_, i) => worker(i)),
      ...(spool?.inspector ? [deadLetterInspector(spool.inspector)] : []),
    ],
    ...(options.persistTo ? { kvPersist: join(options.persistTo, "v3", "kv") } : {}),
    host: "127.0.0.1",
    port: 0,
    // MINIFLARE_LOG=1 shows Miniflare's own lines: each queue batch delivered and each retry.
    ...(process.env.MINIFLARE_LOG ? { log: new Log(LogLevel.DEBUG) } : {}),
    ...(options.inspectorPort ? { inspectorPort: options.inspectorPort } : {}),
    handleRuntimeStdio: (
      /** @type {import("node:stream").Readable} */ stdout,
      /** @type {import("node:stream").Readable} */ stderr,
    ) => {
      if (options.onLog) return pipeLines([stdout, stderr], options.onLog);
      pipeLines([stdout], printUnlessClientHungUp(process.stdout));
      pipeLines([stderr], printUnlessClientHungUp(process.stderr));
    },
  });
  const url = await mf.ready;
  // Without a binding there is no namespace to hand out; callers that asked for none never use it.
  const namespace = options.withoutKv
    ? /** @type {Awaited<ReturnType<Miniflare["getKVNamespace"]>>} */ (/** @type {unknown} */ (null))
    : await mf.getKVNamespace(KV_BINDING);
  for (const [key, value] of Object.entries(options.policies ?? {})) {
    await namespace.put(key, typeof value === "string" ? value : JSON.stringify(value));
  }
  const urls = [url.origin];
  for (let i = 1; i < isolates; i++) urls.push((await mf.unsafeGetDirectURL(`edge-mirror-${i}`)).origin);
  const directUrl = options.direct ? (await mf.unsafeGetDirectURL("edge-mirror-0")).origin : undefined;
  const captures = options.withoutCaptures ? undefined : await mf.getR2Bucket(CAPTURES_BINDING);
  return {
    mf,
    url: url.origin,
    urls,
    directUrl,
    kv: namespace,
    captures,
    /**
     * What the dead-letter queue's inspector received (`spool.deadLetters: "inspect"`), in order:
     * each dead copy's route, mirror, request id, body (its kind, size and SHA-256) and cause.
     * @returns {Promise<DeadLetter[]>}
     */
    async deadLetters() {
      const inspector = await mf.getWorker(DEAD_LETTER_INSPECTOR);
      return /** @type {Promise<DeadLetter[]>} */ ((await inspector.fetch("http://inspector/")).json());
    },
    /** The keys of every spooled body the bucket holds. */
    async spoolBodies() {
      const bucket = await mf.getR2Bucket("MIRROR_SPOOL_BODIES");
      const listed = await bucket.list({ prefix: "spool/" });
      return listed.objects.map((o) => o.key);
    },
    dispose: () => mf.dispose(),
  };
}

/**
 * @typedef {object} DeadLetter
 * @property {string} route
 * @property {string} mirror
 * @property {string} requestId
 * @property {string} url
 * @property {{ kind: string, size: number, sha256?: string }} body
 * @property {{ at: number, attempts: number, cause: string }} dead
 */

const DEAD_LETTER_INSPECTOR = "dead-letter-inspector";

/**
 * The spool's Miniflare settings from wrangler.toml's: producers and bucket for every isolate,
 * the consumer (the test's settings over wrangler.toml's) for the first, and who reads the
 * dead-letter queue.
 * @param {Awaited<ReturnType<typeof localConfig>>} local
 * @param {{ consumer?: Record<string, number>, deadLetters?: "inspect" | "redrive" }} options
 */
function spoolConfig(local, options) {
  const spoolQueue = local.queueProducers.MIRROR_SPOOL?.queueName;
  const deadQueue = local.queueProducers.MIRROR_DEAD_LETTERS?.queueName;
  if (!spoolQueue || !deadQueue)
    throw new Error("wrangler.toml declares no MIRROR_SPOOL and MIRROR_DEAD_LETTERS producers");
  /** @type {Record<string, object>} */
  const consumers = {
    [spoolQueue]: { ...local.queueConsumers[spoolQueue], ...options.consumer },
    ...(options.deadLetters === "redrive" ? { [deadQueue]: { maxBatchTimeout: 1 } } : {}),
  };
  return {
    producers: local.queueProducers,
    consumers,
    buckets: { MIRROR_SPOOL_BODIES: local.r2Buckets.MIRROR_SPOOL_BODIES ?? "MIRROR_SPOOL_BODIES" },
    inspector: options.deadLetters === "inspect" ? deadQueue : undefined,
  };
}

/**
 * A worker of the tests' own that consumes the dead-letter queue and keeps a summary of each
 * dead copy (its body hashed, not kept), served as JSON.
 * @param {string} queue
 */
function deadLetterInspector(queue) {
  return {
    name: DEAD_LETTER_INSPECTOR,
    modules: true,
    compatibilityDate: "2026-04-20",
    queueConsumers: { [queue]: { maxBatchTimeout: 1 } },
    script: `
      const seen = [];
      const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
      export default {
        async queue(batch) {
          for (const message of batch.messages) {
            const copy = message.body;
            const body = { kind: copy.body.kind, size: copy.body.kind === "inline" ? copy.body.bytes.byteLength : copy.body.size ?? 0 };
            if (copy.body.kind === "inline") body.sha256 = hex(await crypto.subtle.digest("SHA-256", copy.body.bytes));
            seen.push({ route: copy.route, mirror: copy.mirror, requestId: copy.requestId, url: copy.url, body, dead: copy.dead });
            message.ack();
          }
        },
        fetch() {
          return Response.json(seen);
        },
      };
    `,
  };
}

/**
 * workerd's line for a client that closed its connection before the answer was written — a
 * browser leaving a page while a poll is in flight: nothing the worker did, and no test's concern.
 * The line after it is its stack.
 */
const CLIENT_HUNG_UP =
  /^workerd\/server\/server\.c\+\+:\d+: error: .*: disconnected: ::write\(fd, buffer\.begin\(\), buffer\.size\(\)\): Broken pipe$/;

/** workerd's output printed where Miniflare prints it by default, less the lines above. */
function printUnlessClientHungUp(/** @type {NodeJS.WriteStream} */ out) {
  let skipStack = false;
  return (/** @type {string} */ line) => {
    if (CLIENT_HUNG_UP.test(line)) skipStack = true;
    else if (skipStack && line.startsWith("stack: ")) skipStack = false;
    else {
      skipStack = false;
      out.write(`${line}\n`);
    }
  };
}

/**
 * @param {import("node:stream").Readable[]} streams
 * @param {(line: string) => void} onLog
 */
function pipeLines(streams, onLog) {
  for (const stream of streams) {
    let buffered = "";
    stream.on("data", (/** @type {Buffer} */ chunk) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) if (line.trim()) onLog(line);
    });
  }
}

/**
 * `{ clusters, routes }` → the KV entries of those clusters and routes (src/store/keys.js).
 * @param {{ clusters?: Record<string, unknown>, routes?: Array<{ id: string, [field: string]: unknown }> }} file
 * @returns {Record<string, unknown>}
 */
export function policyEntries(file) {
  /** @type {Record<string, unknown>} */
  const entries = {};
  for (const [name, cluster] of Object.entries(file.clusters ?? {})) entries[clusterKey(name)] = cluster;
  for (const route of file.routes ?? []) entries[routeKey(route.id)] = route;
  return entries;
}

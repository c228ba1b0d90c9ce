/**
 * @module scripts/lib/worker
 * Runs the bundled worker in workerd through Miniflare's API, with a local KV namespace:
 * what the end-to-end tests, the fault suite and the benchmarks use (`wrangler dev` adds a
 * proxy of its own and is several times slower).
 */
import { dirname, join } from "node:path";
import { Miniflare } from "miniflare";
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
    // One bucket for every isolate, as in production.
    ...(options.withoutCaptures ? {} : { r2Buckets: [CAPTURES_BINDING] }),
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
    ...(i > 0 || options.direct ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
  });
  const mf = new Miniflare({
    workers: Array.from({ length: isolates }, (_, i) => worker(i)),
    ...(options.persistTo ? { kvPersist: join(options.persistTo, "v3", "kv") } : {}),
    host: "127.0.0.1",
    port: 0,
    ...(options.inspectorPort ? { inspectorPort: options.inspectorPort } : {}),
    ...(options.onLog
      ? {
          handleRuntimeStdio: (
            /** @type {import("node:stream").Readable} */ stdout,
            /** @type {import("node:stream").Readable} */ stderr,
          ) => pipeLines([stdout, stderr], /** @type {(line: string) => void} */ (options.onLog)),
        }
      : {}),
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
  return { mf, url: url.origin, urls, directUrl, kv: namespace, captures, dispose: () => mf.dispose() };
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

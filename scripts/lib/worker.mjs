/**
 * @module scripts/lib/worker
 * Runs the bundled worker in workerd through Miniflare's API, with a local KV namespace:
 * what the end-to-end tests, the fault suite and the benchmarks use (`wrangler dev` adds a
 * proxy of its own and is several times slower).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { clusterKey, KV_BINDING, routeKey } from "../../src/store/keys.js";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Bundles `src/index.ts` with wrangler (as `wrangler deploy` would) into `outdir`; returns the script path. */
export function buildWorker(outdir = join(ROOT, ".wrangler/e2e-build")) {
  execFileSync(
    process.execPath,
    [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--env", "", "--outdir", outdir],
    {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const script = join(outdir, "index.js");
  if (!existsSync(script)) throw new Error(`wrangler did not write ${script}`);
  return script;
}

/**
 * What local runs share with `wrangler dev`, read from the wrangler configuration as wrangler reads
 * it (for `env`, or the top level): where the policies' local KV data lives, the rate limits and
 * the compatibility date. Loading wrangler's parser costs about 2 s (a 12 MB bundle), and every
 * local `policy` command is a process of its own, so what it read is kept in `.wrangler/` beside
 * the configuration, keyed by the configuration's path and text, the environment and wrangler's
 * version: any change to one of them reads the configuration through wrangler again.
 * @param {{ config?: string | undefined, env?: string | undefined }} [where]
 */
export async function localConfig(where = {}) {
  const path = resolve(where.config ?? join(ROOT, "wrangler.toml"));
  const cacheFile = join(dirname(path), ".wrangler", "edge-mirror", "config.json");
  let key;
  try {
    const { version } = JSON.parse(readFileSync(join(ROOT, "node_modules/wrangler/package.json"), "utf8"));
    key = createHash("sha256")
      .update(JSON.stringify([version, path, where.env ?? "", readFileSync(path, "utf8")]))
      .digest("hex");
    const cached = JSON.parse(readFileSync(cacheFile, "utf8"));
    if (cached.key === key) return cached.config;
  } catch {
    // No configuration (wrangler says so below), no cache yet, or an unreadable one.
  }
  const config = await readWithWrangler(path, where.env);
  if (key) {
    try {
      mkdirSync(dirname(cacheFile), { recursive: true });
      const temporary = `${cacheFile}.${process.pid}`;
      writeFileSync(temporary, JSON.stringify({ key, config }));
      renameSync(temporary, cacheFile);
    } catch {
      // A read-only checkout reads through wrangler every time.
    }
  }
  return config;
}

/** @param {string} path @param {string | undefined} env */
async function readWithWrangler(path, env) {
  const { unstable_readConfig } = await import("wrangler");
  /** @type {import("wrangler").Unstable_Config} */
  const config = unstable_readConfig({ config: path, ...(env ? { env } : {}) });
  const kv = config.kv_namespaces.find((ns) => ns.binding === KV_BINDING);
  return {
    // Without an id (wrangler creates the namespace on deploy) wrangler dev keeps the data under the binding's name.
    /** @type {string | undefined} */
    namespaceId: kv ? (kv.id ?? kv.binding) : undefined,
    /** @type {Record<string, { simple: { limit: number, period: 10 | 60 } }>} */
    ratelimits: Object.fromEntries(config.ratelimits.map((r) => [r.name, { simple: r.simple }])),
    compatibilityDate: config.compatibility_date ?? "2026-04-20",
    /** wrangler's default state directory, `.wrangler/state` beside the configuration. */
    defaultPersistTo: join(config.configPath ? dirname(config.configPath) : process.cwd(), ".wrangler/state"),
  };
}

/**
 * The local KV state of the policies, opened on its own: a Miniflare holding nothing but that
 * namespace, on the directory `wrangler dev` (and its `--persist-to`) uses. Nothing else of the
 * worker is started, so nothing else warns.
 * @param {{ persistTo?: string | undefined, config?: string | undefined, env?: string | undefined }} [options]
 */
export async function openLocalKv(options = {}) {
  const local = await localConfig(options);
  if (!local.namespaceId) {
    throw new Error(
      `no KV binding ${KV_BINDING} in the wrangler configuration${options.env ? ` (env ${options.env})` : ""}`,
    );
  }
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch: () => new Response(null, { status: 404 }) };",
    compatibilityDate: local.compatibilityDate,
    kvNamespaces: { [KV_BINDING]: local.namespaceId },
    kvPersist: join(resolve(options.persistTo ?? local.defaultPersistTo), "v3", "kv"),
    host: "127.0.0.1",
    port: 0,
  });
  const kv = await mf.getKVNamespace(KV_BINDING);
  return { kv, dispose: () => mf.dispose() };
}

/**
 * @param {object} options
 * @param {string} options.scriptPath        from buildWorker()
 * @param {Record<string, string>} [options.vars]
 * @param {Record<string, unknown>} [options.policies]  KV entries to seed: key → JSON value
 * @param {(line: string) => void} [options.onLog]     receives the worker's console output
 * @param {boolean} [options.withoutKv]  no MIRROR_CONFIG binding at all: the policy store is unavailable
 * @param {boolean} [options.withoutStats]  no MIRROR_STATS Durable Object (a script that does not export MirrorStatsShard)
 * @param {string} [options.persistTo]  read KV from this wrangler --persist-to directory (what `wrangler dev` and `policy --local` use)
 * @param {number} [options.inspectorPort]  expose workerd's V8 inspector (CPU profiles)
 * @param {number} [options.isolates]  run the script as this many workers (one isolate each, each
 *   on its own port, all sharing KV and the MIRROR_STATS objects), as a zone's traffic lands on
 *   many isolates; `urls` lists them
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
    ...kv,
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
    ...(i > 0 ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
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
  return { mf, url: url.origin, urls, kv: namespace, dispose: () => mf.dispose() };
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

/**
 * The pid of the process listening on `port` on loopback (Linux): with Miniflare, the workerd
 * process that runs the worker, whose CPU time the benchmarks read from /proc/<pid>/stat.
 * @param {number} port
 * @returns {number | undefined}
 */
export function listeningPid(port) {
  const inodes = new Set();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (!local || cols[3] !== "0A") continue;
      if (Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) inodes.add(`socket:[${cols[9]}]`);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let fds;
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (inodes.has(readlinkSync(`/proc/${entry}/fd/${fd}`))) return Number(entry);
      } catch {
        // The descriptor closed while we looked.
      }
    }
  }
  return undefined;
}

/**
 * CPU time (user + system) a process has used so far, in milliseconds.
 * @param {number} pid
 */
export function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS;
}

/**
 * The peak resident memory of a process so far (`VmHWM`), in MiB: a count of bytes, not a timing.
 * @param {number} pid
 */
export function peakMemoryMiB(pid) {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) / 1024;
}

/** USER_HZ: 100 on every Linux the project runs on; `getconf CLK_TCK` says so. */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

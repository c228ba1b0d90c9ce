/**
 * @module scripts/bench/setup
 * What the modes of `npm run bench` share: a worker bundled as the bench runs it
 * (as wrangler would, without wrangler's cost), the bench's origins — a primary, a fast mirror
 * and a slow one — in a process of their own (origins-process.mjs), wrk runs and what they
 * counted, and the median their rounds are summed up by.
 */
import { execFileSync, fork, spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { ROOT } from "../lib/build.mjs";

/**
 * Bundles `entry` into `outfile` and returns `outfile`. Minified unless a profile needs
 * edge-mirror's own function names.
 * @param {string} entry @param {string} outfile @param {{ minify?: boolean }} [options]
 */
export function bundleWorker(entry, outfile, options = {}) {
  mkdirSync(dirname(outfile), { recursive: true });
  execFileSync(
    join(ROOT, "node_modules/.bin/esbuild"),
    [
      entry,
      "--bundle",
      "--format=esm",
      "--platform=neutral",
      "--main-fields=module,main",
      // Runtime modules (the Durable Object base class) are provided by workerd, as in wrangler's bundle.
      "--external:cloudflare:*",
      ...(options.minify === false ? [] : ["--minify"]),
      `--outfile=${outfile}`,
      "--log-level=error",
    ],
    { cwd: ROOT },
  );
  return outfile;
}

/**
 * Starts the origins; the slow mirror answers after `slowMs`.
 * @param {number} slowMs
 */
export async function startBenchOrigins(slowMs) {
  const child = fork(join(ROOT, "scripts/bench/origins-process.mjs"), [String(slowMs)], { stdio: "inherit" });
  /** @type {{ primary: number, fast: number, slow: number }} */
  const ports = await new Promise((resolve) => child.once("message", (/** @type {any} */ m) => resolve(m.ports)));
  const url = (/** @type {number} */ port) => `http://127.0.0.1:${port}`;
  return {
    ports,
    primary: url(ports.primary),
    fast: url(ports.fast),
    slow: url(ports.slow),
    /**
     * Requests and connections received by the fast and the slow mirror so far.
     * @returns {Promise<{ count: number, connections: number }>}
     */
    received() {
      return new Promise((resolve) => {
        child.once("message", (/** @type {any} */ m) => resolve({ count: m.count, connections: m.connections }));
        child.send("count");
      });
    },
    stop() {
      child.send("stop");
    },
  };
}

/** The floor the bench measures edge-mirror against: the least code that proxies and mirrors. */
export const FLOOR_SCRIPT = join(ROOT, "scripts/bench/floor.mjs");

/**
 * What every bench worker, edge-mirror's or the floor's, runs with: the bench's origins and the
 * deployed defaults — failures always logged, successful copies 1 in 100, counters batched as in
 * production (one write per isolate every 5 s).
 * @param {{ primary: string, slow: string }} origins
 * @param {number} [policyTtlMs] `POLICY_CACHE_TTL_MS`, the deployed 5 s unless a run says otherwise
 */
export function benchVars(origins, policyTtlMs = 5000) {
  return {
    PRIMARY_ORIGIN: origins.primary,
    MIRROR_ORIGIN: origins.slow,
    LOG_LEVEL: "info",
    LOG_SAMPLE_RATE: "0.01",
    POLICY_CACHE_TTL_MS: String(policyTtlMs),
    STATS_FLUSH_MS: "5000",
  };
}

/**
 * The middle of `values` (the mean of the two middle ones for an even count); 0 for none.
 * @param {number[]} values
 */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * The path of the command `name` (wrk, nginx), or "" when it is not installed.
 * @param {string} name
 */
export function findCommand(name) {
  return spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).stdout.trim();
}

/**
 * Runs wrk (`wrkBin`, from `findCommand`) with `argv` and resolves with its report, together with
 * the requests it completed and the answers that were not 2xx or 3xx.
 * @param {string} wrkBin @param {string[]} argv
 * @returns {Promise<{ out: string, total: number, non2xx: number }>}
 */
export async function runWrk(wrkBin, argv) {
  const child = spawn(wrkBin, argv, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (chunk) => {
    out += chunk;
  });
  await new Promise((resolve) => child.on("close", resolve));
  return {
    out,
    total: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}

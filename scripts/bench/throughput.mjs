#!/usr/bin/env node
/**
 * `npm run bench`: edge-mirror side by side with a bare proxy worker (the floor) and, when
 * installed, nginx `mirror`, all in one run so that the ratios are fair. The worker runs in
 * workerd through Miniflare's API (not `wrangler dev`, whose own proxy dominates). Only
 * loopback traffic; every scenario is bounded by --duration.
 *
 * The scenarios run in rounds, each round in fresh workerd processes warmed up by a second of
 * their own load; every other round runs the list backwards. The table shows each scenario's
 * median, and a ratio is the median of its per-round ratios, so that drift on a shared machine
 * falls on both sides of it. The hypervisor's share of the CPU time (steal) is reported.
 *
 *   npm run bench -- --duration 2 --rounds 2 --connections 10 [--only A,B] [--json out.json] [--write BENCHMARKS.md]
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import { buildWorker, ROOT, uploadedModules } from "../lib/build.mjs";
import { cpuMs, listeningPid } from "../lib/proc.mjs";
import { writeBetweenMarkers } from "../lib/report.mjs";
import { startWorker } from "../lib/worker.mjs";
import { BENCH_PATH, benchPolicies, LAST_ROUTE_PATH } from "./policies.mjs";
import { benchVars, bundleWorker, FLOOR_SCRIPT, findCommand, median, runWrk, startBenchOrigins } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "1" },
    rounds: { type: "string", default: "2" },
    connections: { type: "string", default: "10" },
    "slow-ms": { type: "string", default: "300" },
    "policy-ttl-ms": { type: "string", default: "5000" },
    json: { type: "string" },
    write: { type: "string" },
    only: { type: "string" },
    load: { type: "string" },
  },
});
const duration = Number(args.duration);
const rounds = Number(args.rounds);
const connections = Number(args.connections);
const slowMs = Number(args["slow-ms"]);
const policyTtlMs = Number(args["policy-ttl-ms"]);
const wrkBin = findCommand("wrk");
/** wrk (C, one thread) leaves more of the two cores to workerd than autocannon does; used when installed. */
const loadTool = args.load ?? (wrkBin ? "wrk" : "autocannon");
if (loadTool === "wrk" && !wrkBin) throw new Error("--load wrk: wrk is not installed (apt-get install wrk)");
// wrk reads whole seconds only, and answers anything else with its usage text: rows of 0 rps.
if (loadTool === "wrk" && !(Number.isInteger(duration) && duration >= 1)) {
  throw new Error(`--duration ${args.duration}: wrk runs whole seconds, 1 or more (or pass --load autocannon)`);
}

const buildDir = join(ROOT, ".wrangler/bench");
mkdirSync(buildDir, { recursive: true });

/**
 * The deployable bundle, measured as `wrangler deploy` measures its upload: every module (the
 * entry and any beside it) as one gzipped stream.
 */
function bundleSize() {
  const bytes = Buffer.concat(uploadedModules(buildWorker(join(buildDir, "deploy"))).map((m) => readFileSync(m)));
  return { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
}

const origins = await startBenchOrigins(slowMs);
const mirrorsReceived = () => origins.received();

const size = bundleSize();
// The real worker behind a KV read counter (scripts/bench/counting-entry.ts).
const edgeScript = bundleWorker(
  join(ROOT, "scripts/bench/counting-entry.ts"),
  join(buildDir, "edge-mirror-counting.js"),
);

/** H: the floor with the header changes a proxy must make (floor-headers.ts). */
const floorHeadersScript = bundleWorker(
  join(ROOT, "scripts/bench/floor-headers.ts"),
  join(buildDir, "floor-headers.js"),
);

const { noMatch, oneFast, oneFastDurable, threeSlow, thousandRoutes, captured } = benchPolicies({
  fast: origins.fast,
  slow: origins.slow,
});
const body256k = Buffer.alloc(256 * 1024, 7);

// Scenarios that a ratio compares run next to each other (A, H and B; C and G; A3r, D and A3; A3/1 and D/1),
// and every other round runs the list backwards: each pair is measured back to back, and
// neither side always goes first.
/** @type {Array<{ id: string, what: string, worker?: "floor" | "floor-headers" | "edge", vars?: Record<string,string>, policies?: Record<string, unknown>, path?: string, body?: Buffer, connections?: number, nginx?: "plain" | "mirror" }>} */
const scenarios = [
  { id: "A", what: "bare Worker: fetch to the primary (floor)", worker: "floor" },
  {
    id: "H",
    what: "A plus the header changes a correct proxy makes (edge-mirror's own functions): the floor B is held to",
    worker: "floor-headers",
  },
  {
    id: "B",
    what: "edge-mirror, no matching route",
    worker: "edge",
    policies: noMatch,
  },
  {
    id: "C",
    what: "edge-mirror, one route, one fast mirror at 100 %",
    worker: "edge",
    policies: oneFast,
  },
  {
    id: "G",
    what: "C with the mirror durable (healthy: nothing spooled)",
    worker: "edge",
    policies: oneFastDurable,
  },
  {
    id: "A3r",
    what: "A3, reading the mirrors' answers to the end (their connections reused, as in D)",
    worker: "floor",
    vars: { MIRROR_COUNT: "3", MIRROR_READ: "1" },
  },
  {
    id: "D",
    what: `edge-mirror, three mirrors, each ${slowMs} ms slow`,
    worker: "edge",
    policies: threeSlow,
  },
  {
    id: "A3",
    what: `bare Worker + 3 waitUntil fetches to the ${slowMs} ms mirror (floor)`,
    worker: "floor",
    vars: { MIRROR_COUNT: "3" },
  },
  {
    // The same code as A3 in a workerd of its own: how far two identical scenarios drift apart
    // in one run, against which the other ratios' distance from their targets can be read.
    id: "A3-2",
    what: "A3 again, in a workerd of its own (the run's noise)",
    worker: "floor",
    vars: { MIRROR_COUNT: "3" },
  },
  {
    id: "E",
    what: "edge-mirror, POST 256 KiB bodies, one fast mirror",
    worker: "edge",
    body: body256k,
    policies: oneFast,
  },
  {
    id: "F",
    what: "edge-mirror, 1,000 routes, request matches the last",
    worker: "edge",
    path: LAST_ROUTE_PATH,
    policies: thousandRoutes,
  },
  { id: "A3/1", what: "A3 with one connection", worker: "floor", vars: { MIRROR_COUNT: "3" }, connections: 1 },
  { id: "D/1", what: "D with one connection", worker: "edge", connections: 1, policies: threeSlow },
  { id: "B/1", what: "B with one connection", worker: "edge", connections: 1, policies: noMatch },
];

// Capture: C's route again (Kc), beside the same route capturing 1 % (K1) and 100 % (K100) of its
// requests to the R2 bucket every edge-mirror worker here has, with the deployed 5 s batches.
scenarios.push(
  { id: "Kc", what: "C again, beside K1 and K100 (the same route without capture)", worker: "edge", policies: oneFast },
  { id: "K1", what: "C's route capturing 1 % of its requests to R2", worker: "edge", policies: captured(1) },
  { id: "K100", what: "C's route capturing every request to R2", worker: "edge", policies: captured(100) },
);

const nginxBin = findCommand("nginx");
if (nginxBin) {
  scenarios.push(
    { id: "N0/1", what: "nginx proxy_pass, no mirror, one connection", nginx: "plain", connections: 1 },
    { id: "N/1", what: `nginx mirror to the ${slowMs} ms mirror, one connection`, nginx: "mirror", connections: 1 },
    { id: "N", what: `nginx mirror to the ${slowMs} ms mirror`, nginx: "mirror" },
  );
}

async function startNginx() {
  const dir = mkdtempSync(join(tmpdir(), "edge-mirror-nginx-"));
  const ports = await Promise.all([freePort(), freePort()]);
  const conf = `
daemon off; worker_processes 2; user root; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  upstream primary { server 127.0.0.1:${origins.ports.primary}; keepalive 64; }
  upstream shadow { server 127.0.0.1:${origins.ports.slow}; keepalive 64; }
  server { listen 127.0.0.1:${ports[0]};
    location / { proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://primary; } }
  server { listen 127.0.0.1:${ports[1]};
    location / { mirror /__mirror; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://primary; }
    location = /__mirror { internal; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://shadow$request_uri; } }
}`;
  writeFileSync(join(dir, "nginx.conf"), conf);
  const child = spawn(nginxBin, ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    const ok = await fetch(`http://127.0.0.1:${ports[0]}/`).then(
      () => true,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    plain: `http://127.0.0.1:${ports[0]}`,
    mirror: `http://127.0.0.1:${ports[1]}`,
    stop: () => child.kill("SIGQUIT"),
  };
}

async function freePort() {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const address = s.address();
      s.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** Waits until no mirror request has arrived for longer than one slow-mirror delay. */
async function settleMirrors() {
  let last = await mirrorsReceived();
  let quietSince = Date.now();
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && Date.now() - quietSince <= slowMs + 200) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await mirrorsReceived();
    if (now.count !== last.count) {
      last = now;
      quietSince = Date.now();
    }
  }
  return last;
}

/**
 * The machine's CPU time so far, from /proc/stat's first line: all of it, and what the
 * hypervisor took for other guests (steal), in clock ticks.
 */
function cpuTimes() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  return { total: fields.slice(0, 8).reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}

/** @param {{ total: number, steal: number }} before @param {{ total: number, steal: number }} after */
function stolenPercent(before, after) {
  const total = after.total - before.total;
  return total > 0 ? (100 * (after.steal - before.steal)) / total : 0;
}

/** What the counting entry reports (counting-entry.ts). @typedef {{ reads: number, loads: number, spool: { messages: number, r2Puts: number } }} Counts */
/** @type {Counts} */
const NO_COUNTS = { reads: 0, loads: 0, spool: { messages: 0, r2Puts: 0 } };

const only = args.only ? new Set(args.only.split(",")) : undefined;
const selected = only ? scenarios.filter((s) => only.has(s.id)) : scenarios;
const nginx = nginxBin && selected.some((s) => s.nginx) ? await startNginx() : undefined;
/**
 * Starts a workerd for every selected scenario, all in parallel (startup is most of a round's
 * fixed cost), and returns them by scenario id.
 */
async function startAll() {
  /** @type {Map<string, { target: string, pid: number | undefined, dispose: () => Promise<void> }>} */
  const started = new Map();
  await Promise.all(
    selected.map(async (s) => {
      if (s.nginx && nginx) {
        started.set(s.id, {
          target: s.nginx === "plain" ? nginx.plain : nginx.mirror,
          pid: undefined,
          dispose: async () => {},
        });
        return;
      }
      const worker = await startWorker({
        scriptPath:
          s.worker === "floor" ? FLOOR_SCRIPT : s.worker === "floor-headers" ? floorHeadersScript : edgeScript,
        vars: { ...benchVars(origins, policyTtlMs), ...s.vars },
        policies: s.policies,
        withoutStats: s.worker !== "edge",
        withoutSpool: s.worker !== "edge",
        // The runtime's own output (stack traces of connections the load generator cut at the
        // end of a run) is not part of the report.
        onLog: () => {},
      });
      started.set(s.id, {
        target: worker.url,
        pid: listeningPid(Number(new URL(worker.url).port)),
        dispose: () => worker.dispose(),
      });
    }),
  );
  return started;
}

/** @type {Map<string, Array<{ rps: number, p50: number, p99: number, requests: number, errors: number, mirrors: number, mirrorConnections: number, kvReads: number, spoolWrites: number, extraLoads: number, cpuUs: number | undefined }>>} */
const samples = new Map(selected.map((s) => [s.id, []]));
const WARM_UP_SECONDS = 1;
const stealBefore = cpuTimes();
for (let round = 0; round < rounds; round++) {
  // Every round in workerd processes of its own: one process can run a tenth or more slower than
  // another with the same code, for as long as it lives, and would otherwise tilt a whole run.
  const running = await startAll();
  for (const s of round % 2 ? [...selected].reverse() : selected) {
    const { target, pid } = /** @type {{ target: string, pid: number | undefined }} */ (running.get(s.id));
    const path = s.path ?? BENCH_PATH;
    const method = s.body ? "POST" : "GET";
    // A fresh process: one second of the scenario's own load first, so that the isolate's code
    // is optimised, the policy snapshot loaded and the keep-alive connections open.
    if (s.connections === 1) await sequential(target + path, WARM_UP_SECONDS);
    else await load(target + path, s.connections ?? connections, method, s.body, WARM_UP_SECONDS);
    // The warm-up's copies, and any still in flight, are done before the measured seconds start.
    const mirrorsBefore = await settleMirrors();
    const kvBefore = s.worker === "edge" ? await kvReads(target) : NO_COUNTS;
    const cpuBefore = pid ? cpuMs(pid) : 0;
    const started = performance.now();
    const result =
      s.connections === 1
        ? await sequential(target + path, duration)
        : await load(target + path, s.connections ?? connections, method, s.body);
    const runMs = performance.now() - started;
    const kvAfter = s.worker === "edge" ? await kvReads(target) : NO_COUNTS;
    // The copies' CPU (waitUntil) is part of what a request costs: read it once they are done.
    const mirrorsAfter = await settleMirrors();
    const cpuUs = pid ? ((cpuMs(pid) - cpuBefore) * 1000) / Math.max(1, result.requests.total) : undefined;
    const mirrors = mirrorsAfter.count - mirrorsBefore.count;
    const mirrorConnections = mirrorsAfter.connections - mirrorsBefore.connections;
    samples.get(s.id)?.push({
      rps: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      requests: result.requests.total,
      errors: result.errors + result.non2xx + result.timeouts,
      mirrors,
      mirrorConnections,
      kvReads: kvAfter.reads - kvBefore.reads,
      spoolWrites: spoolWrites(kvAfter) - spoolWrites(kvBefore),
      // Loads beyond the one background refresh per TTL would mean requests waited on KV.
      extraLoads: Math.max(0, kvAfter.loads - kvBefore.loads - Math.ceil(runMs / policyTtlMs)),
      cpuUs,
    });
    console.error(
      `round ${round + 1} ${s.id.padEnd(5)} ${String(Math.round(result.requests.average)).padStart(6)} rps  p50 ${result.latency.p50} ms  p99 ${result.latency.p99} ms  cpu ${cpuUs === undefined ? "—" : `${Math.round(cpuUs)} µs`}/req  mirrors ${mirrors} (${mirrorConnections} connections)`,
    );
  }
  for (const { dispose } of running.values()) await dispose();
}
const stealPercent = stolenPercent(stealBefore, cpuTimes());

/** @param {number[]} values */
const sum = (values) => values.reduce((a, b) => a + b, 0);
const results = selected.map((s) => {
  const runs = samples.get(s.id) ?? [];
  const requests = sum(runs.map((r) => r.requests));
  return {
    id: s.id,
    what: s.what,
    connections: s.connections ?? connections,
    rps: Math.round(median(runs.map((r) => r.rps))),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    requests,
    errors: sum(runs.map((r) => r.errors)),
    mirrorRequests: sum(runs.map((r) => r.mirrors)),
    mirrorConnections: sum(runs.map((r) => r.mirrorConnections)),
    kvReadsPerRequest: s.worker === "edge" ? sum(runs.map((r) => r.kvReads)) / Math.max(1, requests) : undefined,
    spoolWrites: sum(runs.map((r) => r.spoolWrites)),
    cpuUs: runs.every((r) => r.cpuUs !== undefined)
      ? median(runs.map((r) => /** @type {number} */ (r.cpuUs)))
      : undefined,
    extraLoads: sum(runs.map((r) => r.extraLoads)),
  };
});
nginx?.stop();
origins.stop();

/**
 * Load at `conns` connections for `duration` seconds, with wrk when installed (one thread, so
 * that workerd keeps most of the two cores) or autocannon. Returns the fields of an autocannon
 * result that the report uses. Sockets the load generator cuts when time is up are not errors.
 * @param {string} url @param {number} conns @param {"GET" | "POST"} method @param {Buffer | undefined} body
 */
async function load(url, conns, method, body, seconds = duration) {
  if (loadTool !== "wrk") {
    const headers = body ? { "content-type": "application/octet-stream" } : {};
    return autocannon({ url, connections: conns, duration: seconds, method, body, headers });
  }
  const argv = ["-t1", `-c${conns}`, `-d${seconds}s`, "--latency"];
  if (body) {
    const script = join(buildDir, `post-${body.length}.lua`);
    writeFileSync(
      script,
      `wrk.method = "POST"\nwrk.headers["content-type"] = "application/octet-stream"\nwrk.body = string.rep("\\7", ${body.length})\n`,
    );
    argv.push("-s", script);
  }
  const { out, total, non2xx } = await runWrk(wrkBin, [...argv, url]);
  /** @param {string} text */
  const ms = (text) => {
    const m = /([\d.]+)(us|ms|s)/.exec(text);
    if (!m) return Number.NaN;
    const v = Number(m[1]);
    return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
  };
  const socket = /Socket errors: connect (\d+), read \d+, write \d+, timeout (\d+)/.exec(out);
  return {
    requests: { average: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0), total },
    latency: { p50: ms(/\s50%\s+(\S+)/.exec(out)?.[1] ?? ""), p99: ms(/\s99%\s+(\S+)/.exec(out)?.[1] ?? "") },
    errors: Number(socket?.[1] ?? 0),
    non2xx,
    timeouts: Number(socket?.[2] ?? 0),
  };
}

/**
 * One keep-alive connection, one request at a time, each timed with performance.now(): the
 * client latency without queueing, at a resolution autocannon's whole milliseconds cannot give.
 * Returns the fields of an autocannon result that the report uses.
 * @param {string} url
 * @param {number} seconds
 */
async function sequential(url, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  /** @type {number[]} */
  const latencies = [];
  let errors = 0;
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    const t0 = performance.now();
    const status = await new Promise((resolve) => {
      http
        .get(url, { agent }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        })
        .on("error", () => resolve(0));
    });
    latencies.push(performance.now() - t0);
    if (status !== 200) errors++;
  }
  agent.destroy();
  latencies.sort((a, b) => a - b);
  /** @param {number} q */
  const at = (q) =>
    Number((latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0).toFixed(3));
  const elapsed = (performance.now() - started) / 1000;
  return {
    requests: { average: latencies.length / elapsed, total: latencies.length },
    latency: { p50: at(0.5), p99: at(0.99) },
    errors,
    non2xx: 0,
    timeouts: 0,
  };
}

/** KV reads, policy loads and what was spooled by the worker's isolate so far. @param {string} origin */
async function kvReads(origin) {
  const res = await fetch(`${origin}/__bench/kv-reads`);
  return /** @type {Counts} */ (await res.json());
}

/** Queue messages and R2 objects written: what a spooled copy costs. @param {Counts} counts */
function spoolWrites(counts) {
  return counts.spool.messages + counts.spool.r2Puts;
}

if (only) process.exit(0);
const byId = new Map(results.map((r) => [r.id, r]));
/** @param {string} id */
const by = (id) => {
  const row = byId.get(id);
  if (!row) throw new Error(`scenario ${id} did not run`);
  return row;
};
/** @param {number} a @param {number} b */
const ratio = (a, b) => (b ? a / b : Number.NaN);
/**
 * `a` ÷ `b` for one measure, taken in each round (where the two ran back to back) and the median
 * of those: a minute in which the machine is slow falls on both sides of one round's ratio,
 * instead of on one side of a ratio of two medians.
 * @param {string} a @param {string} b @param {"rps" | "p50" | "p99" | "cpuUs"} measure
 */
const paired = (a, b, measure) => {
  // Both must have run: `by` says which did not.
  by(a);
  by(b);
  const over = samples.get(b) ?? [];
  return median(
    (samples.get(a) ?? []).map((run, i) => ratio(run[measure] ?? Number.NaN, over[i]?.[measure] ?? Number.NaN)),
  );
};
/** @type {Array<{ name: string, value: number, target: string, ok: (v: number) => boolean }>} */
const targets = [
  {
    name: "CPU/request B ÷ H (no route vs a proxy making the same header changes)",
    value: paired("B", "H", "cpuUs"),
    target: "≤ 1.08",
    ok: (v) => v <= 1.08,
  },
  { name: "rps(B) ÷ rps(H)", value: paired("B", "H", "rps"), target: "≥ 0.92", ok: (v) => v >= 0.92 },
  {
    name: "CPU/request D ÷ A3 (3 mirrors vs bare + 3 waitUntil fetches)",
    value: paired("D", "A3", "cpuUs"),
    target: "≤ 1.10",
    ok: (v) => v <= 1.1,
  },
  { name: "rps(D) ÷ rps(A3)", value: paired("D", "A3", "rps"), target: "≥ 0.90", ok: (v) => v >= 0.9 },
  { name: "p50(D/1) ÷ p50(A3/1)", value: paired("D/1", "A3/1", "p50"), target: "≤ 1.10", ok: (v) => v <= 1.1 },
  { name: "p99(D/1) ÷ p99(A3/1)", value: paired("D/1", "A3/1", "p99"), target: "≤ 1.20", ok: (v) => v <= 1.2 },
  { name: "rps(F) ÷ rps(C)", value: paired("F", "C", "rps"), target: "≥ 0.90", ok: (v) => v >= 0.9 },
  {
    name: "CPU/request G ÷ C (a healthy durable mirror vs best-effort)",
    value: paired("G", "C", "cpuUs"),
    target: "≤ 1.03",
    ok: (v) => v <= 1.03,
  },
  { name: "rps(G) ÷ rps(C)", value: paired("G", "C", "rps"), target: "≥ 0.97", ok: (v) => v >= 0.97 },
  {
    name: "queue messages and R2 writes in G (a healthy durable mirror spools nothing)",
    value: by("G").spoolWrites,
    target: "0",
    ok: (v) => v === 0,
  },
  {
    // Requests never wait on KV once a snapshot exists: every policy load in a run must be the
    // one background refresh per POLICY_CACHE_TTL_MS. Those refreshes are the only KV reads; the
    // table shows them spread over all requests.
    name: "KV reads awaited by requests, steady state (policy loads beyond one refresh per TTL, B–F)",
    value: sum(results.map((r) => r.extraLoads)),
    target: "0",
    ok: (v) => v === 0,
  },
  { name: "gzipped bundle (KB)", value: size.gzip / 1024, target: "≤ 80", ok: (v) => v <= 80 },
];
const reported = [
  { name: "CPU/request B ÷ A  (no route vs the bare proxy)", value: paired("B", "A", "cpuUs") },
  { name: "CPU/request H ÷ A  (the header changes alone)", value: paired("H", "A", "cpuUs") },
  { name: "rps(B) ÷ rps(A)", value: paired("B", "A", "rps") },
  { name: "CPU/request A3-2 ÷ A3  (identical code: the run's noise)", value: paired("A3-2", "A3", "cpuUs") },
  {
    name: "CPU/request D ÷ A3r  (like for like: both reuse their mirror connections)",
    value: paired("D", "A3r", "cpuUs"),
  },
  { name: "p99(D/1) ÷ p99(B/1)  (edge-mirror: slow mirrors vs none)", value: paired("D/1", "B/1", "p99") },
];
targets.push({
  name: "CPU/request K1 ÷ Kc (capture at 1 % vs the same route without)",
  value: paired("K1", "Kc", "cpuUs"),
  target: "≤ 1.03",
  ok: (v) => v <= 1.03,
});
reported.push({ name: "CPU/request K100 ÷ Kc  (capture at 100 %)", value: paired("K100", "Kc", "cpuUs") });
if (byId.has("N/1")) {
  reported.push({
    name: "p99(N/1) ÷ p99(N0/1)  (nginx: slow mirror vs none)",
    value: paired("N/1", "N0/1", "p99"),
  });
  reported.push({ name: "rps(N) ÷ rps(A)  (nginx mirror vs the bare Worker)", value: paired("N", "A", "rps") });
}

/** @param {string} name */
const packageVersion = (name) =>
  JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")).version;
/** @param {number} v */
const fmt = (v) =>
  Number.isFinite(v)
    ? Math.abs(v) >= 100
      ? v.toFixed(0)
      : v !== 0 && Math.abs(v) < 0.01
        ? v.toFixed(5)
        : v.toFixed(2)
    : String(v);
const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, workerd ${packageVersion("workerd")} via Miniflare ${packageVersion("miniflare")}${nginxBin ? `, ${spawnSync(nginxBin, ["-v"], { encoding: "utf8" }).stderr.trim()}` : ", nginx not installed"}`;
const table = [
  `Machine: ${machine}. Each scenario ${rounds} × ${duration} s (median shown; ratios are the median of each round's ratio), ${connections} connections by ${loadTool === "wrk" ? "wrk (one thread)" : "autocannon"}; one-connection rows are sequential keep-alive requests timed to the microsecond; mirror delay ${slowMs} ms; CPU is workerd's utime + stime per request, copies included; bundle ${fmt(size.raw / 1024)} KB raw, ${fmt(size.gzip / 1024)} KB gzipped; the hypervisor took ${fmt(stealPercent)} % of the machine's CPU time during the rounds (steal).`,
  "",
  "| scenario | what | conns | rps | p50 ms | p99 ms | CPU µs / request | requests | errors | mirror requests received | mirror connections opened | KV reads / request |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ...results.map(
    (r) =>
      `| ${r.id} | ${r.what} | ${r.connections} | ${r.rps} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${r.cpuUs === undefined ? "—" : Math.round(r.cpuUs)} | ${r.requests} | ${r.errors} | ${r.mirrorRequests} | ${r.mirrorConnections} | ${r.kvReadsPerRequest === undefined ? "—" : fmt(r.kvReadsPerRequest)} |`,
  ),
  "",
  "| ratio | measured | target | met |",
  "|---|---|---|---|",
  ...targets.map((t) => `| ${t.name} | ${fmt(t.value)} | ${t.target} | ${t.ok(t.value) ? "yes" : "**no**"} |`),
  ...reported.map((r) => `| ${r.name} | ${fmt(r.value)} | reported | — |`),
].join("\n");
console.log(table);

if (args.json)
  writeFileSync(
    args.json,
    JSON.stringify(
      {
        machine,
        duration,
        connections,
        slowMs,
        size,
        stealPercent,
        results,
        targets: targets.map((t) => ({ ...t, ok: t.ok(t.value) })),
      },
      null,
      2,
    ),
  );
if (args.write) {
  writeBetweenMarkers(args.write, "bench", table);
  console.error(`wrote the table into ${args.write}`);
}

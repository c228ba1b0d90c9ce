#!/usr/bin/env node
/**
 * `npm run bench -- --mode calls`: how often workerd does its costly things per request — enters the
 * worker's JavaScript, reads a stream, sets a timer, builds Headers, wraps an object — counted
 * exactly with Linux uprobes on workerd's own functions while a bench scenario runs at a fixed
 * rate. CPU time on a shared machine drifts by 5–15 % between identical runs; these counts do
 * not drift at all, so a change to the request path shows here even when the bench cannot
 * tell it from noise.
 *
 * Needs Linux, root (uprobes), tracefs and `perf`; it says so and exits when they are missing.
 * The counts cover the whole workerd process, Miniflare's own entry worker included, which
 * does the same for every scenario: compare scenarios, not absolute numbers.
 *
 *   npm run bench -- --mode calls [--scenarios A3r,D] [--requests 3000] [--rate 300]
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { ROOT } from "../lib/build.mjs";
import { listeningPid } from "../lib/proc.mjs";
import { startWorker } from "../lib/worker.mjs";
import { BENCH_PATH, benchPolicies } from "./policies.mjs";
import { benchVars, bundleWorker, FLOOR_SCRIPT, startBenchOrigins } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    scenarios: { type: "string", default: "A,B,A3r,D" },
    requests: { type: "string", default: "3000" },
    rate: { type: "string", default: "300" },
  },
});
const requests = Number(args.requests);
const rate = Number(args.rate);

/**
 * What is counted: a row name and the workerd function (demangled name, up to its arguments).
 * @type {Array<[string, string]>}
 */
const COUNTED = [
  ["JavaScript entered (IoContext::runImpl)", "workerd::IoContext::runImpl("],
  ["fetch calls", "workerd::api::fetchImpl("],
  ["stream reads", "workerd::api::ReadableStreamInternalController::read("],
  ["timers set", "workerd::api::ServiceWorkerGlobalScope::setTimeout("],
  ["Headers objects built", "workerd::api::Headers::Headers("],
  ["header values set", "workerd::api::Headers::set("],
  ["promises made by the runtime", "v8::Promise::Resolver::New("],
  ["objects wrapped for JavaScript", "workerd::jsg::Wrappable::attachWrapper("],
];

const TRACEFS = "/sys/kernel/tracing";
const GROUP = "edgemirror";

function unmet() {
  if (process.platform !== "linux") return "uprobes need Linux";
  if (process.getuid?.() !== 0) return "uprobes need root";
  if (!existsSync(`${TRACEFS}/uprobe_events`)) return `no ${TRACEFS}/uprobe_events (mount -t tracefs nodev ${TRACEFS})`;
  try {
    execFileSync("perf", ["--version"], { stdio: "ignore" });
  } catch {
    return "perf is not installed (apt-get install linux-perf)";
  }
  return undefined;
}

const problem = unmet();
if (problem) {
  console.error(`bench --mode calls: ${problem}; nothing measured.`);
  process.exit(1);
}

/** The workerd binary Miniflare runs. */
const binary = /** @type {{ default: string }} */ (
  createRequire(createRequire(join(ROOT, "package.json")).resolve("miniflare"))("workerd")
).default;

/**
 * Where each counted function starts in the binary's file: its address from the symbol
 * table, less the difference between address and file offset of the segment that holds it.
 */
function probeOffsets() {
  const symbols = execFileSync("nm", ["-C", "--defined-only", binary], { maxBuffer: 1 << 30 })
    .toString()
    .split("\n");
  const segments = execFileSync("readelf", ["-lW", binary])
    .toString()
    .split("\n")
    .filter((line) => /^\s*LOAD\s/.test(line))
    .map((line) => {
      const [, offset, address, , , size] = line.trim().split(/\s+/);
      return { offset: Number(offset), address: Number(address), size: Number(size) };
    });
  /** @type {Map<string, number[]>} */
  const offsets = new Map();
  for (const [row, name] of COUNTED) {
    const found = [];
    for (const line of symbols) {
      const at = line.indexOf(" T ");
      if (at < 0 || !line.slice(at + 3).startsWith(name)) continue;
      const address = Number(`0x${line.slice(0, at)}`);
      const segment = segments.find((s) => address >= s.address && address < s.address + s.size);
      if (segment) found.push(address - segment.address + segment.offset);
    }
    if (found.length === 0) throw new Error(`${binary} has no symbol ${name}: this workerd names it differently`);
    offsets.set(row, found);
  }
  return offsets;
}

/**
 * Adds one probe per offset and returns, per row, the names `perf stat` reports them under.
 * @param {Map<string, number[]>} offsets
 * @returns {Map<string, string[]>}
 */
function addProbes(offsets) {
  /** @type {string[]} */
  const lines = [];
  const names = new Map();
  for (const [row, found] of offsets) {
    names.set(
      row,
      found.map((offset) => {
        const probe = `f${lines.length}`;
        lines.push(`p:${GROUP}/${probe} ${binary}:0x${offset.toString(16)}`);
        return `${GROUP}:${probe}`;
      }),
    );
  }
  writeFileSync(`${TRACEFS}/uprobe_events`, `${lines.join("\n")}\n`, { flag: "a" });
  return names;
}

function removeProbes() {
  const mine = readFileSync(`${TRACEFS}/uprobe_events`, "utf8")
    .split("\n")
    .filter((line) => line.startsWith(`p:${GROUP}/`))
    .map((line) => `-:${GROUP}/${line.slice(`p:${GROUP}/`.length).split(" ")[0]}`);
  if (mine.length) writeFileSync(`${TRACEFS}/uprobe_events`, `${mine.join("\n")}\n`, { flag: "a" });
}

const offsets = probeOffsets();
removeProbes();
const probesOf = addProbes(offsets);

const origins = await startBenchOrigins(300);
const bench = benchPolicies({ fast: origins.fast, slow: origins.slow });
const edgeScript = bundleWorker(join(ROOT, "src/index.ts"), join(ROOT, ".wrangler/bench/edge-mirror-calls.js"));

/** @type {Record<string, { what: string, floor: boolean, vars?: Record<string, string>, policies?: Record<string, unknown> }>} */
const SCENARIOS = {
  A: { what: "bare Worker", floor: true },
  A3r: { what: "bare Worker + 3 copies, answers read", floor: true, vars: { MIRROR_COUNT: "3", MIRROR_READ: "1" } },
  B: { what: "edge-mirror, no route", floor: false, policies: bench.noMatch },
  D: { what: "edge-mirror, 3 mirrors", floor: false, policies: bench.threeSlow },
};

/** @type {Array<{ id: string, counts: Map<string, number> }>} */
const results = [];
try {
  for (const id of args.scenarios.split(",")) {
    const s = SCENARIOS[id];
    if (!s) throw new Error(`--scenarios: ${id} is not one of ${Object.keys(SCENARIOS).join(", ")}`);
    const worker = await startWorker({
      scriptPath: s.floor ? FLOOR_SCRIPT : edgeScript,
      withoutStats: s.floor,
      onLog: () => {},
      vars: { ...benchVars(origins), ...s.vars },
      policies: s.policies,
    });
    const pid = listeningPid(Number(new URL(worker.url).port));
    const url = worker.url + BENCH_PATH;
    // Warm: the isolate, the policy snapshot, the JIT and the connections.
    await autocannon({ url, connections: 10, amount: 600, overallRate: rate });
    await settle();
    const perf = spawn("perf", ["stat", "-x", ",", "-e", `${GROUP}:*`, "-p", String(pid)], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let report = "";
    perf.stderr.on("data", (chunk) => {
      report += chunk;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await autocannon({ url, connections: 10, amount: requests, overallRate: rate });
    // The copies still waiting on the 300 ms mirror belong to these requests.
    await settle();
    perf.kill("SIGINT");
    await new Promise((resolve) => perf.once("exit", resolve));
    /** @type {Map<string, number>} */
    const byProbe = new Map();
    for (const line of report.split("\n")) {
      const [value, , event] = line.split(",");
      if (event?.startsWith(`${GROUP}:`)) byProbe.set(event, Number(value));
    }
    const counts = new Map();
    for (const [row, probes] of probesOf)
      counts.set(
        row,
        probes.reduce((sum, p) => sum + (byProbe.get(p) ?? 0), 0),
      );
    results.push({ id, counts });
    await worker.dispose();
  }
} finally {
  removeProbes();
  origins.stop();
}

function settle() {
  return new Promise((resolve) => setTimeout(resolve, 1200));
}

const ids = results.map((r) => r.id);
console.log(
  `Per request, over ${requests} requests at ${rate}/s each (${ids.map((id) => `${id}: ${SCENARIOS[id]?.what}`).join("; ")}):\n`,
);
console.log(`| per request | ${ids.join(" | ")} |`);
console.log(`|---|${ids.map(() => "---").join("|")}|`);
for (const [row] of COUNTED) {
  console.log(`| ${row} | ${results.map((r) => ((r.counts.get(row) ?? 0) / requests).toFixed(2)).join(" | ")} |`);
}
process.exit(0);

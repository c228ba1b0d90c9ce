#!/usr/bin/env node
/**
 * `npm run bench:paired`: B ÷ A at saturation — edge-mirror with no matching route against the
 * bench's floor — with both handlers in one workerd isolate (paired-entry.ts). `npm run bench`
 * runs them in separate processes, and two processes with the same code can differ by a tenth
 * for as long as they live; here the process, heap and code cache are shared, and the two
 * paths take turns in one-second slices under wrk's load, so that a slow second of the machine
 * falls on both. CPU per request is the process's CPU time during a path's slices over the
 * requests they served.
 *
 *   npm run bench:paired -- [--rounds 8] [--slices 10] [--connections 20]
 *
 * Needs wrk (`apt-get install wrk`): its one-second runs are the slices.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cpuMs, listeningPid, ROOT, startWorker } from "../lib/worker.mjs";
import { BENCH_PATH, benchPolicies } from "./policies.mjs";
import { benchVars, bundleWorker, findWrk, median, runWrk, startBenchOrigins } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "8" },
    slices: { type: "string", default: "10" },
    connections: { type: "string", default: "20" },
  },
});
const rounds = Number(args.rounds);
const slices = Number(args.slices);
const connections = Number(args.connections);

const wrk = findWrk();
if (!wrk) {
  console.error("bench:paired: wrk is not installed (apt-get install wrk); nothing measured.");
  process.exit(1);
}

/**
 * One slice: wrk's load on `url` for `seconds`. Returns the requests served; any answer other
 * than 2xx or 3xx stops the bench, since a path that fails cheaply would look fast.
 * @param {string} url @param {number} seconds
 */
async function slice(url, seconds) {
  const { total, non2xx } = await runWrk(wrk, ["-t1", `-c${connections}`, `-d${seconds}s`, url]);
  if (non2xx > 0) throw new Error(`${url}: ${non2xx} answers were not 2xx or 3xx`);
  return total;
}

const script = bundleWorker(join(ROOT, "scripts/bench/paired-entry.ts"), join(ROOT, ".wrangler/bench/paired.js"));
const origins = await startBenchOrigins(300);
const paths = { A: `/floor${BENCH_PATH}`, B: BENCH_PATH };
const { noMatch } = benchPolicies({ fast: origins.fast, slow: origins.slow });
/** @type {Array<"A" | "B">} */
const order = ["A", "B"];

/** @type {{ cpu: number[], rps: number[] }} B ÷ A per round */
const ratios = { cpu: [], rps: [] };
try {
  for (let round = 0; round < rounds; round++) {
    // A fresh process every round; its policy cache outlives the round, so no background
    // refresh (which locally runs in this same process) falls inside one path's slices.
    const worker = await startWorker({
      scriptPath: script,
      vars: benchVars(origins, 600_000),
      policies: noMatch,
      onLog: () => {},
    });
    try {
      const pid = listeningPid(Number(new URL(worker.url).port));
      if (pid === undefined) throw new Error("cannot find workerd's process (needs Linux and ss)");
      const totals = { A: { cpu: 0, requests: 0 }, B: { cpu: 0, requests: 0 } };
      // Warm-up: both paths' code optimised, the policies loaded, connections open.
      for (const id of order) await slice(worker.url + paths[id], 1);
      for (let s = 0; s < slices; s++) {
        for (const id of s % 2 ? [...order].reverse() : order) {
          const before = cpuMs(pid);
          totals[id].requests += await slice(worker.url + paths[id], 1);
          totals[id].cpu += cpuMs(pid) - before;
        }
      }
      const perRequest = (/** @type {"A" | "B"} */ id) => (totals[id].cpu * 1000) / Math.max(1, totals[id].requests);
      ratios.cpu.push(perRequest("B") / perRequest("A"));
      ratios.rps.push(totals.B.requests / Math.max(1, totals.A.requests));
      console.error(
        `round ${round + 1}: A ${Math.round(perRequest("A"))} µs/req, B ${Math.round(perRequest("B"))} µs/req, CPU B ÷ A ${(perRequest("B") / perRequest("A")).toFixed(3)}, rps B ÷ A ${(totals.B.requests / Math.max(1, totals.A.requests)).toFixed(3)}`,
      );
    } finally {
      await worker.dispose();
    }
  }
} finally {
  origins.stop();
}

const range = (/** @type {number[]} */ v) => `${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)}`;
console.log(
  `\nB ÷ A in one isolate (${rounds} rounds of ${slices} one-second slices per path, ${connections} connections by wrk)\n`,
);
console.log("| ratio | median | rounds' range | target |");
console.log("|---|---|---|---|");
console.log(`| CPU/request B ÷ A | ${median(ratios.cpu).toFixed(2)} | ${range(ratios.cpu)} | ≤ 1.10 |`);
console.log(`| rps(B) ÷ rps(A) | ${median(ratios.rps).toFixed(2)} | ${range(ratios.rps)} | ≥ 0.95 |`);
console.log(`\n${JSON.stringify({ rounds, slices, connections, ratios })}`);
process.exit(0);

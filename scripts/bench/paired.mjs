#!/usr/bin/env node
/**
 * `npm run bench -- --mode paired`: B ÷ A at saturation — edge-mirror with no matching route against the
 * bench's floor — with the handlers in one workerd isolate (paired-entry.ts). `npm run bench`
 * runs them in separate processes, and two processes with the same code can differ by a tenth
 * for as long as they live; here the process, heap and code cache are shared, and the paths
 * take turns in one-second slices under wrk's load, so that a slow second of the machine falls
 * on all of them. CPU per request is the process's CPU time during a path's slices over the
 * requests they served.
 *
 * A third path, H, is the floor plus the header changes edge-mirror makes on the primary's
 * request (edge-mirror's own functions): H ÷ A is what those changes cost, and B ÷ H what the
 * rest of edge-mirror's code costs.
 *
 * `--set durable` pairs two matched paths instead: C, a route with one fast mirror at 100 %, and
 * G, the same route with its mirror durable (healthy, so nothing is spooled): G ÷ C is what
 * durable delivery costs a healthy mirror, held to ≤ 1.03 in CPU and ≥ 0.97 in rps.
 *
 * `--set verdict` pairs C with V, the same route served by a worker that does not record the
 * primary's status and latency beside each copy's outcome: C ÷ V is what the release verdict's
 * recording costs a mirrored request, held to ≤ 1.02 in CPU. A shared machine's slices differ by
 * more than that, so the set also times the recording on its own (recording-entry.ts, in Node):
 * the µs it adds per mirrored request, as a share of C's CPU per request.
 *
 * `--set mirrors` pairs D, a route with three slow mirrors at 100 %, with the floors that send
 * three copies inside waitUntil: A3, which cancels their answers (so each copy opens a connection),
 * and A3r, which reads them to the end (so connections are reused, as edge-mirror's are). D ÷ A3
 * is held to ≤ 1.10 in CPU, as in `npm run bench`, here in one process rather than two.
 *
 *   npm run bench -- --mode paired [--set unmatched|durable|verdict|mirrors] [--rounds 8] [--slices 10] [--connections 20]
 *
 * Needs wrk (`apt-get install wrk`): its one-second runs are the slices.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ROOT } from "../lib/build.mjs";
import { cpuMs, listeningPid } from "../lib/proc.mjs";
import { startWorker } from "../lib/worker.mjs";
import { BENCH_PATH, benchPolicies } from "./policies.mjs";
import { benchVars, bundleWorker, findCommand, median, runWrk, startBenchOrigins } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "8" },
    slices: { type: "string", default: "10" },
    connections: { type: "string", default: "20" },
    set: { type: "string", default: "unmatched" },
  },
});
if (!["unmatched", "durable", "verdict", "mirrors"].includes(args.set)) {
  throw new Error(`--set ${args.set}: unmatched, durable, verdict or mirrors`);
}
const durableSet = args.set === "durable";
const verdictSet = args.set === "verdict";
const mirrorsSet = args.set === "mirrors";
const rounds = Number(args.rounds);
const slices = Number(args.slices);
const connections = Number(args.connections);

const wrk = findCommand("wrk");
if (!wrk) {
  console.error("bench --mode paired: wrk is not installed (apt-get install wrk); nothing measured.");
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
const paths = {
  A: `/floor${BENCH_PATH}`,
  H: `/floor-headers${BENCH_PATH}`,
  B: BENCH_PATH,
  C: `/pair-best-effort${BENCH_PATH}`,
  G: `/pair-durable${BENCH_PATH}`,
  V: `/pair-unrecorded${BENCH_PATH}`,
  D: `/pair-three${BENCH_PATH}`,
  A3: `/floor-three${BENCH_PATH}`,
  A3r: `/floor-three-read${BENCH_PATH}`,
};
const { noMatch, pairedDelivery, pairedRecording, pairedMirrors } = benchPolicies({
  fast: origins.fast,
  slow: origins.slow,
});
/** @typedef {"A" | "H" | "B" | "C" | "G" | "V" | "D" | "A3" | "A3r"} PathId */
/** @type {PathId[]} */
const order = durableSet ? ["C", "G"] : verdictSet ? ["C", "V"] : mirrorsSet ? ["D", "A3", "A3r"] : ["A", "H", "B"];
/**
 * The ratios reported, numerator first, with the target where one is set (B ÷ H: the unmatched
 * path held to a proxy that makes the same header changes), and their
 * values round by round.
 * @type {Array<{ of: [PathId, PathId], cpuTarget?: string, rpsTarget?: string, cpu: number[], rps: number[] }>}
 */
const pairs = durableSet
  ? [{ of: /** @type {[PathId, PathId]} */ (["G", "C"]), cpuTarget: "≤ 1.03", rpsTarget: "≥ 0.97", cpu: [], rps: [] }]
  : verdictSet
    ? [{ of: /** @type {[PathId, PathId]} */ (["C", "V"]), cpuTarget: "≤ 1.02", cpu: [], rps: [] }]
    : mirrorsSet
      ? [
          {
            of: /** @type {[PathId, PathId]} */ (["D", "A3"]),
            cpuTarget: "≤ 1.10",
            rpsTarget: "≥ 0.90",
            cpu: [],
            rps: [],
          },
          { of: /** @type {[PathId, PathId]} */ (["D", "A3r"]), cpu: [], rps: [] },
        ]
      : [
          { of: /** @type {[PathId, PathId]} */ (["B", "H"]), cpuTarget: "≤ 1.05", cpu: [], rps: [] },
          { of: /** @type {[PathId, PathId]} */ (["B", "A"]), cpu: [], rps: [] },
          { of: /** @type {[PathId, PathId]} */ (["H", "A"]), cpu: [], rps: [] },
        ];
const pairName = (/** @type {[PathId, PathId]} */ [x, y]) => `${x} ÷ ${y}`;
/** The first path's CPU per request, round by round (µs). @type {number[]} */
const perRequestUs = [];
try {
  for (let round = 0; round < rounds; round++) {
    // A fresh process every round; its policy cache outlives the round, so no background
    // refresh (which locally runs in this same process) falls inside one path's slices.
    const worker = await startWorker({
      scriptPath: script,
      vars: benchVars(origins, 600_000),
      policies: durableSet ? pairedDelivery : verdictSet ? pairedRecording : mirrorsSet ? pairedMirrors : noMatch,
      onLog: () => {},
    });
    try {
      const pid = listeningPid(Number(new URL(worker.url).port));
      if (pid === undefined) throw new Error("cannot find workerd's process (needs Linux and ss)");
      const totals = Object.fromEntries(order.map((id) => [id, { cpu: 0, requests: 0, copies: 0, connections: 0 }]));
      const total = (/** @type {PathId} */ id) => totals[id] ?? { cpu: 0, requests: 0, copies: 0, connections: 0 };
      // Warm-up: every path's code optimised, the policies loaded, connections open.
      for (const id of order) await slice(worker.url + paths[id], 1);
      for (let s = 0; s < slices; s++) {
        for (const id of s % 2 ? [...order].reverse() : order) {
          const before = cpuMs(pid);
          const seen = mirrorsSet ? await origins.received() : undefined;
          const served = await slice(worker.url + paths[id], 1);
          const t = total(id);
          t.requests += served;
          t.cpu += cpuMs(pid) - before;
          if (seen) {
            // Copies still in flight at the slice's end are counted in the next: a second's worth.
            const after = await origins.received();
            t.copies += after.count - seen.count;
            t.connections += after.connections - seen.connections;
          }
        }
      }
      const perRequest = (/** @type {PathId} */ id) => (total(id).cpu * 1000) / Math.max(1, total(id).requests);
      perRequestUs.push(perRequest(order[0] ?? "C"));
      const shown = order.map(
        (id) =>
          `${id} ${Math.round(perRequest(id))} µs/req` +
          (mirrorsSet
            ? ` (${(total(id).connections / Math.max(1, total(id).copies)).toFixed(3)} connections/copy)`
            : ""),
      );
      for (const pair of pairs) {
        const [x, y] = pair.of;
        const cpu = perRequest(x) / perRequest(y);
        const rps = total(x).requests / Math.max(1, total(y).requests);
        pair.cpu.push(cpu);
        pair.rps.push(rps);
        shown.push(`${pairName(pair.of)} CPU ${cpu.toFixed(3)} rps ${rps.toFixed(3)}`);
      }
      console.error(`round ${round + 1}: ${shown.join(", ")}`);
    } finally {
      await worker.dispose();
    }
  }
} finally {
  origins.stop();
}

const range = (/** @type {number[]} */ v) => `${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)}`;
const legend = durableSet
  ? "C edge-mirror with one fast mirror at 100 %, G the same with the mirror durable (healthy: nothing spooled)"
  : verdictSet
    ? "C edge-mirror with one fast mirror at 100 %, recording the primary's status and latency beside each copy's; V the same route, not recording them"
    : mirrorsSet
      ? "D edge-mirror with three slow mirrors at 100 %, A3 the floor sending three copies and cancelling their answers, A3r the same reading them"
      : "A the floor, H the floor with edge-mirror's header changes, B edge-mirror with no matching route";
console.log(
  `\nIn one isolate (${rounds} rounds of ${slices} one-second slices per path, ${connections} connections by wrk): ${legend}\n`,
);
console.log("| ratio | median | rounds' range | target |");
console.log("|---|---|---|---|");
for (const { of, cpuTarget, rpsTarget, cpu, rps } of pairs) {
  console.log(`| CPU/request ${pairName(of)} | ${median(cpu).toFixed(2)} | ${range(cpu)} | ${cpuTarget ?? "—"} |`);
  console.log(`| rps(${of[0]}) ÷ rps(${of[1]}) | ${median(rps).toFixed(2)} | ${range(rps)} | ${rpsTarget ?? "—"} |`);
}
const ratios = Object.fromEntries(pairs.map(({ of, cpu, rps }) => [pairName(of), { cpu, rps }]));
/** `--set verdict`: the recording timed on its own, against C's whole request. */
let recording;
if (verdictSet) {
  const bundled = join(ROOT, ".wrangler/bench/recording.mjs");
  execFileSync(join(ROOT, "node_modules/.bin/esbuild"), [
    join(ROOT, "scripts/bench/recording-entry.ts"),
    "--bundle",
    "--format=esm",
    "--platform=node",
    `--outfile=${bundled}`,
    "--log-level=error",
  ]);
  const { measureRecording } = await import(pathToFileURL(bundled).href);
  recording = await measureRecording();
  const share = (/** @type {number} */ us) => `${((100 * us) / median(perRequestUs)).toFixed(3)} %`;
  console.log(
    `\nThe recording on its own (Node, median of 9 runs of 200,000): ${recording.extraUs.median.toFixed(3)} µs more per mirrored request (runs ${recording.extraUs.min.toFixed(3)} to ${recording.extraUs.max.toFixed(3)}), against C's ${Math.round(median(perRequestUs))} µs of CPU per request: ${share(recording.extraUs.median)} (at most ${share(recording.extraUs.max)}); target ≤ 2 %`,
  );
}
console.log(`\n${JSON.stringify({ rounds, slices, connections, ratios, perRequestUs, recording })}`);
process.exit(0);

#!/usr/bin/env node
/**
 * `npm run bench -- [--mode M] [options]`: every benchmark behind one command. Each mode is a
 * module of its own under scripts/bench/, with its own options; this picks one and hands it the
 * rest of the command line. Only loopback traffic; every mode is bounded and stops by itself.
 *
 *   npm run bench                                  # throughput: the scenario table (BENCHMARKS.md)
 *   npm run bench -- --mode paired --rounds 4      # B ÷ A and B ÷ H in one isolate
 *   npm run bench -- --help                        # the modes and when to use each
 */
import { pathToFileURL } from "node:url";

/** Mode → what it answers; README's "Performance" has the same table. */
const MODES = {
  throughput:
    "CPU per request, requests/s and latency of every scenario (A, A3, B, C, D, E, F, H, …) in fresh workerd processes, with nginx `mirror` beside them; the ratios the targets are stated in",
  paired:
    "the unmatched path's cost at saturation with edge-mirror and the floors in one isolate, taking turns: B ÷ A and B ÷ H without the noise between processes",
  handler: "a handler's own CPU per call inside workerd, with the network left out: µs per unmatched request",
  calls:
    "exact counts per request of what workerd does (JavaScript entries, stream reads, timers, Headers), by uprobes",
  profile: "a V8 CPU profile of one scenario: where the time goes",
  regex: "CPU per match of the regex engine on hostile input, against JavaScript's RegExp",
  startup: "the CPU a new isolate spends evaluating the bundle before its first request (wrangler check startup)",
  cost: "what edge-mirror adds to the bill per million client requests: KV, Durable Object, SQLite, Analytics Engine and log operations counted on the real worker with 1,000 routes",
  outage:
    "a durable mirror's outage: CPU, Queues operations and R2 operations per spooled copy, on the request path and in the consumer",
  replay:
    "the replayer's requests/s at --speed max beside wrk's against the same origin, and what a captured request weighs in R2",
};

const argv = process.argv.slice(2);
const at = argv.findIndex((arg) => arg === "--mode" || arg.startsWith("--mode="));
let mode = "throughput";
if (at !== -1) {
  const arg = argv[at] ?? "";
  const inline = arg.startsWith("--mode=");
  mode = inline ? arg.slice("--mode=".length) : (argv[at + 1] ?? "");
  argv.splice(at, inline ? 1 : 2);
}

if (argv.includes("--help") || !Object.hasOwn(MODES, mode)) {
  const width = Math.max(...Object.keys(MODES).map((m) => m.length));
  const lines = Object.entries(MODES).map(([name, what]) => `  ${name.padEnd(width)}  ${what}`);
  const problem = Object.hasOwn(MODES, mode) ? "" : `unknown --mode "${mode}"\n\n`;
  (problem ? console.error : console.log)(
    `${problem}npm run bench -- [--mode M] [options]   (each mode's options: its header in scripts/bench/<mode>.mjs)\n\n${lines.join("\n")}`,
  );
  process.exit(problem ? 2 : 0);
}

// Each mode reads its own options from process.argv, as when it was run on its own.
process.argv = [process.argv[0] ?? "node", process.argv[1] ?? "bench", ...argv];
await import(pathToFileURL(new URL(`./bench/${mode}.mjs`, import.meta.url).pathname).href);

#!/usr/bin/env node
/**
 * `npm run bench -- --mode replay`: how fast the replayer sends, side by side with wrk against
 * the same origin, and what captures weigh. First edge-mirror (in workerd, with its R2 bucket)
 * captures every request of the bench's route for `--duration` seconds under load; the capture is
 * exported through the admin API (what R2 holds per record is read from the bucket). Then, in
 * each round, wrk sends to the bench's primary origin with `--connections` connections for
 * `--duration` seconds, and right after it the replayer sends as many captured requests (the
 * capture repeated) to the same origin with `--speed max --concurrency <connections>`: the ratio
 * of the two rates is what the target is stated in (≥ 0.5). Only loopback traffic.
 *
 *   npm run bench -- --mode replay --duration 3 --rounds 3 --connections 20 [--write BENCHMARKS.md]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { buildWorker, ROOT } from "../lib/build.mjs";
import { writeBetweenMarkers } from "../lib/report.mjs";
import { startWorker } from "../lib/worker.mjs";
import { BENCH_PATH, benchPolicies } from "./policies.mjs";
import { benchVars, findCommand, median, runWrk, startBenchOrigins } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    duration: { type: "string", default: "3" },
    rounds: { type: "string", default: "2" },
    connections: { type: "string", default: "20" },
    write: { type: "string" },
  },
});
const duration = Number(args.duration);
const rounds = Number(args.rounds);
const connections = Number(args.connections);
const wrkBin = findCommand("wrk");
if (!wrkBin)
  throw new Error("--mode replay compares the replayer with wrk, which is not installed (apt-get install wrk)");
if (!(Number.isInteger(duration) && duration >= 1)) throw new Error("--duration: whole seconds, 1 or more (wrk's)");

const TOKEN = "bench-replay-admin-token-0123456789abcdef";
const dir = mkdtempSync(join(tmpdir(), "edge-mirror-bench-replay-"));
const origins = await startBenchOrigins(300);

// 1. A capture: every request of the bench's route, under load, in the deployed 5 s batches.
const worker = await startWorker({
  scriptPath: buildWorker(join(ROOT, ".wrangler/bench/replay")),
  vars: { ...benchVars(origins), ADMIN_TOKEN: TOKEN },
  policies: benchPolicies({ fast: origins.fast, slow: origins.slow }).captured(100),
  onLog: () => {},
});
const captureStarted = Date.now();
const load = await autocannon({ url: `${worker.url}${BENCH_PATH}`, connections: 10, duration });
// The last batch is written 5 s after it opened.
await new Promise((resolve) => setTimeout(resolve, 6000));
const exported = await fetch(
  `${worker.url}/__mirror/api/captures?route=bench&from=${captureStarted - 1000}&format=ndjson&limit=100000`,
  { headers: { authorization: `Bearer ${TOKEN}` } },
);
if (!exported.ok) throw new Error(`export answered ${exported.status}: ${await exported.text()}`);
const lines = (await exported.text()).split("\n").filter(Boolean);
const bucket = /** @type {NonNullable<typeof worker.captures>} */ (worker.captures);
let objects = 0;
let storedBytes = 0;
for (let cursor; ; ) {
  const page = await bucket.list({ prefix: "captures/bench/", ...(cursor ? { cursor } : {}) });
  for (const object of page.objects) {
    objects++;
    storedBytes += object.size;
  }
  if (!page.truncated) break;
  cursor = page.cursor;
}
await worker.dispose();
if (lines.length === 0) throw new Error("nothing was captured");
const rawBytes = lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0);

/** @param {string} out */
const wrkRate = (out) => Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);

// 2. Rounds: wrk, then the replayer with as many requests as wrk sent, both against the primary.
/** @type {Array<{ wrk: number, replay: number, sent: number, failed: number }>} */
const samples = [];
for (let round = 0; round < rounds; round++) {
  const wrk = await runWrk(wrkBin, ["-t1", `-c${connections}`, `-d${duration}s`, `${origins.primary}${BENCH_PATH}`]);
  const count = Math.max(1000, wrk.total);
  const file = join(dir, `round-${round}.ndjson`);
  writeFileSync(file, Array.from({ length: count }, (_, i) => `${lines[i % lines.length]}\n`).join(""));
  const report = join(dir, `round-${round}.json`);
  execFileSync(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "scripts/replay.ts"),
      file,
      "--to",
      origins.primary,
      "--speed",
      "max",
      "--concurrency",
      String(connections),
      "--report",
      report,
    ],
    { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] },
  );
  const r = JSON.parse(readFileSync(report, "utf8"));
  const replayRate = (1000 * r.sent) / r.durationMs;
  samples.push({ wrk: wrkRate(wrk.out), replay: replayRate, sent: r.sent, failed: r.failed });
  console.error(
    `round ${round + 1}: wrk ${Math.round(wrkRate(wrk.out))} rps, replay ${Math.round(replayRate)} rps (${r.sent} sent, ${r.failed} failed)`,
  );
}
origins.stop();
rmSync(dir, { recursive: true, force: true });

const ratio = median(samples.map((s) => s.replay / s.wrk));
/** @param {number} n */
const fmt = (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(2));
const table = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, Node ${process.version}. Capture: ${load.requests.total} requests through edge-mirror in ${duration} s (10 connections), every one captured. Each round: wrk (one thread, ${connections} connections, ${duration} s) against the bench's primary origin, then the replayer (--speed max --concurrency ${connections}) with as many captured requests against the same origin; ${rounds} rounds, medians.`,
  "",
  "| measured | value |",
  "|---|---|",
  `| records captured and exported | ${lines.length} |`,
  `| R2 objects written (one per isolate per 5 s batch) | ${objects} |`,
  `| record, NDJSON (mean) | ${fmt(rawBytes / lines.length)} bytes |`,
  `| record, gzipped in R2 (mean) | ${fmt(storedBytes / lines.length)} bytes |`,
  `| wrk, requests/s | ${fmt(median(samples.map((s) => s.wrk)))} |`,
  `| replayer --speed max, requests/s | ${fmt(median(samples.map((s) => s.replay)))} |`,
  `| replayer ÷ wrk (target ≥ 0.5) | ${fmt(ratio)} ${ratio >= 0.5 ? "(met)" : "(**not met**)"} |`,
  `| replayed requests that failed | ${samples.reduce((a, s) => a + s.failed, 0)} |`,
].join("\n");
console.log(table);
if (args.write) {
  writeBetweenMarkers(args.write, "replay", table);
  console.error(`wrote the table into ${args.write}`);
}

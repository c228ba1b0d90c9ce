#!/usr/bin/env node
/**
 * `npm run bench -- --mode outage`: what a durable mirror's outage costs, per spooled copy. The
 * worker (the counting entry: the real worker with its queue, bucket and consumer counted) runs in
 * workerd with the spool's local queues and bucket; remote-write-like POSTs (1–300 KiB, one in
 * five over the 128 KB a queue message holds) go through it three times:
 *
 * 1. the mirror healthy: the CPU per request of the durable route when nothing is spooled;
 * 2. the mirror refusing connections, to a best-effort route: the outage without durability;
 * 3. the mirror still refusing, to the durable route: every copy is spooled (its inline send
 *    fails, then the breaker ejects the mirror and copies are spooled without one); the first
 *    attempt from the spool waits until this phase is over, so that the consumer's work is not
 *    counted in it;
 * 4. the mirror still down: each copy's first attempt fails and is retried;
 * 5. the mirror back: the next attempt delivers each.
 *
 * It reports the CPU of spooling a copy on the request path (phase 3 less phase 2), of an attempt
 * from the spool that fails (4) and of one that delivers (5), and the operations Queues and R2
 * bill for each: messages written, 64 KB write, read (one per delivery) and delete operations,
 * `sendBatch` calls, puts and gets. An outage that takes k attempts costs a spooled copy the
 * spooling, k − 1 failed attempts and one that delivers.
 * Counts are exact; CPU is workerd's utime + stime (`/proc`), as `npm run bench` reads it. Locally
 * that process also runs Miniflare's own Queues broker and R2 store, which take each message and
 * body in JavaScript: the CPU figures of phases 3 and 4 are upper bounds of the worker's own.
 *
 *   npm run bench -- --mode outage [--copies 1000] [--outage-s 10] [--concurrency 10] [--write BENCHMARKS.md]
 */
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../lib/build.mjs";
import { startCopySink, startOrigin } from "../lib/origins.mjs";
import { cpuMs, listeningPid } from "../lib/proc.mjs";
import { writeBetweenMarkers } from "../lib/report.mjs";
import { policyEntries, startWorker } from "../lib/worker.mjs";
import { bundleWorker } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    copies: { type: "string", default: "1000" },
    "outage-s": { type: "string", default: "10" },
    concurrency: { type: "string", default: "10" },
    write: { type: "string" },
  },
});
const copies = Number(args.copies);
const outageMs = Number(args["outage-s"]) * 1000;
/** The first attempt from the spool comes after phase 3, the second after phase 4. */
const firstDelaySeconds = Math.ceil(outageMs / 1000) + 20;
const concurrency = Number(args.concurrency);

const buildDir = join(ROOT, ".wrangler/bench");
mkdirSync(buildDir, { recursive: true });
const script = bundleWorker(join(ROOT, "scripts/bench/counting-entry.ts"), join(buildDir, "edge-mirror-counting.js"));

const primary = await startOrigin({
  name: "primary",
  record: false,
  respond: (_req, res) => {
    res.writeHead(204).end();
  },
});
const sink = await startCopySink({ name: "mimir-secondary" });
const worker = await startWorker({
  scriptPath: script,
  vars: { PRIMARY_ORIGIN: primary.url, LOG_LEVEL: "info", LOG_SAMPLE_RATE: "0.01", STATS_FLUSH_MS: "1000" },
  policies: policyEntries({
    clusters: { "mimir-secondary": { origin: sink.url } },
    routes: [
      {
        id: "remote-write",
        match: { path: { type: "Exact", value: "/api/v1/push" }, methods: ["POST"] },
        mirrors: [{ cluster: "mimir-secondary", delivery: "durable", retry: { maxAttempts: 10, firstDelaySeconds } }],
      },
      {
        id: "remote-write-best-effort",
        match: { path: { type: "Exact", value: "/best-effort/push" }, methods: ["POST"] },
        mirrors: [{ cluster: "mimir-secondary" }],
      },
    ],
  }),
  spool: { consumer: { maxBatchTimeout: 1 } },
  onLog: () => {},
});
const found = listeningPid(Number(new URL(worker.url).port));
if (!found) throw new Error("cannot find workerd's process");
const pid = found;

/** Remote-write-like bodies, as in the end-to-end outage test: most 1–100 KiB, one in five 128–300 KiB. */
function bodies() {
  return Array.from({ length: copies }, () => {
    const large = Math.random() < 0.2;
    const size = large
      ? 128 * 1024 + Math.floor(Math.random() * 172 * 1024)
      : 1024 + Math.floor(Math.random() * 99 * 1024);
    return randomBytes(size);
  });
}

/**
 * POSTs every payload, `concurrency` at a time, paced over `overMs`.
 * @param {Buffer[]} payloads @param {number} overMs @param {string} [path]
 */
async function push(payloads, overMs, path = "/api/v1/push") {
  const started = Date.now();
  let next = 0;
  let failed = 0;
  const lane = async () => {
    while (next < payloads.length) {
      const i = next++;
      const due = started + (overMs * i) / payloads.length;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const res = await fetch(`${worker.url}${path}`, { method: "POST", body: payloads[i] });
      await res.arrayBuffer();
      if (res.status !== 204) failed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  if (failed > 0) throw new Error(`${failed} pushes were not answered 204`);
}

/**
 * What the counting entry counted of the spool so far (counting-entry.ts).
 * @typedef {{ sendCalls: number, messages: number, writeOps: number, deliveries: number, readOps: number, acks: number, deleteOps: number, retries: number, r2Puts: number, r2Gets: number, r2Deletes: number }} SpoolCounts
 * @returns {Promise<SpoolCounts>}
 */
async function spoolCounts() {
  const res = await fetch(`${worker.url}/__bench/kv-reads`);
  return /** @type {{ spool: SpoolCounts }} */ (await res.json()).spool;
}

/** Waits (bounded) until `done`, polling. @param {() => boolean | Promise<boolean>} done @param {number} ms */
async function until(done, ms) {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until workerd has used no CPU for a second: background work (copies, flushes) is done. */
async function quiet() {
  let last = cpuMs(pid);
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuMs(pid);
    if (now - last < 20) return;
    last = now;
  }
}

// Warm-up: the isolate compiled, the policies loaded, connections open.
await push(bodies().slice(0, 50), 0);
await until(() => sink.copies.size === 50, 30_000);
await quiet();

// 1. Healthy.
let cpu = cpuMs(pid);
await push(bodies(), 0);
await until(() => sink.copies.size === 50 + copies, 60_000);
await quiet();
const healthyCpuMs = cpuMs(pid) - cpu;
const start = await spoolCounts();

// 2. Outage, best-effort: the copies fail and are lost.
await sink.down();
cpu = cpuMs(pid);
await push(bodies(), outageMs, "/best-effort/push");
await quiet();
const bestEffortCpuMs = cpuMs(pid) - cpu;

// 3. Outage, durable: every copy spooled; none is tried from the spool yet.
const outageBodies = bodies();
const large = outageBodies.filter((b) => b.length > 120_000).length;
cpu = cpuMs(pid);
const spoolStarted = Date.now();
await push(outageBodies, outageMs);
await until(async () => (await spoolCounts()).messages - start.messages === copies, 30_000);
await quiet();
const spooledCounts = await spoolCounts();
if (spooledCounts.deliveries !== start.deliveries) throw new Error("the consumer ran during phase 3: raise --outage-s");
const spoolCpuMs = cpuMs(pid) - cpu;

// 4. Still down: every copy's first attempt fails.
cpu = cpuMs(pid);
await until(
  async () => (await spoolCounts()).retries - spooledCounts.retries === copies,
  (firstDelaySeconds + 60) * 1000,
);
await quiet();
const failedCpuMs = cpuMs(pid) - cpu;
const failedCounts = await spoolCounts();

// 5. Back: the second attempt delivers each.
await sink.up();
cpu = cpuMs(pid);
await until(() => sink.copies.size === 50 + 2 * copies, (2 * firstDelaySeconds + 60) * 1000);
await until(async () => (await spoolCounts()).acks - failedCounts.acks === copies, 60_000);
await quiet();
const deliveredCpuMs = cpuMs(pid) - cpu;
const end = await spoolCounts();
const tookSeconds = (Date.now() - spoolStarted) / 1000;
await worker.dispose();
await Promise.all([primary.close(), sink.close()]);

/**
 * Per copy, between two readings of the counts.
 * @param {SpoolCounts} from @param {SpoolCounts} to @param {keyof SpoolCounts} key
 */
const per = (from, to, key) => (to[key] - from[key]) / copies;
/** @param {string} what @param {SpoolCounts} from @param {SpoolCounts} to @param {number} cpuUs */
const phase = (what, from, to, cpuUs) => [
  what,
  cpuUs,
  per(from, to, "messages"),
  per(from, to, "sendCalls"),
  per(from, to, "writeOps") + per(from, to, "readOps") + per(from, to, "deleteOps"),
  `${fmt(per(from, to, "writeOps"))} · ${fmt(per(from, to, "readOps"))} · ${fmt(per(from, to, "deleteOps"))}`,
  per(from, to, "r2Puts"),
  per(from, to, "r2Gets"),
];
/** @param {number} v */
const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2));
const us = (/** @type {number} */ ms) => (ms * 1000) / copies;
const rows = [
  phase(
    "spooling it, on the request path (durable less best-effort)",
    start,
    spooledCounts,
    us(spoolCpuMs - bestEffortCpuMs),
  ),
  phase("an attempt from the spool that fails (retried)", spooledCounts, failedCounts, us(failedCpuMs)),
  phase("an attempt from the spool that delivers it", failedCounts, end, us(deliveredCpuMs)),
  phase(
    "in all, for an outage its second attempt outlived",
    start,
    end,
    us(spoolCpuMs - bestEffortCpuMs + failedCpuMs + deliveredCpuMs),
  ),
];
const machine = `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
const table = [
  `Machine: ${machine}. ${copies} POSTs per phase, ${concurrency} at a time, bodies 1–300 KiB (${large} of the ${copies} spooled over 120 KB, their bodies in R2), the outage phases paced over ${outageMs / 1000} s; CPU µs per request: ${fmt(us(healthyCpuMs))} with the mirror healthy (nothing spooled), ${fmt(us(bestEffortCpuMs))} with it down for a best-effort route (the copy lost), ${fmt(us(spoolCpuMs))} for the durable route (the copy spooled); ${fmt(tookSeconds)} s from the first spooled copy to the last delivered. CPU is workerd's, which locally also runs Miniflare's Queues broker and R2 store: the durable figures are upper bounds of the worker's own.`,
  "",
  "| per spooled copy | CPU µs | queue messages | `sendBatch` calls | queue operations (64 KB) | of which write · read · delete | R2 puts (class A) | R2 gets (class B) |",
  "|---|---|---|---|---|---|---|---|",
  ...rows.map(
    (row) =>
      `| ${row.map((v, i) => (i === 0 || typeof v === "string" ? v : fmt(/** @type {number} */ (v)))).join(" | ")} |`,
  ),
].join("\n");
console.log(table);
if (args.write) {
  writeBetweenMarkers(args.write, "outage", table);
  console.error(`wrote the table into ${args.write}`);
}

#!/usr/bin/env node
/**
 * `npm run bench -- --mode cost`: what edge-mirror adds to a zone's Cloudflare bill, counted on the
 * real worker rather than modelled. The bundled worker runs as several isolates sharing local KV
 * and the stats objects (scripts/lib/worker.mjs), every billed binding wrapped and counted
 * (scripts/bench/cost-entry.ts), with 1,000 routes stored — 20 of them mirrored, two mirrors each
 * at 50 %, one mirror compared — and five clusters, all written as the CLI writes them and
 * published by the worker's own cron. Each isolate then serves the model's mix (docs/scale.md:
 * nine requests in ten match no route) at the rate one isolate serves in each of the model's
 * three zones, and every count is divided by the requests sent. Log lines are the worker's
 * `edge-mirror.*` lines.
 *
 * What the run cannot see is arithmetic on stated assumptions, and printed as such: how many
 * isolates serve a zone (docs/scale.md's model), how long one lives, and the shards' once-a-minute
 * compaction and expiry, which cost per shard, not per request (their rows are measured here, per
 * compaction). Prices are Cloudflare's published ones (docs/scale.md lists the sources).
 *
 *   npm run bench -- --mode cost [--isolates 4] [--seconds 60] [--write] [--json FILE]
 *
 * `--write` puts the measured counts and the bill into BENCHMARKS.md and the bill into
 * docs/scale.md, between their `cost` markers. About 4½ minutes with the defaults.
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { clusterKey, POLICY_MARKER_KEY, policyMetadata, routeKey } from "../../src/store/keys.js";
import { ROOT } from "../lib/build.mjs";
import { startOrigin } from "../lib/origins.mjs";
import { writeBetweenMarkers } from "../lib/report.mjs";
import { startWorker } from "../lib/worker.mjs";
import { bundleWorker } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    isolates: { type: "string", default: "4" },
    seconds: { type: "string", default: "60" },
    write: { type: "boolean", default: false },
    json: { type: "string" },
  },
});
const ISOLATES = Number(args.isolates);
const SECONDS = Number(args.seconds);
if (!(ISOLATES >= 1 && SECONDS >= 60)) {
  console.error("--isolates must be at least 1 and --seconds at least 60 (a phase must see a compaction)");
  process.exit(2);
}

/** docs/scale.md's model: a zone's rate and the isolates that serve it (an assumption), so each isolate's rate. */
const MODELS = [
  { name: "10,000 req/s", rate: 10_000, isolates: 1_000 },
  { name: "100,000 req/s", rate: 100_000, isolates: 5_000 },
  { name: "1,000,000 req/s", rate: 1_000_000, isolates: 20_000 },
];
/** Assumed: an isolate serves this long before a new one replaces it. */
const ISOLATE_LIFETIME_S = 600;
/** `STATS_SHARDS`, the default. */
const SHARDS = 16;
/** Assumed: a Durable Object is busy this long per request (not measurable locally), at 128 MB. */
const DO_MS_PER_REQUEST = 2;
const DO_GB = 0.128;
const POLICY_TTL_MS = 5000;
const GOAL = 0.05;

/** US dollars per million (docs/scale.md links the sources). */
const PRICE = {
  kvRead: 0.5,
  kvList: 5,
  kvWrite: 5,
  doRequest: 0.15,
  doRow: 1,
  doGbSecond: 12.5,
  analyticsPoint: 0.25,
  logLine: 0.6,
  queueOperation: 0.4,
  r2ClassA: 4.5,
  r2ClassB: 0.36,
};

const MIRRORED_ROUTES = 20;
const STORED_ROUTES = 1000;
const CLUSTERS = 5;
const TOKEN = "cost-bench-admin-token-0123456789abcdef";

// Origins: the primary answers JSON that the mirrors answer too; every 100th copy a mirror drops the
// connection (1 % failures), and the compared mirror answers another price on every 100th.
/** @param {string} url */
const answer = (url) => JSON.stringify({ path: new URL(url, "http://x").pathname, price: 10 });
const primary = await startOrigin({
  name: "primary",
  record: false,
  respond: (seen, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(answer(seen.url));
  },
});
const mirrors = await Promise.all(
  Array.from({ length: CLUSTERS }, (_, i) => {
    let n = 0;
    return startOrigin({
      name: `c${i}`,
      record: false,
      respond: (seen, res) => {
        n++;
        if (n % 100 === 50) return void res.socket?.destroy();
        res.writeHead(200, { "content-type": "application/json" });
        res.end(n % 100 === 0 ? answer(seen.url).replace('"price":10', '"price":11') : answer(seen.url));
      },
    });
  }),
);

/** 1,000 routes and 5 clusters, as KV entries: the first 20 routes mirrored, one of their mirrors compared. */
function policies() {
  /** @type {Array<[string, string]>} */
  const entries = mirrors.map((m, i) => [clusterKey(`c${i}`), JSON.stringify({ origin: m.url })]);
  for (let k = 0; k < MIRRORED_ROUTES; k++) {
    const route = {
      id: `m-${k}`,
      match: { path: { type: "PathPrefix", value: `/m/${k}` } },
      mirrors: [
        { cluster: `c${k % CLUSTERS}`, percent: 50 },
        { cluster: `c${(k + 1) % CLUSTERS}`, percent: 50, ...(k === 0 ? { compare: true } : {}) },
      ],
    };
    entries.push([routeKey(route.id), JSON.stringify(route)]);
  }
  for (let i = 0; i < STORED_ROUTES - MIRRORED_ROUTES; i++) {
    const route = {
      id: `tenant-${i}`,
      match: { path: { type: "PathPrefix", value: `/tenant/${i}` } },
      mirrors: [{ cluster: `c${i % CLUSTERS}` }],
    };
    entries.push([routeKey(route.id), JSON.stringify(route)]);
  }
  return entries;
}

/** Request `n` of an isolate's sequence: one in ten to a mirrored route, in turn; the rest to paths no route claims. */
/** @param {number} n */
function pathFor(n) {
  if (n % 10 === 0) return `/m/${(n / 10) % MIRRORED_ROUTES}/item?n=${n}`;
  return n % 2 ? `/static/app.${n % 97}.js` : `/api/catalog/${n % 89}`;
}

const script = bundleWorker(join(ROOT, "scripts/bench/cost-entry.ts"), join(ROOT, ".wrangler/bench/cost.js"));
let logLines = 0;
/** Log lines by their `msg`, for --json. */
const logged = new Map();
const worker = await startWorker({
  scriptPath: script,
  isolates: ISOLATES,
  analytics: true,
  vars: {
    PRIMARY_ORIGIN: primary.url,
    POLICY_CACHE_TTL_MS: String(POLICY_TTL_MS),
    LOG_LEVEL: "info",
    LOG_SAMPLE_RATE: "0.01",
    STATS_FLUSH_MS: "5000",
    STATS_SHARDS: String(SHARDS),
    ADMIN_TOKEN: TOKEN,
  },
  onLog: (line) => {
    if (!line.startsWith('{"msg":"edge-mirror.')) return;
    logLines++;
    const msg = line.slice(8, line.indexOf('"', 8));
    logged.set(msg, (logged.get(msg) ?? 0) + 1);
  },
});

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Each isolate's counts.
 * @returns {Promise<any[]>}
 */
function countedEach() {
  return Promise.all(worker.urls.map(async (url) => (await fetch(`${url}/__bench/cost`)).json()));
}

/**
 * Every isolate's counts, added up, and the log lines so far.
 * @returns {Promise<any>}
 */
async function counted() {
  const all = await countedEach();
  /** @param {any} into @param {any} from */
  const add = (into, from) => {
    for (const [key, value] of Object.entries(from)) {
      if (typeof value === "number") into[key] = (into[key] ?? 0) + value;
      else if (typeof value === "boolean") into[key] = Boolean(into[key]) || value;
      else {
        into[key] ??= {};
        add(into[key], value);
      }
    }
    return into;
  };
  /** @type {any} */
  const sum = all.reduce((into, one) => add(into, one), {});
  sum.logLines = logLines;
  return sum;
}

/**
 * `after - before`, field by field.
 * @param {any} after @param {any} before
 * @returns {any}
 */
function delta(after, before) {
  /** @type {any} */
  const out = {};
  for (const [key, value] of Object.entries(after)) {
    if (typeof value === "number") out[key] = value - (before?.[key] ?? 0);
    else if (typeof value === "boolean") out[key] = value;
    else out[key] = delta(value, before?.[key]);
  }
  return out;
}

async function cron() {
  const fetcher = await worker.mf.getWorker("edge-mirror-0");
  await fetcher.scheduled({ cron: "* * * * *" });
  // The reconcile runs in the event's waitUntil.
  await sleep(1500);
}

/**
 * Sends `perIsolate` requests a second to every isolate for `seconds`, paced; resolves with what was sent.
 * @param {number} perIsolate @param {number} seconds @param {number} offset
 */
async function load(perIsolate, seconds, offset) {
  const interval = 1000 / perIsolate;
  const start = performance.now();
  /** @type {Promise<void>[]} */
  const inflight = [];
  let failed = 0;
  /** @type {Record<string, number>} */
  const statuses = {};
  await Promise.all(
    worker.urls.map(async (url, i) => {
      for (let n = 0; n < perIsolate * seconds; n++) {
        const wait = start + n * interval + (i * interval) / worker.urls.length - performance.now();
        if (wait > 0) await sleep(wait);
        inflight.push(
          fetch(url + pathFor(offset + n))
            .then(async (res) => {
              const body = await res.text();
              if (res.status !== 200) {
                failed++;
                const key = `${res.status} ${body.slice(0, 80)}`;
                statuses[key] = (statuses[key] ?? 0) + 1;
              }
            })
            .catch((err) => {
              failed++;
              const key = String(err.cause ?? err).slice(0, 80);
              statuses[key] = (statuses[key] ?? 0) + 1;
            }),
        );
      }
    }),
  );
  await Promise.all(inflight);
  return { requests: inflight.length, failed, statuses };
}

// Stored as `npm run policy -- apply` stores them: each text with its SHA-256 as metadata.
for (const [key, text] of policies()) {
  await worker.kv.put(key, text, { metadata: policyMetadata(createHash("sha256").update(text).digest("hex")) });
}

let before = await counted();
await cron();
let now = await counted();
const firstPublication = delta(now, before);
if (!(await worker.kv.get(POLICY_MARKER_KEY))) throw new Error("the cron published nothing");
before = now;
await cron();
now = await counted();
const cronRun = delta(now, before);

before = now;
for (const url of worker.urls) await (await fetch(`${url}/api/catalog/start`)).arrayBuffer();
await sleep(1500);
now = await counted();
const isolateStart = delta(now, before);

/**
 * @typedef {{ model: typeof MODELS[number], perIsolate: number, requests: number, failed: number,
 *   statuses: Record<string, number>, logged: Record<string, number>, counts: any }} Phase
 */
/** @type {Phase[]} */
const phases = [];
let offset = 1;
for (const model of MODELS) {
  const perIsolate = model.rate / model.isolates;
  before = await counted();
  const sent = await load(perIsolate, SECONDS, offset);
  offset += perIsolate * SECONDS;
  // The last batches flush STATS_FLUSH_MS after they opened; the copies are done sooner.
  await sleep(7000);
  now = await counted();
  phases.push({ model, perIsolate, ...sent, counts: delta(now, before), logged: Object.fromEntries(logged) });
  console.error(`${model.name}: ${sent.requests} requests at ${perIsolate}/s per isolate, ${sent.failed} not 200`);
}

// A policy change through the admin API on one isolate, then one refresh everywhere.
const eachBefore = await countedEach();
before = await counted();
const put = await fetch(`${worker.urls[0]}/__mirror/api/routes/m-1`, {
  method: "PUT",
  headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
  body: JSON.stringify({ id: "m-1", match: { path: { type: "PathPrefix", value: "/m/1" } }, mirrors: [] }),
});
if (put.status !== 200) throw new Error(`the admin write answered ${put.status}`);
await sleep(1500);
now = await counted();
const adminWrite = delta(now, before);
before = now;
await sleep(POLICY_TTL_MS);
for (const url of worker.urls) await (await fetch(`${url}/api/catalog/after`)).arrayBuffer();
await sleep(1500);
for (const url of worker.urls) await (await fetch(`${url}/api/catalog/after`)).arrayBuffer();
const eachAfter = await countedEach();
now = await counted();
const policyChange = delta(now, before);
/** The writing isolate's next request reads every key (the snapshot may not hold its write yet); the others refresh. */
const writerRefresh = eachAfter[0].kv.keysRead - eachBefore[0].kv.keysRead - adminWrite.kv.keysRead;
const otherRefresh = ISOLATES > 1 ? (policyChange.kv.keysRead - writerRefresh) / (ISOLATES - 1) : 0;

await worker.dispose();
await Promise.all([primary.close(), ...mirrors.map((m) => m.close())]);

// ---- The bill -------------------------------------------------------------------------------

/** @param {number} n @param {number} requests */
const per = (n, requests) => n / requests;
/** @param {number} usd */
const money = (usd) => (usd >= 0.01 ? `$${usd.toFixed(3)}` : usd >= 0.0001 ? `$${usd.toFixed(4)}` : "< $0.0001");
/** @param {number} n */
const count = (n) =>
  Number.isInteger(n) ? String(n) : n >= 0.1 ? n.toFixed(3) : n >= 0.001 ? n.toFixed(4) : n.toFixed(6);

/** What one compaction wrote, on average, and the expiry that deletes the same rows an hour later. */
const compactions = phases.reduce((n, p) => n + p.counts.durableObjects.compactions, 0);
const compactionRows = phases.reduce((n, p) => n + p.counts.durableObjects.compactionRows, 0);
const rowsPerCompaction = compactions === 0 ? 0 : compactionRows / compactions;
const coldReads = isolateStart.kv.keysRead / ISOLATES;

/**
 * @param {Phase} phase
 * @returns {{ lines: Array<[string, number]>, total: number, analytics: number }}
 */
function bill(phase) {
  const { model, requests, counts: c } = phase;
  // A count per request times a price per million is a cost per million requests.
  const minuteRequests = model.rate * 60;
  const kvSteady =
    per(c.kv.keysRead, requests) * PRICE.kvRead +
    per(c.kv.lists + c.kv.writes + c.kv.deletes, requests) * PRICE.kvWrite;
  const isolateStartsPerRequest = model.isolates / ISOLATE_LIFETIME_S / model.rate;
  const kvStarts = isolateStartsPerRequest * coldReads * PRICE.kvRead;
  const kvCron =
    ((cronRun.kv.lists + cronRun.kv.writes) * PRICE.kvList + cronRun.kv.keysRead * PRICE.kvRead) / minuteRequests;
  const doRequests = per(c.durableObjects.requests, requests) * PRICE.doRequest;
  const doDuration = per(c.durableObjects.requests, requests) * (DO_MS_PER_REQUEST / 1000) * DO_GB * PRICE.doGbSecond;
  const flushRows = per(c.durableObjects.counterRows + c.durableObjects.sampleRows, requests) * PRICE.doRow;
  // Each shard compacts once a minute; an hour later the expiry deletes the same minute rows.
  const shardRows = ((SHARDS * (2 * rowsPerCompaction - 1)) / minuteRequests) * PRICE.doRow;
  const logs = per(c.logLines, requests) * PRICE.logLine;
  const queues = per(c.queues.messages * 3, requests) * PRICE.queueOperation;
  const r2 = per(c.r2.classA, requests) * PRICE.r2ClassA + per(c.r2.classB, requests) * PRICE.r2ClassB;
  const analytics = per(c.analyticsEngine.points, requests) * PRICE.analyticsPoint;
  /** @type {Array<[string, number]>} */
  const lines = [
    ["KV: the marker each refresh, the deployment key each minute", kvSteady],
    [
      `KV: a new isolate (${count(coldReads)} reads; one every ${ISOLATE_LIFETIME_S / 60} min per isolate, assumed)`,
      kvStarts,
    ],
    ["KV: the cron's reconcile, once a minute", kvCron],
    ["Durable Object requests (stats flushes)", doRequests],
    [`Durable Object duration (${DO_MS_PER_REQUEST} ms per request assumed)`, doDuration],
    ["SQLite rows: one per flush, and diff samples", flushRows],
    [`SQLite rows: compaction and expiry, ${SHARDS} shards once a minute`, shardRows],
    ["Workers Logs: edge-mirror's lines", logs],
    ...(c.queues.bound ? [/** @type {[string, number]} */ (["Queues (3 operations per message)", queues])] : []),
    ...(c.r2.bound ? [/** @type {[string, number]} */ (["R2 operations", r2])] : []),
  ];
  const total = lines.reduce((n, [, usd]) => n + usd, 0);
  return { lines, total, analytics };
}

const bills = phases.map(bill);
/** @type {Array<[string, (p: Phase) => string]>} */
const measuredRows = [
  ["requests sent (all isolates)", (p) => String(p.requests)],
  ["… answered other than 200 (the machine falling behind)", (p) => String(p.failed)],
  ["KV keys read", (p) => count(per(p.counts.kv.keysRead, p.requests))],
  ["… of them the marker", (p) => count(per(p.counts.kv.read.marker, p.requests))],
  ["… the snapshot", (p) => count(per(p.counts.kv.read.snapshot, p.requests))],
  ["… the deployment key", (p) => count(per(p.counts.kv.read.deploymentKey, p.requests))],
  ["… policy keys", (p) => count(per(p.counts.kv.read.policies, p.requests))],
  ["KV lists", (p) => count(per(p.counts.kv.lists, p.requests))],
  ["KV writes and deletes", (p) => count(per(p.counts.kv.writes + p.counts.kv.deletes, p.requests))],
  ["Durable Object requests (flushes)", (p) => count(per(p.counts.durableObjects.requests, p.requests))],
  ["SQLite rows: flush log", (p) => count(per(p.counts.durableObjects.counterRows, p.requests))],
  ["SQLite rows: diff samples", (p) => count(per(p.counts.durableObjects.sampleRows, p.requests))],
  [
    "SQLite rows: compactions (per shard-minute, below)",
    (p) => count(per(p.counts.durableObjects.compactionRows, p.requests)),
  ],
  ["Analytics Engine points (bound for the count)", (p) => count(per(p.counts.analyticsEngine.points, p.requests))],
  ["log lines (edge-mirror's)", (p) => count(per(p.counts.logLines, p.requests))],
  ["queue messages", (p) => (p.counts.queues.bound ? count(per(p.counts.queues.messages, p.requests)) : "not bound")],
  [
    "R2 operations",
    (p) => (p.counts.r2.bound ? count(per(p.counts.r2.classA + p.counts.r2.classB, p.requests)) : "not bound"),
  ],
];
const measured = [
  `| per client request, measured | ${phases.map((p) => `${p.model.name} (${p.perIsolate}/s per isolate)`).join(" | ")} |`,
  `|---|${phases.map(() => "---").join("|")}|`,
  ...measuredRows.map(([name, cell]) => `| ${name} | ${phases.map(cell).join(" | ")} |`),
].join("\n");

const fixed = [
  "| counted once, measured | value |",
  "|---|---|",
  `| a new isolate's first request: KV keys read | ${count(coldReads)} (the snapshot and the deployment key) |`,
  `| the cron's reconcile, nothing changed: lists, keys read, writes | ${cronRun.kv.lists}, ${cronRun.kv.keysRead}, ${cronRun.kv.writes} |`,
  `| the first publication of ${STORED_ROUTES} routes: keys read, writes | ${firstPublication.kv.keysRead}, ${firstPublication.kv.writes} |`,
  `| an admin write of a route, with its publication: keys read, lists, writes | ${adminWrite.kv.keysRead}, ${adminWrite.kv.lists}, ${adminWrite.kv.writes} |`,
  `| … then the writing isolate's next request: keys read | ${writerRefresh} |`,
  `| … and every other isolate's next refresh: keys read | ${count(otherRefresh)} |`,
  `| rows one compaction wrote (mean of ${compactions}) | ${count(rowsPerCompaction)} |`,
].join("\n");

const billTable = [
  "| per million client requests | " +
    MODELS.map((m) => `${m.name}, ${m.isolates.toLocaleString("en-US")} isolates`).join(" | ") +
    " |",
  "|---|" + MODELS.map(() => "---").join("|") + "|",
  ...(bills[0]?.lines ?? []).map(
    ([name], i) => `| ${name} | ${bills.map((b) => money(/** @type {number} */ (b.lines[i]?.[1] ?? 0))).join(" | ")} |`,
  ),
  `| **total, on top of Workers' own fees (goal: at most $${GOAL.toFixed(2)})** | ${bills.map((b) => `**${money(b.total)}** (${b.total <= GOAL ? "met" : "not met"})`).join(" | ")} |`,
  `| Analytics Engine, when bound (not in the total) | ${bills.map((b) => money(b.analytics)).join(" | ")} |`,
].join("\n");

const report = `${measured}\n\n${fixed}\n\n${billTable}`;
console.log(report);
if (args.json)
  writeFileSync(
    args.json,
    JSON.stringify(
      {
        phases,
        isolateStart,
        cronRun,
        firstPublication,
        adminWrite,
        policyChange,
        bills,
        logged: Object.fromEntries(logged),
      },
      null,
      2,
    ),
  );
if (args.write) {
  writeBetweenMarkers("BENCHMARKS.md", "cost", report);
  writeBetweenMarkers("docs/scale.md", "cost", billTable);
  console.error("wrote the counts into BENCHMARKS.md and the bill into docs/scale.md");
}
process.exit(0);

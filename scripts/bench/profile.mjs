#!/usr/bin/env node
/**
 * `npm run bench -- --mode profile --scenario B`: a V8 CPU profile of edge-mirror in workerd while one
 * bench scenario runs, taken over the DevTools protocol on Miniflare's inspector port. Prints the
 * functions with the most self time and their share of the samples taken inside the worker.
 * The bundle is built without minification so that the names are edge-mirror's own.
 *
 *   npm run bench -- --mode profile --scenario B|H|A|… --duration 5 --connections 10 [--top 25] [--save out.cpuprofile]
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import WebSocket from "ws";
import { ROOT } from "../lib/build.mjs";
import { startWorker } from "../lib/worker.mjs";
import { BENCH_PATH, benchPolicies, LAST_ROUTE_PATH } from "./policies.mjs";
import { benchVars, bundleWorker, FLOOR_SCRIPT, startBenchOrigins } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    scenario: { type: "string", default: "B" },
    duration: { type: "string", default: "5" },
    connections: { type: "string", default: "10" },
    top: { type: "string", default: "25" },
    save: { type: "string" },
    "slow-ms": { type: "string", default: "300" },
  },
});

// Not minified, so that the profile names edge-mirror's own functions.
const script = bundleWorker(join(ROOT, "src/index.ts"), join(ROOT, ".wrangler/bench/edge-mirror-profile.js"), {
  minify: false,
});
const origins = await startBenchOrigins(Number(args["slow-ms"]));
const bench = benchPolicies({ fast: origins.fast, slow: origins.slow });
/** @type {Record<string, Record<string, unknown>>} */
const policies = {
  B: bench.noMatch,
  C: bench.oneFast,
  D: bench.threeSlow,
  F: bench.thousandRoutes,
  K100: bench.captured(100),
};
const floor = args.scenario === "A" || args.scenario === "A3" || args.scenario === "A3r";
// H: the floor with the header changes a proxy must make, with edge-mirror's own functions.
const headersFloor = args.scenario === "H";
const chosen = floor || headersFloor ? {} : policies[args.scenario];
if (!chosen) throw new Error(`--scenario must be one of A, A3, A3r, H, ${Object.keys(policies).join(", ")}`);

const inspectorPort = 9300 + Math.floor(Math.random() * 500);
const worker = await startWorker({
  scriptPath: floor
    ? FLOOR_SCRIPT
    : headersFloor
      ? bundleWorker(
          join(ROOT, "scripts/bench/floor-headers.ts"),
          join(ROOT, ".wrangler/bench/floor-headers-profile.js"),
          {
            minify: false,
          },
        )
      : script,
  withoutStats: floor || headersFloor,
  onLog: () => {},
  vars: {
    ...benchVars(origins),
    MIRROR_COUNT: args.scenario.startsWith("A3") ? "3" : "0",
    // A3r reads its mirrors' answers to the end, as edge-mirror does with small ones.
    MIRROR_READ: args.scenario === "A3r" ? "1" : "0",
  },
  policies: chosen,
  inspectorPort,
});

const target = `${worker.url}${args.scenario === "F" ? LAST_ROUTE_PATH : BENCH_PATH}`;
await autocannon({ url: target, connections: 2, duration: 1 });

const list = /** @type {Array<{ id: string, webSocketDebuggerUrl: string }>} */ (
  await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()
);
const entry = list.find((t) => !t.id.includes("miniflare") && !t.id.includes("loopback")) ?? list[0];
if (!entry) throw new Error("the inspector lists no worker");
const socket = new WebSocket(entry.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  socket.once("open", resolve);
  socket.once("error", reject);
});
let nextId = 0;
/** @type {Map<number, (value: any) => void>} */
const pending = new Map();
socket.on("message", (data) => {
  const message = JSON.parse(String(data));
  if (message.id !== undefined) pending.get(message.id)?.(message.result ?? message.error);
});
/** @param {string} method @param {Record<string, unknown>} [params] */
const send = (method, params = {}) =>
  new Promise((resolve) => {
    const id = ++nextId;
    pending.set(id, resolve);
    socket.send(JSON.stringify({ id, method, params }));
  });

await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });
await send("Profiler.start");
const load = await autocannon({ url: target, connections: Number(args.connections), duration: Number(args.duration) });
/** @type {{ profile: { nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }>, samples: number[] } }} */
const { profile } = /** @type {any} */ (await send("Profiler.stop"));
socket.close();
await worker.dispose();
origins.stop();

if (args.save) writeFileSync(args.save, JSON.stringify(profile));

/** Self samples per function, grouped by name and location; idle and GC kept apart. */
const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
/** @type {Map<string, number>} */
const self = new Map();
let total = 0;
let busy = 0;
for (const id of profile.samples) {
  const node = byNode.get(id);
  if (!node) continue;
  total++;
  const { functionName, url, lineNumber } = node.callFrame;
  if (functionName === "(idle)" || functionName === "(program)") continue;
  busy++;
  const where = url ? `${url.split("/").pop()}:${lineNumber + 1}` : "";
  const key = `${functionName || "(anonymous)"} ${where}`.trim();
  self.set(key, (self.get(key) ?? 0) + 1);
}
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(args.top));
console.log(
  `scenario ${args.scenario}: ${load.requests.total} requests, ${total} samples, ${busy} in JavaScript or the runtime (the rest idle or outside JS), ${(busy / Math.max(1, load.requests.total)).toFixed(3)} busy samples per request`,
);
console.log("| self % of busy | function |");
console.log("|---|---|");
for (const [name, n] of rows) console.log(`| ${((100 * n) / Math.max(1, busy)).toFixed(1)} | \`${name}\` |`);
process.exit(0);

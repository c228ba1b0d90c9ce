#!/usr/bin/env node
/**
 * `npm run bench -- --mode handler`: the CPU time of a request handler's own work — edge-mirror's for a
 * request no route claims, and the bench's floor (a bare `fetch` proxy) — inside workerd, in
 * microseconds per call. Each worker runs its handler `--repeats` times per request with
 * `fetch` answered in place (handler-entry.ts); the CPU time that the repeats add, divided by
 * their number, is the handler's own. The network, HTTP parsing and Miniflare's entry worker,
 * which make up almost all of what `npm run bench` measures per request, stay out of it, and
 * so does most of that bench's noise: it measures what edge-mirror adds, not the loopback.
 *
 * `--set mirrors` measures a request whose route sends three copies instead: edge-mirror with D's
 * route (three mirrors at 100 %) against the floor sending three copies and reading their answers
 * (A3r). The copies' `fetch` is answered in place too, so what is left is each side's own work
 * for a mirrored request: planning, headers, marker, deadline, outcome and counters.
 *
 *   npm run bench -- --mode handler [--set unmatched|mirrors] [--rounds 3] [--requests 1500] [--repeats 200]
 *
 * Each row is measured with the wrk-style request the bench sends (a few headers) and with a
 * browser's (about twenty, as Cloudflare hands them to a worker, `cf-*` included).
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { ROOT } from "../lib/build.mjs";
import { cpuMs, listeningPid } from "../lib/proc.mjs";
import { startWorker } from "../lib/worker.mjs";
import { BENCH_PATH, benchPolicies } from "./policies.mjs";
import { bundleWorker, median } from "./setup.mjs";

const { values: args } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    requests: { type: "string", default: "1500" },
    repeats: { type: "string", default: "200" },
    set: { type: "string", default: "unmatched" },
  },
});
if (!["unmatched", "mirrors"].includes(args.set)) throw new Error(`--set ${args.set}: unmatched or mirrors`);
const mirrorsSet = args.set === "mirrors";
const rounds = Number(args.rounds);
const requests = Number(args.requests);
const repeats = Number(args.repeats);

/** A browser's navigation as a worker on Cloudflare receives it. */
const BROWSER_HEADERS = {
  "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
  accept: "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
  "accept-language": "en-GB,en;q=0.9,de;q=0.8",
  cookie: "session=3f9a0c1e5b7d4a2f8e6c0b1d3a5f7e9c; theme=dark; _ga=GA1.1.123456789.1700000000",
  referer: "https://example.com/dashboard",
  "sec-ch-ua": '"Chromium";v="131", "Not_A Brand";v="24"',
  "sec-ch-ua-mobile": "?0",
  "sec-ch-ua-platform": '"Linux"',
  "sec-fetch-dest": "document",
  "sec-fetch-mode": "navigate",
  "sec-fetch-site": "same-origin",
  "upgrade-insecure-requests": "1",
  "cf-connecting-ip": "203.0.113.7",
  "cf-ipcountry": "DE",
  "cf-ray": "8f1e2d3c4b5a6978-FRA",
  "cf-visitor": '{"scheme":"https"}',
  "x-forwarded-proto": "https",
  "x-real-ip": "203.0.113.7",
  "cdn-loop": "cloudflare",
};

const script = bundleWorker(join(ROOT, "scripts/bench/handler-entry.ts"), join(ROOT, ".wrangler/bench/handler.js"));
// Nothing is sent anywhere: `fetch` is answered in place.
const bench = benchPolicies({ fast: "http://127.0.0.1:9", slow: "http://127.0.0.1:9" });
const policies = mirrorsSet ? bench.threeSlow : bench.noMatch;

/**
 * CPU microseconds per request of a fresh worker whose handler runs `times` times per request.
 * @param {string} handler @param {number} times @param {Record<string, string> | undefined} headers
 */
async function cpuPerRequest(handler, times, headers) {
  const worker = await startWorker({
    scriptPath: script,
    vars: {
      HANDLER: handler,
      HANDLER_REPEATS: String(times),
      PRIMARY_ORIGIN: "http://127.0.0.1:9",
      MIRROR_ORIGIN: "http://127.0.0.1:9",
      MIRROR_COUNT: mirrorsSet ? "3" : "0",
      MIRROR_READ: "1",
      POLICY_CACHE_TTL_MS: "600000",
      // wrangler.toml's: successful copies logged 1 in 100 (the tests' worker logs every one).
      LOG_LEVEL: "info",
      LOG_SAMPLE_RATE: "0.01",
    },
    policies,
    onLog: () => {},
  });
  try {
    const pid = listeningPid(Number(new URL(worker.url).port));
    if (pid === undefined) throw new Error("cannot find workerd's process (needs Linux and ss)");
    const url = worker.url + BENCH_PATH;
    // Warm-up: policies loaded, the handler's code optimised.
    await autocannon({ url, connections: 4, amount: 300, headers });
    const before = cpuMs(pid);
    await autocannon({ url, connections: 4, amount: requests, headers });
    return ((cpuMs(pid) - before) * 1000) / requests;
  } finally {
    await worker.dispose();
  }
}

/** @type {Array<{ handler: string, request: string, micros: number, perRound: number[] }>} */
const results = [];
for (const [request, headers] of /** @type {const} */ ([
  ["wrk's", undefined],
  ["a browser's", BROWSER_HEADERS],
])) {
  /** @type {Record<string, number[]>} */
  const perRound = { floor: [], "edge-mirror": [] };
  for (let round = 0; round < rounds; round++) {
    for (const handler of round % 2 ? ["edge-mirror", "floor"] : ["floor", "edge-mirror"]) {
      const once = await cpuPerRequest(handler, 0, headers);
      const many = await cpuPerRequest(handler, repeats, headers);
      perRound[handler]?.push((many - once) / repeats);
    }
  }
  for (const [handler, micros] of Object.entries(perRound)) {
    results.push({ handler, request, micros: median(micros), perRound: micros });
  }
}

console.log(
  `\nHandler CPU per call inside workerd (${repeats} calls per request, ${requests} requests, median of ${rounds} rounds)\n`,
);
console.log(
  mirrorsSet
    ? "| request | floor with three copies (A3r) | edge-mirror, three mirrors (D) | edge-mirror adds |"
    : "| request | floor (bare fetch proxy) | edge-mirror, no route | edge-mirror adds |",
);
console.log("|---|---|---|---|");
for (const request of ["wrk's", "a browser's"]) {
  const floor = results.find((r) => r.request === request && r.handler === "floor");
  const edge = results.find((r) => r.request === request && r.handler === "edge-mirror");
  if (!floor || !edge) continue;
  console.log(
    `| ${request} | ${floor.micros.toFixed(1)} µs | ${edge.micros.toFixed(1)} µs | ${(edge.micros - floor.micros).toFixed(1)} µs |`,
  );
}
console.log(`\n${JSON.stringify({ set: args.set, repeats, requests, rounds, results })}`);
process.exit(0);

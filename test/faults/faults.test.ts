import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, ROOT, startWorker } from "../../scripts/lib/worker.mjs";

/**
 * The fault suite: real origins that misbehave, the bundled worker in workerd, and for each
 * scenario FAULT_REQUESTS (default 1,000) requests with random binary bodies of 0 B – 2 MB.
 * Every client response must be the primary's, byte for byte; every mirror outcome must be
 * logged with the right reason. Latencies are reported (docs/reliability.md), never asserted.
 */
const REQUESTS = Number(process.env.FAULT_REQUESTS ?? 1000);
const CONCURRENCY = 16;
const MAX_BODY = 2 * 1024 * 1024;
const pool = randomBytes(MAX_BODY * 2);

type Origin = Awaited<ReturnType<typeof startOrigin>>;
interface Outcome {
  kind: string;
  error?: string;
  reason?: string;
  status?: number;
  compare?: { verdict: string };
}
interface Row {
  scenario: string;
  requests: number;
  lost: number;
  altered: number;
  p50: number;
  p99: number;
  outcomes: Record<string, number>;
}

const rows: Row[] = [];
let primary: Origin;

/** The primary echoes the body and says who it is, so that the client can check both. */
function echo(name: string, status = 200) {
  return (seen: { body: Buffer; sha256: string }, res: ServerResponse) => {
    res.writeHead(status, {
      "x-served-by": name,
      "x-body-sha256": seen.sha256,
      "content-type": "application/octet-stream",
    });
    res.end(seen.body);
  };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Sizes skewed towards small bodies (as real traffic is), spanning 0 B to 2 MB. */
function randomBody(): Buffer {
  const size = Math.floor(MAX_BODY * Math.random() ** 3);
  const at = Math.floor(Math.random() * MAX_BODY);
  return pool.subarray(at, at + size);
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

interface Expect {
  status: number;
  /** The primary's echo, identified by x-served-by; or, for edge-mirror's own errors, the error code. */
  servedBy?: string;
  error?: string;
}

async function drive(url: string, expectation: Expect) {
  let lost = 0;
  let altered = 0;
  const latencies: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < REQUESTS) {
      next++;
      const body = randomBody();
      const started = performance.now();
      try {
        const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/octet-stream" } });
        const got = new Uint8Array(await res.arrayBuffer());
        latencies.push(performance.now() - started);
        const intact = expectation.error
          ? (JSON.parse(new TextDecoder().decode(got)) as { error?: string }).error === expectation.error
          : sha256(got) === sha256(body) && res.headers.get("x-served-by") === expectation.servedBy;
        if (res.status !== expectation.status || !intact) altered++;
      } catch {
        lost++;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  latencies.sort((a, b) => a - b);
  return { lost, altered, p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) };
}

function outcomesOf(logs: string[]): Outcome[] {
  return logs
    .filter((l) => l.includes('"msg":"edge-mirror.mirror"'))
    .map((l) => JSON.parse(l.slice(l.indexOf("{"))) as Outcome);
}

function summarize(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) {
    const key =
      o.kind === "sent" ? `sent ${o.status}` : o.kind === "failed" ? `failed ${o.error}` : `skipped ${o.reason}`;
    const verdict = o.compare ? ` ${o.compare.verdict}` : "";
    counts[key + verdict] = (counts[key + verdict] ?? 0) + 1;
  }
  return counts;
}

async function until(done: () => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

interface Scenario {
  name: string;
  mirrors?: Origin[] | string[];
  route?: Record<string, unknown>;
  expect?: Expect;
  /** Outcome keys (see summarize) that are acceptable; all outcomes must be among them. */
  allowed: string[];
  copiesPerRequest?: number;
  withoutKv?: boolean;
  primaryUrl?: string;
  mirrorTimeoutMs?: number;
  /** `compare` settings for every mirror of the route (shadow testing). */
  compare?: boolean | Record<string, unknown>;
}

async function run(s: Scenario): Promise<Row> {
  const logs: string[] = [];
  const targets = (s.mirrors ?? []).map((m, i) => [`m${i}`, typeof m === "string" ? m : m.url] as const);
  const worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: {
      PRIMARY_ORIGIN: s.primaryUrl ?? primary.url,
      LOG_LEVEL: "info",
      POLICY_CACHE_TTL_MS: "60000",
      STATS_FLUSH_MS: "1000",
    },
    withoutKv: s.withoutKv ?? false,
    onLog: (l) => logs.push(l),
    policies: s.withoutKv
      ? {}
      : policyEntries({
          clusters: Object.fromEntries(targets.map(([name, origin]) => [name, { origin }])),
          routes: [
            {
              id: "faults",
              maxMirrorBodyBytes: 4 * 1024 * 1024,
              mirrors: targets.map(([name]) => ({
                cluster: name,
                timeoutMs: s.mirrorTimeoutMs ?? 5000,
                ...(s.compare ? { compare: s.compare } : {}),
              })),
              ...s.route,
            },
          ],
        }),
  });
  try {
    const result = await drive(
      `${worker.url}/ingest?scenario=${encodeURIComponent(s.name)}`,
      s.expect ?? { status: 200, servedBy: "primary" },
    );
    const expected = REQUESTS * (s.copiesPerRequest ?? targets.length);
    await until(() => outcomesOf(logs).length >= expected, 15_000);
    const outcomes = outcomesOf(logs);
    const row: Row = { scenario: s.name, requests: REQUESTS, ...result, outcomes: summarize(outcomes) };
    rows.push(row);

    expect(result.lost, "requests lost").toBe(0);
    expect(result.altered, "responses that were not the expected primary answer").toBe(0);
    expect(outcomes.length, "one outcome per copy").toBe(expected);
    for (const key of Object.keys(row.outcomes)) expect(s.allowed, `unexpected outcome "${key}"`).toContain(key);
    expect(
      logs.filter((l) => /Uncaught|unhandled/i.test(l)),
      "unhandled errors in the worker",
    ).toEqual([]);
    return row;
  } finally {
    await worker.dispose();
  }
}

const closers: Origin[] = [];
async function origin(options: Parameters<typeof startOrigin>[0]) {
  const o = await startOrigin({ record: false, ...options });
  closers.push(o);
  return o;
}

/** A loopback URL whose port was just released: connections to it are refused. */
async function refusingUrl(): Promise<string> {
  const closed = await startOrigin({ name: "closed" });
  await closed.close();
  return closed.url;
}

beforeAll(async () => {
  primary = await origin({ name: "primary", respond: echo("primary") });
});

afterAll(async () => {
  await Promise.all(closers.map((o) => o.close()));
  if (process.env.FAULTS_REPORT) writeReport(process.env.FAULTS_REPORT);
});

describe("mirror faults never reach the client", () => {
  it("baseline: a healthy mirror", async () => {
    const healthy = await origin({ name: "healthy" });
    await run({ name: "baseline (healthy mirror)", mirrors: [healthy], allowed: ["sent 200"] });
  });

  it("a mirror that hangs forever", async () => {
    const hang = await origin({ name: "hang", fault: "hang" });
    await run({
      name: "mirror hangs",
      mirrors: [hang],
      mirrorTimeoutMs: 1000,
      allowed: ["failed timeout", "failed circuit_open"],
    });
  });

  it("a mirror that resets the connection", async () => {
    const reset = await origin({ name: "reset", fault: "reset" });
    await run({
      name: "mirror resets",
      mirrors: [reset],
      allowed: ["failed network", "failed connect", "failed circuit_open"],
    });
  });

  it("a mirror that answers 500 or 503", async () => {
    const e500 = await origin({ name: "e500", respond: (_s, res) => void res.writeHead(500).end("boom") });
    const e503 = await origin({ name: "e503", respond: (_s, res) => void res.writeHead(503).end("busy") });
    // 5xx counts against the breaker (Envoy's consecutive_5xx): a failing mirror is ejected.
    await run({
      name: "mirror answers 500/503",
      mirrors: [e500, e503],
      allowed: ["sent 500", "sent 503", "failed circuit_open"],
    });
  });

  it("a mirror that answers byte by byte", async () => {
    const trickle = await origin({
      name: "trickle",
      respond: (_s, res) => {
        res.writeHead(200, { "content-type": "text/plain" });
        let left = 20;
        const timer = setInterval(() => {
          if (res.destroyed || left-- === 0) {
            clearInterval(timer);
            if (!res.destroyed) res.end();
            return;
          }
          res.write("x");
        }, 50);
        res.on("close", () => clearInterval(timer));
      },
    });
    await run({ name: "mirror answers byte by byte", mirrors: [trickle], allowed: ["sent 200"] });
  });

  it("a mirror that returns a 50 MB body", async () => {
    const fifty = Buffer.alloc(50 * 1024 * 1024, 1);
    const big = await origin({ name: "big", respond: (_s, res) => void res.writeHead(200).end(fifty) });
    await run({ name: "mirror returns 50 MB", mirrors: [big], allowed: ["sent 200"] });
  });

  it("a mirror that refuses connections", async () => {
    await run({
      name: "mirror refuses connections",
      mirrors: [await refusingUrl()],
      allowed: ["failed network", "failed connect", "failed circuit_open"],
    });
  });

  it("a mirror whose host does not resolve", async () => {
    await run({
      name: "mirror host does not resolve",
      mirrors: ["http://mirror.does-not-exist.invalid"],
      allowed: ["failed network", "failed dns", "failed circuit_open"],
    });
  });

  it("more mirrors than the 6 simultaneous connections a Worker may open", async () => {
    const many = await Promise.all(Array.from({ length: 8 }, (_, i) => origin({ name: `many${i}` })));
    await run({ name: "8 mirrors on one route", mirrors: many, allowed: ["sent 200"] });
  });

  it("the body cap: copies over maxMirrorBodyBytes are skipped and logged", async () => {
    const healthy = await origin({ name: "capped" });
    const row = await run({
      name: "body cap 256 KiB",
      mirrors: [healthy],
      route: { maxMirrorBodyBytes: 256 * 1024 },
      allowed: ["sent 200", "skipped body_too_large"],
    });
    expect(row.outcomes["skipped body_too_large"] ?? 0).toBeGreaterThan(0);
  });
});

describe("compare mode reads the primary's answer without touching the client's", () => {
  it("a compared mirror that answers differently", async () => {
    // The canary returns the body reversed: equal only for bodies that are palindromes (0–1 byte).
    const reversed = await origin({
      name: "reversed",
      respond: (seen, res) => void res.writeHead(200).end(Buffer.from(seen.body).reverse()),
    });
    const row = await run({
      name: "compare: mirror answers differently",
      mirrors: [reversed],
      compare: { maxBodyBytes: 4 * 1024 * 1024 },
      allowed: ["sent 200 differ", "sent 200 match"],
    });
    expect(row.outcomes["sent 200 differ"] ?? 0).toBeGreaterThan(REQUESTS / 2);
  });

  it("a compared mirror that returns 50 MB, beyond the compare cap", async () => {
    const fifty = Buffer.alloc(50 * 1024 * 1024, 2);
    const big = await origin({ name: "big-compare", respond: (_s, res) => void res.writeHead(200).end(fifty) });
    await run({ name: "compare: mirror returns 50 MB", mirrors: [big], compare: true, allowed: ["sent 200 error"] });
  });
});

describe("primary faults reach the client as the primary's answer or a clear error", () => {
  it("a primary that times out → 504", async () => {
    const slowPrimary = await origin({
      name: "slow-primary",
      respond: (_s, res) => void setTimeout(() => res.end("late"), 1000),
    });
    await run({
      name: "primary times out (→ 504)",
      primaryUrl: slowPrimary.url,
      route: { timeoutMs: 100 },
      expect: { status: 504, error: "primary_timeout" },
      allowed: [],
    });
  });

  it("a primary that refuses connections → 502", async () => {
    await run({
      name: "primary refuses (→ 502)",
      primaryUrl: await refusingUrl(),
      expect: { status: 502, error: "primary_unreachable" },
      allowed: [],
    });
  });

  it("a primary answering 404 or 503 is passed through unchanged", async () => {
    const notFound = await origin({ name: "primary-404", respond: echo("primary-404", 404) });
    const healthy = await origin({ name: "mirror-of-404" });
    await run({
      name: "primary answers 404",
      primaryUrl: notFound.url,
      mirrors: [healthy],
      expect: { status: 404, servedBy: "primary-404" },
      allowed: ["sent 200"],
    });
    const unavailable = await origin({ name: "primary-503", respond: echo("primary-503", 503) });
    await run({
      name: "primary answers 503",
      primaryUrl: unavailable.url,
      expect: { status: 503, servedBy: "primary-503" },
      allowed: [],
    });
  });

  it("KV unavailable: the primary is served and nothing is mirrored", async () => {
    await run({ name: "KV unavailable", withoutKv: true, allowed: [] });
  });
});

function writeReport(file: string) {
  const baseline = rows.find((r) => r.scenario.startsWith("baseline"));
  const ratio = (v: number, b: number | undefined) => (b ? (v / b).toFixed(2) : "—");
  const table = [
    `Last run: ${new Date().toISOString().slice(0, 10)}, ${REQUESTS} requests per scenario, ${CONCURRENCY} concurrent, random binary bodies 0 B – 2 MB (skewed small), workerd via Miniflare on ${execFileSync("nproc").toString().trim()} cores.`,
    "",
    "| scenario | requests | lost | altered | client p50 ms | client p99 ms | p50 / baseline | p99 / baseline | mirror outcomes |",
    "|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.requests} | ${r.lost} | ${r.altered} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${ratio(r.p50, baseline?.p50)} | ${ratio(r.p99, baseline?.p99)} | ${
          Object.entries(r.outcomes)
            .map(([k, n]) => `${k}: ${n}`)
            .join(", ") || "none"
        } |`,
    ),
  ].join("\n");
  console.log(`\n${table}\n`);
  const path = join(ROOT, file);
  const doc = readFileSync(path, "utf8");
  const start = "<!-- faults:start -->";
  const end = "<!-- faults:end -->";
  writeFileSync(path, `${doc.slice(0, doc.indexOf(start) + start.length)}\n${table}\n${doc.slice(doc.indexOf(end))}`);
}

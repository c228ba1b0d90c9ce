/**
 * Live counters stay exact under concurrency, end to end: the bundled worker runs as several
 * isolates (each drawing its own stats shard) in workerd, 16 connections send thousands of
 * requests over routes with sampled mirrors, isolates flush every 100 ms while traffic keeps
 * coming, and `api/stats` — every shard read and merged — must show exactly the requests the
 * client sent and the copies each mirror origin received.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { adminStats } from "./helpers.ts";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

const TOKEN = "concurrency-e2e-admin-token-0123456789";
const ISOLATES = 4;
const CONNECTIONS = 16;
const PER_CONNECTION = 150;
const ROUTES = [
  { id: "full", path: "/full", mirrors: [{ cluster: "a" }] },
  {
    id: "half",
    path: "/half",
    mirrors: [
      { cluster: "a", percent: 50 },
      { cluster: "b", percent: 50 },
    ],
  },
  { id: "tenth", path: "/tenth", mirrors: [{ cluster: "b", percent: 10 }] },
  { id: "constructor", path: "/ctor", mirrors: [{ cluster: "a", percent: 50 }] },
  { id: "plain", path: "/plain", mirrors: [] },
];

interface Stats {
  routes: Array<{
    route: string;
    requests: number;
    mirrored: number;
    mirrors: Array<{ mirror: string; sent: number; failed: number; skipped: Record<string, number> }>;
  }>;
  sources: { shards: Array<{ shard: number; answered: boolean; flushes?: number }> };
}

let primary: Origin;
let a: Origin;
let b: Origin;
let worker: Worker;

beforeAll(async () => {
  [primary, a, b] = await Promise.all([
    startOrigin({ name: "primary" }),
    startOrigin({ name: "a" }),
    startOrigin({ name: "b" }),
  ]);
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    isolates: ISOLATES,
    vars: {
      PRIMARY_ORIGIN: primary.url,
      ADMIN_TOKEN: TOKEN,
      LOG_LEVEL: "off",
      STATS_FLUSH_MS: "100",
      STATS_SHARDS: "32",
    },
    policies: policyEntries({
      clusters: { a: { origin: a.url }, b: { origin: b.url } },
      routes: ROUTES.map((r) => ({
        id: r.id,
        match: { path: { type: "PathPrefix", value: r.path } },
        mirrors: r.mirrors,
      })),
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary?.close(), a?.close(), b?.close()]);
});

async function stats(): Promise<Stats> {
  const { status, stats } = await adminStats<Stats>(worker.url, TOKEN, 60);
  expect(status).toBe(200);
  return stats;
}

/** Copies a mirror origin received for one route, by the request numbers they carried. */
function copies(origin: Origin, route: string): Set<string> {
  return new Set(
    origin.requests
      .filter((r) => String(r.headers["x-edge-mirror"]).split(";")[0] === route)
      .map((r) => new URL(r.url, "http://x").search),
  );
}

describe("live counters under concurrency", () => {
  it("count exactly what the client sent and the mirrors received, across isolates and shards", async () => {
    expect(worker.urls).toHaveLength(ISOLATES);
    const sent = new Map<string, number>();
    let next = 0;
    // 16 connections, each a keep-alive loop on one isolate; routes and isolates interleave.
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async (_, connection) => {
        const base = worker.urls[connection % ISOLATES] as string;
        for (let i = 0; i < PER_CONNECTION; i++) {
          const n = next++;
          const route = ROUTES[n % ROUTES.length] as (typeof ROUTES)[number];
          const res = await fetch(`${base}${route.path}/item?n=${n}`);
          await res.arrayBuffer();
          expect(res.status).toBe(200);
          sent.set(route.id, (sent.get(route.id) ?? 0) + 1);
        }
      }),
    );
    const total = CONNECTIONS * PER_CONNECTION;
    expect(primary.count).toBe(total);

    // Copies and counters arrive in the background; wait (bounded) until both settle.
    const expectedOutcomes = ROUTES.reduce((n, r) => n + (sent.get(r.id) ?? 0) * r.mirrors.length, 0);
    const deadline = Date.now() + 30_000;
    let data = await stats();
    for (;;) {
      const requests = data.routes.reduce((n, r) => n + r.requests, 0);
      const outcomes = data.routes.reduce(
        (n, r) =>
          n +
          r.mirrors.reduce((m, x) => m + x.sent + x.failed + Object.values(x.skipped).reduce((s, k) => s + k, 0), 0),
        0,
      );
      const received = a.answered + b.answered;
      const counted = data.routes.reduce((n, r) => n + r.mirrors.reduce((m, x) => m + x.sent, 0), 0);
      if (requests === total && outcomes === expectedOutcomes && counted === received) break;
      if (Date.now() > deadline) {
        throw new Error(
          `counters never settled: ${requests}/${total} requests, ${outcomes}/${expectedOutcomes} outcomes`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
      data = await stats();
    }

    for (const route of ROUTES) {
      const got = data.routes.find((r) => r.route === route.id);
      expect(got?.requests, route.id).toBe(sent.get(route.id));
      const byMirror = new Map(route.mirrors.map((m) => [m.cluster, copies(m.cluster === "a" ? a : b, route.id)]));
      for (const mirror of route.mirrors) {
        const m = got?.mirrors.find((x) => x.mirror === mirror.cluster);
        const received = byMirror.get(mirror.cluster)?.size ?? 0;
        expect([m?.sent, m?.failed], `${route.id} → ${mirror.cluster}`).toEqual([received, 0]);
        expect((m?.sent ?? 0) + (m?.skipped.not_sampled ?? 0)).toBe(sent.get(route.id));
      }
      // A request counts as mirrored when at least one copy of it arrived somewhere.
      const anyCopy = new Set([...byMirror.values()].flatMap((set) => [...set]));
      expect(got?.mirrored, route.id).toBe(anyCopy.size);
    }
    const sampled = data.routes.find((r) => r.route === "half")?.mirrored ?? 0;
    expect(sampled).toBeGreaterThan(0);
    expect(sampled).toBeLessThan(sent.get("half") ?? 0);

    // The isolates wrote to more than one shard, and every shard answered the read.
    expect(data.sources.shards.every((s) => s.answered)).toBe(true);
    expect(data.sources.shards.filter((s) => (s.flushes ?? 0) > 0).length).toBeGreaterThan(1);
  });
});

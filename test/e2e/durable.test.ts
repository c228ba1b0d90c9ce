import { randomBytes } from "node:crypto";
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import { startCopySink, startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import type { Accounting } from "../../src/stats/counters.js";
import { seeded } from "../worker/seeded.js";
import { adminStats, sha256, until } from "./helpers.ts";

/**
 * Durable copies end to end: the bundled worker in workerd with the spool's real local queues and
 * bucket (Miniflare's, as wrangler.toml declares them), its own queue consumer redelivering, and
 * real origins on loopback. A soak (EDGE_MIRROR_SOAK=1, CI) runs the outage at the size:
 * 1,000 remote-write-like POSTs while the mirror refuses connections for 20 s.
 */
const SOAK = process.env.EDGE_MIRROR_SOAK === "1";
const TOKEN = "durable-test-admin-token-0123456789abcdef";

type Worker = Awaited<ReturnType<typeof startWorker>>;
type Sink = Awaited<ReturnType<typeof startCopySink>>;
type Origin = Awaited<ReturnType<typeof startOrigin>>;

type Delivery = Accounting;
interface Stats {
  routes: Array<{
    route: string;
    mirrors: Array<{ mirror: string; delivery: Delivery; skipped: Record<string, number> }>;
  }>;
}

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});
afterAll(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

/**
 * Remote-write-like bodies: most between 1 and 100 KiB, one in five between 128 and 300 KiB (a
 * large batch), which does not fit a queue message and waits in R2.
 */
function bodies(count: number, seed: number): Buffer[] {
  const random = seeded(seed);
  return Array.from({ length: count }, () => {
    const large = random() < 0.2;
    const size = large ? 128 * 1024 + Math.floor(random() * 172 * 1024) : 1024 + Math.floor(random() * 99 * 1024);
    return randomBytes(size);
  });
}

async function setUp(sinkStatus: number, retry: object, spool: Parameters<typeof startWorker>[0]["spool"]) {
  const primary: Origin = await startOrigin({
    name: "primary",
    record: false,
    respond: (_req, res) => {
      res.writeHead(204).end();
    },
  });
  cleanup.push(() => primary.close());
  const sink: Sink = await startCopySink({ name: "mimir-secondary", status: sinkStatus });
  cleanup.push(() => sink.close());
  const worker: Worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off" },
    policies: policyEntries({
      clusters: { "mimir-secondary": { origin: sink.url } },
      routes: [
        {
          id: "remote-write",
          match: { path: { type: "Exact", value: "/api/v1/push" }, methods: ["POST"] },
          mirrors: [
            {
              cluster: "mimir-secondary",
              delivery: "durable",
              retry,
              requestHeaders: { set: { "x-scope-orgid": "shadow" } },
            },
          ],
        },
      ],
    }),
    spool,
  });
  cleanup.push(() => worker.dispose());
  return { primary, sink, worker };
}

/** POSTs `payloads` to the worker, `concurrency` at a time, paced over `overMs`; the statuses, in order. */
async function pushAll(url: string, payloads: Buffer[], overMs: number, concurrency = 8): Promise<number[]> {
  const statuses: number[] = new Array(payloads.length).fill(0);
  const started = Date.now();
  let next = 0;
  const lane = async () => {
    while (next < payloads.length) {
      const i = next++;
      const due = started + (overMs * i) / payloads.length;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const res = await fetch(`${url}/api/v1/push`, {
        method: "POST",
        body: payloads[i],
        headers: {
          "content-type": "application/x-protobuf",
          "content-encoding": "snappy",
          "x-prometheus-remote-write-version": "0.1.0",
        },
      });
      await res.arrayBuffer();
      statuses[i] = res.status;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return statuses;
}

async function delivery(worker: Worker): Promise<Delivery> {
  const { stats } = await adminStats<Stats>(worker.url, TOKEN);
  const mirror = stats.routes
    .find((r) => r.route === "remote-write")
    ?.mirrors.find((m) => m.mirror === "mimir-secondary");
  if (!mirror) throw new Error("no counters for remote-write → mimir-secondary yet");
  return mirror.delivery;
}

/** The identity the counters must keep, term by term. */
function balanced(d: Delivery): boolean {
  return d.planned === d.deliveredInline + d.redelivered + d.dead + d.failedFinal + d.skipped + d.pending;
}

/** Every element of `a` as often as in `b`. */
function sameMultiset(a: readonly string[], b: readonly string[]): boolean {
  const count = new Map<string, number>();
  for (const x of a) count.set(x, (count.get(x) ?? 0) + 1);
  for (const x of b) count.set(x, (count.get(x) ?? 0) - 1);
  return [...count.values()].every((n) => n === 0);
}

describe("durable copies through an outage of the mirror", () => {
  const posts = SOAK ? 1000 : 200;
  const outageMs = SOAK ? 20_000 : 5_000;
  /** Answers lost after the mirror is back: those copies arrive twice. */
  const lost = 5;

  it(`delivers every one of ${posts} POSTs (1 KiB–300 KiB) sent while the mirror refused connections for ${outageMs / 1000} s, and accounts for each`, {
    timeout: 240_000,
  }, async () => {
    const retry = { maxAttempts: 10, firstDelaySeconds: 1 };
    const { primary, sink, worker } = await setUp(204, retry, { consumer: { maxBatchTimeout: 1 } });
    const payloads = bodies(posts, 24);
    await sink.down();
    const statuses = await pushAll(worker.url, payloads, outageMs);
    // The client never waits for the mirror: every POST was answered by the primary.
    expect(statuses.every((s) => s === 204)).toBe(true);
    expect(primary.count).toBe(posts);
    // Spooling runs after each answer, in waitUntil: the last copies are counted a moment later.
    await until(async () => (await delivery(worker)).spooled === posts, 10_000);
    const during = await delivery(worker);
    expect(during.deliveredInline).toBe(0);
    expect(during.spooled).toBe(posts);
    expect(balanced(during)).toBe(true);
    expect(during.pending).toBe(posts - during.redelivered);

    sink.loseAnswers(lost);
    await sink.up();
    // Within the schedule: a copy spooled at the start is tried after 1, 3, 7, 15, 31, 63 s.
    await until(() => sink.copies.size === posts, outageMs + 90_000);
    await until(async () => (await delivery(worker)).pending === 0, 30_000);

    // The mirror holds every body, byte for byte, once per copy id; the lost answers came twice.
    expect(sink.copies.size).toBe(posts);
    expect(sameMultiset([...sink.copies.values()], payloads.map(sha256))).toBe(true);
    expect(sink.duplicates).toBe(lost);
    expect(sink.arrivals).toBe(posts + lost);

    const after = await delivery(worker);
    expect(after).toMatchObject({
      planned: posts,
      deliveredInline: 0,
      redelivered: posts,
      dead: 0,
      failedFinal: 0,
      skipped: 0,
      pending: 0,
      spooled: posts,
    });
    expect(after.retried).toBeGreaterThanOrEqual(lost);
    expect(balanced(after)).toBe(true);
    // Every body kept in R2 was deleted once its copy was delivered.
    expect(await worker.spoolBodies()).toEqual([]);
  });
});

describe("durable copies a mirror never takes", () => {
  it("ends every copy of a mirror answering 503 dead after maxAttempts, in the dead-letter queue, with no body left in R2", async () => {
    const copies = 24;
    const { sink, worker } = await setUp(
      503,
      { maxAttempts: 3, firstDelaySeconds: 1 },
      {
        consumer: { maxBatchTimeout: 1 },
        deadLetters: "inspect",
      },
    );
    const payloads = bodies(copies, 503);
    expect(payloads.some((p) => p.length > 128_000)).toBe(true);
    const statuses = await pushAll(worker.url, payloads, 0, 4);
    expect(statuses.every((s) => s === 204)).toBe(true);
    await until(async () => (await worker.deadLetters()).length === copies, 60_000);
    await until(async () => (await delivery(worker)).dead === copies, 10_000);

    const dead = await worker.deadLetters();
    expect(dead).toHaveLength(copies);
    for (const letter of dead) {
      expect(letter).toMatchObject({
        route: "remote-write",
        mirror: "mimir-secondary",
        url: `${sink.url}/api/v1/push`,
      });
      expect(letter.dead).toMatchObject({ attempts: 3, cause: "answered 503 (attempt 3 of 3)" });
    }
    // A body that travelled in its message stays with the dead copy; one in R2 was deleted with it.
    const inline = dead.filter((d) => d.body.kind === "inline");
    const dropped = dead.filter((d) => d.body.kind === "dropped");
    expect(inline.length + dropped.length).toBe(copies);
    expect(dropped.map((d) => d.body.size).sort()).toEqual(
      payloads
        .filter((p) => p.length > 120_000)
        .map((p) => p.length)
        .sort(),
    );
    const sent = new Set(payloads.map(sha256));
    for (const d of inline) expect(sent.has(d.body.sha256 ?? "")).toBe(true);
    expect(await worker.spoolBodies()).toEqual([]);

    const d = await delivery(worker);
    expect(d).toMatchObject({
      planned: copies,
      deliveredInline: 0,
      redelivered: 0,
      dead: copies,
      pending: 0,
      spooled: copies,
    });
    // Attempts 1 and 2 of each copy were retried; the third was its last.
    expect(d.retried).toBe(2 * copies);
    expect(balanced(d)).toBe(true);
    // Three attempts from the spool each, besides the inline sends the breaker let through.
    expect(sink.arrivals).toBeGreaterThanOrEqual(3 * copies);
  });

  it("sends dead copies again when the worker is made the dead-letter queue's consumer, until the mirror takes them", async () => {
    const copies = 12;
    const { sink, worker } = await setUp(
      500,
      { maxAttempts: 2, firstDelaySeconds: 1 },
      {
        consumer: { maxBatchTimeout: 1 },
        deadLetters: "redrive",
      },
    );
    const payloads = bodies(copies, 7).map((p) => p.subarray(0, 50_000));
    await pushAll(worker.url, payloads, 0, 4);
    // Every copy dies once and is spooled again from the dead-letter queue.
    await until(async () => (await delivery(worker)).redriven >= copies, 60_000);
    sink.setStatus(204);
    await until(() => sink.copies.size === copies, 60_000);
    await until(async () => (await delivery(worker)).pending === 0, 30_000);
    expect(sameMultiset([...sink.copies.values()], payloads.map(sha256))).toBe(true);
    const d = await delivery(worker);
    expect(d).toMatchObject({ planned: copies, redelivered: copies, dead: 0, pending: 0 });
    expect(d.redriven).toBeGreaterThanOrEqual(copies);
    expect(balanced(d)).toBe(true);
  });
});

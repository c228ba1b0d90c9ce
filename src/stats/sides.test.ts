import { reset, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { CompareSummary } from "../compare/index.js";
import type { MirrorOutcome, PrimaryAnswer } from "../record/index.js";
import { signatureOf } from "../signature/index.js";
import { nearestRank, SKETCH_RELATIVE_ERROR } from "../sketch/index.js";
import { latencyQuantiles } from "../verdict/index.js";
import { mirrorStatus, noisyComparisons, primaryStatus } from "./counters.js";
import type { MirrorStatsShard } from "./durable-object.js";
import { decodeTally, encodeTally } from "./flush-log.js";
import { mergeShards } from "./merge.js";
import { readStats, shardName } from "./shards.js";
import { summarize, verdictInput, windowTotals } from "./summary.js";
import { MINUTE_MS, ShardTables } from "./tables.js";
import { countOutcome, emptyBatch, type StatsBatch } from "./tally.js";

/**
 * The primary beside the mirror, in the counters: each copy that went out counts the primary's
 * answer beside the mirror's, both latencies go to sketches that merge exactly over flushes,
 * compactions and shards, noisy comparisons and divergence signatures are counted, and the
 * window's totals are what the release verdict is judged on.
 */

const base = { route: "r", mirror: "m" };
let nextId = 0;

function sent(
  status: number,
  latencyMs: number,
  primary: PrimaryAnswer | undefined,
  compare?: CompareSummary,
): MirrorOutcome {
  return {
    ...base,
    requestId: `req-${nextId++}`,
    kind: "sent",
    status,
    latencyMs,
    bodyBytes: 0,
    ...(primary ? { primary } : {}),
    ...(compare ? { compare } : {}),
  };
}

function batchOf(outcomes: readonly MirrorOutcome[]): StatsBatch {
  const batch = emptyBatch();
  for (const outcome of outcomes) countOutcome(batch, outcome);
  return { tally: batch.tally, samples: batch.samples };
}

const differ = (fields: string[], noise: string[] = []): CompareSummary => ({ verdict: "differ", fields, noise });
const match = (noise: string[] = []): CompareSummary => ({ verdict: "match", fields: [], noise });

/** The exact quantile of `values` at nearest rank, as the sketch defines it. */
function exactQuantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[nearestRank(q, sorted.length) - 1] as number;
}

beforeEach(() => reset());

describe("the primary beside the mirror, counted", () => {
  it("counts the primary's status beside each copy that went out, and both latencies of the requests both answered", () => {
    const outcomes: MirrorOutcome[] = [
      sent(200, 30, { status: 200, latencyMs: 10 }),
      sent(503, 40, { status: 200, latencyMs: 12 }),
      sent(200, 50, { status: 500, latencyMs: 14 }),
      // The primary gave no answer: its side counts a failure, and neither latency is kept.
      sent(200, 60, { status: null, latencyMs: 30_000 }),
      {
        ...base,
        requestId: "f",
        kind: "failed",
        error: "timeout",
        message: "",
        latencyMs: 5,
        primary: { status: 200, latencyMs: 9 },
      },
      // Held back by the breaker: on neither side.
      {
        ...base,
        requestId: "c",
        kind: "failed",
        error: "circuit_open",
        message: "",
        latencyMs: 0,
        primary: { status: 200, latencyMs: 9 },
      },
      // Recorded without the primary (an outcome from before this version): the mirror's side only.
      sent(200, 70, undefined),
    ];
    const tallied = batchOf(outcomes).tally.get("r")?.mirrors.get("m");
    const counts = tallied?.counts ?? [];
    expect(primaryStatus(counts)).toEqual({ "1xx": 0, "2xx": 3, "3xx": 0, "4xx": 0, "5xx": 1, failed: 1 });
    expect(mirrorStatus(counts)).toEqual({ "1xx": 0, "2xx": 4, "3xx": 0, "4xx": 0, "5xx": 1, failed: 1 });
    expect(tallied?.latency?.primary.count).toBe(3);
    expect(tallied?.latency?.mirror.count).toBe(3);
    expect(tallied?.latency?.mirror.quantile(1)).toBeCloseTo(50, -1);
  });

  it("counts noisy comparisons and each differing request under its signature", () => {
    const outcomes = [
      sent(200, 1, undefined, differ(["$.price"])),
      sent(200, 1, undefined, differ(["$.price"], ["$.time"])),
      sent(200, 1, undefined, differ(["$.items[*].id", "$.price"])),
      sent(200, 1, undefined, match(["$.time"])),
      sent(200, 1, undefined, match()),
      sent(200, 1, undefined, { verdict: "error", fields: [], noise: [], error: "mirror: too large" }),
    ];
    const tallied = batchOf(outcomes).tally.get("r")?.mirrors.get("m");
    expect(noisyComparisons(tallied?.counts ?? [])).toBe(2);
    const top = tallied?.signatures?.top();
    expect(top?.total).toBe(3);
    expect(top?.signatures.map((s) => [s.fields, s.count])).toEqual([
      [["$.price"], 2],
      [["$.items[*].id", "$.price"], 1],
    ]);
    expect(top?.signatures[0]?.exampleRequestId).toMatch(/^req-/);
  });

  it("carries sketches and signatures through the flush log's text exactly", () => {
    const outcomes = Array.from({ length: 200 }, (_, i) =>
      sent(
        200,
        20 + (i % 37),
        { status: 200, latencyMs: 5 + (i % 11) },
        i % 4 === 0 ? differ([`$.f${i % 3}`]) : match(),
      ),
    );
    const tally = batchOf(outcomes).tally;
    const decoded = decodeTally(encodeTally(tally));
    const before = tally.get("r")?.mirrors.get("m");
    const after = decoded.get("r")?.mirrors.get("m");
    expect(after?.counts).toEqual(before?.counts);
    for (const q of [0.5, 0.95, 0.99]) {
      expect(after?.latency?.primary.quantile(q)).toBe(before?.latency?.primary.quantile(q));
      expect(after?.latency?.mirror.quantile(q)).toBe(before?.latency?.mirror.quantile(q));
    }
    expect(after?.signatures?.toJSON()).toEqual(before?.signatures?.toJSON());
  });

  it("merges a minute's sketches and signatures over flushes logged, compacted and read back", async () => {
    const stub = env.MIRROR_STATS.get(env.MIRROR_STATS.idFromName(shardName(0)));
    const now = Date.UTC(2026, 10, 25, 12, 0, 30);
    const all: number[] = [];
    await runInDurableObject(stub, (_instance: MirrorStatsShard, state) => {
      // Compacting after every second flush: a minute's row is written, then added to.
      const tables = new ShardTables(state.storage, { compactAfter: 2 });
      for (let flush = 0; flush < 5; flush++) {
        const outcomes = Array.from({ length: 30 }, (_, i) => {
          all.push(10 + flush * 30 + i);
          return sent(200, 10 + flush * 30 + i, { status: 200, latencyMs: 4 }, i === 0 ? differ(["$.a"]) : match());
        });
        tables.add(batchOf(outcomes), now);
      }
      const merged = mergeShards([tables.read(Math.floor(now / MINUTE_MS))]);
      const mirror = merged.routes.get("r")?.mirrors.get("m");
      const { latency } = windowTotals(mirror);
      expect(latency.mirror.count).toBe(150);
      expect(latency.primary.count).toBe(150);
      for (const q of [0.5, 0.95, 0.99]) {
        const exact = exactQuantile(all, q);
        expect(Math.abs((latency.mirror.quantile(q) as number) - exact)).toBeLessThanOrEqual(
          SKETCH_RELATIVE_ERROR * exact,
        );
      }
      expect(mirror?.signatures?.top().signatures).toMatchObject([{ fields: ["$.a"], count: 5, exact: true }]);
    });
  });

  it("drops a damaged sketch or signature column rather than the compactions and reads after it", async () => {
    const stub = env.MIRROR_STATS.get(env.MIRROR_STATS.idFromName(shardName(1)));
    const now = Date.UTC(2026, 10, 25, 12, 0, 30);
    const minute = Math.floor(now / MINUTE_MS);
    const lines: string[] = [];
    const error = vi.spyOn(console, "error").mockImplementation((line: unknown) => {
      lines.push(String(line));
    });
    try {
      await runInDurableObject(stub, (_instance: MirrorStatsShard, state) => {
        const tables = new ShardTables(state.storage, { compactAfter: 1 });
        const flush = () => tables.add(batchOf([sent(200, 30, { status: 200, latencyMs: 10 }, differ(["$.a"]))]), now);
        flush();
        flush();
        state.storage.sql.exec(
          "UPDATE mirror_minute SET lat_primary = ?, signatures = ? WHERE minute = ?",
          new Uint8Array([9, 9]),
          "{not json",
          minute,
        );
        // The next flush compacts onto the damaged row: it is counted, and the row made whole again.
        flush();
        flush();
        const mirror = mergeShards([tables.read(minute)])
          .routes.get("r")
          ?.mirrors.get("m");
        // Every send is counted; the damaged row's sketches and signatures (the first flush's) are lost.
        expect(windowTotals(mirror).counts[0]).toBe(4);
        expect(windowTotals(mirror).latency.primary.count).toBe(3);
        expect(windowTotals(mirror).latency.mirror.count).toBe(3);
        expect(mirror?.signatures?.total).toBe(3);
      });
    } finally {
      error.mockRestore();
    }
    expect(lines.filter((line) => line.includes("edge-mirror.stats_row_damaged")).length).toBeGreaterThan(0);
  });

  it("reads percentiles merged from 16 shards that equal those of all samples within the sketch's 2 %", async () => {
    const shards = 16;
    const primaryAll: number[] = [];
    const mirrorAll: number[] = [];
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed / 2_147_483_648;
    };
    for (let shard = 0; shard < shards; shard++) {
      const outcomes = Array.from({ length: 250 }, () => {
        // Long-tailed, and each shard a little different: a mix no single shard shows.
        const primary = Math.round(5 + 200 * random() ** 4 + shard);
        const mirror = Math.round(primary * (1 + random()) + (random() < 0.02 ? 2000 : 0));
        primaryAll.push(primary);
        mirrorAll.push(mirror);
        return sent(200, mirror, { status: 200, latencyMs: primary });
      });
      const stub = env.MIRROR_STATS.get(env.MIRROR_STATS.idFromName(shardName(shard)));
      await stub.add({ encoded: encodeTally(batchOf(outcomes).tally), samples: [] });
    }
    const read = await readStats(env.MIRROR_STATS, shards, 5);
    const mirror = read.merged.routes.get("r")?.mirrors.get("m");
    const input = verdictInput(
      mirror,
      { minutes: read.minutes, to: Date.now() },
      { compared: false, shards: { asked: 16, answered: 16 } },
    );
    const reported = {
      primary: latencyQuantiles(input.latency.primary),
      mirror: latencyQuantiles(input.latency.mirror),
    };
    for (const [side, values] of [
      ["primary", primaryAll],
      ["mirror", mirrorAll],
    ] as const) {
      expect(reported[side]?.count).toBe(values.length);
      for (const q of ["p50", "p95", "p99"] as const) {
        const exact = exactQuantile(values, Number(q.slice(1)) / 100);
        // Two decimals of rounding on top of the sketch's relative error.
        expect(Math.abs((reported[side]?.[q] as number) - exact)).toBeLessThanOrEqual(
          SKETCH_RELATIVE_ERROR * exact + 0.005,
        );
      }
    }
    const [summary] = summarize(read.merged, read.minutes);
    expect(summary?.mirrors[0]?.sideBySide.primary.latencyMs).toEqual(reported.primary);
    expect(summary?.mirrors[0]?.sideBySide.mirror.status["2xx"]).toBe(4000);
  });

  it("counts a signature as the number of requests that differ in exactly that set of fields", () => {
    const sets = [["$.price"], ["$.price", "$.tax"], ["$.items[3].id"], ["$.items[0].id"], ["status"]];
    const outcomes: MirrorOutcome[] = [];
    const expected = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const fields = sets[(i * 7) % sets.length] as string[];
      outcomes.push(sent(200, 1, undefined, differ(fields)));
      const key = signatureOf({ fields }) as string;
      expected.set(key, (expected.get(key) ?? 0) + 1);
    }
    const top = batchOf(outcomes).tally.get("r")?.mirrors.get("m")?.signatures?.top();
    // Indexes fold as in the field table: [3] and [0] are one signature.
    expect(expected.size).toBe(4);
    expect(new Map(top?.signatures.map((s) => [s.signature, s.count]))).toEqual(expected);
  });
});

import { describe, expect, it } from "vitest";
import { type Counts, countLatency, countSent, countSkip, countVerdict, newCounts } from "./counters.js";
import { mergeShards } from "./merge.js";
import { summarize } from "./summary.js";
import { LATEST_SAMPLES, MINUTE_MS, type ShardRows } from "./tables.js";
import { MAX_FIELDS, MAX_MIRROR_NAMES_PER_ROUTE, OTHER } from "./tally.js";

const M = 29_000_000; // an epoch minute

function counts(build: (c: Counts) => void): Counts {
  const c = newCounts();
  build(c);
  return c;
}

const sent200 = (latency: number, verdict?: "match" | "differ") =>
  counts((c) => {
    countSent(c, 200);
    countLatency(c, latency);
    if (verdict) countVerdict(c, verdict);
  });

function rows(partial: Partial<ShardRows>): ShardRows {
  return { routes: [], mirrors: [], latency: [], signatures: [], fields: [], examples: [], samples: [], ...partial };
}

describe("merging shards", () => {
  it("adds every shard's minutes exactly and gives every minute of the window a point", () => {
    const a = rows({
      routes: [[M, "r", 3, 2]],
      mirrors: [[M, "r", "m", sent200(4, "differ")]],
      fields: [["r", "m", "$.price", 1, 0]],
    });
    const b = rows({
      routes: [
        [M, "r", 1, 1],
        [M + 2, "r", 5, 0],
      ],
      mirrors: [
        [M, "r", "m", sent200(300, "match")],
        [M + 2, "r", "m", counts((c) => countSkip(c, "not_sampled"))],
      ],
      fields: [["r", "m", "$.price", 2, 1]],
    });
    const minutes = [M - 1, M, M + 1, M + 2];
    const [route] = summarize(mergeShards([a, b]), minutes);
    expect(route).toMatchObject({ route: "r", requests: 9, mirrored: 3 });
    expect(route?.series.map((p) => [p.requests, p.mirrored, p.sent, p.skipped, p.differ, p.compared])).toEqual([
      [0, 0, 0, 0, 0, 0],
      [4, 3, 2, 0, 1, 2],
      [0, 0, 0, 0, 0, 0],
      [5, 0, 0, 1, 0, 0],
    ]);
    expect(route?.series.map((p) => p.minute)).toEqual(minutes.map((m) => new Date(m * MINUTE_MS).toISOString()));
    const mirror = route?.mirrors[0];
    expect(mirror?.series.map((p) => [p.p95Ms, p.diffRate])).toEqual([
      [0, 0],
      [300, 0.5],
      [0, 0],
      [0, 0],
    ]);
    expect(mirror?.compare).toMatchObject({ match: 1, differ: 1, diffRate: 0.5 });
    expect(mirror?.compare.fields).toEqual([{ field: "$.price", differ: 3, noise: 1, examples: [] }]);
    expect(mirror?.latency).toEqual({ avgMs: 152, p50Ms: 5, p95Ms: 300, maxMs: 300 });
  });

  it("lists fields most frequent first, noise-only fields apart, examples newest first", () => {
    const merged = mergeShards([
      rows({
        fields: [
          ["r", "m", "$.a", 1, 0],
          ["r", "m", "$.b", 5, 0],
          ["r", "m", "$.ts", 0, 9],
        ],
        examples: [
          ["r", "m", "$.b", "$.b", "1", "2", 10],
          ["r", "m", "$.b", "$.b", "1", "3", 30],
        ],
      }),
      rows({ examples: [["r", "m", "$.b", "$.b", "1", "4", 20]] }),
    ]);
    const compare = summarize(merged, [M])[0]?.mirrors[0]?.compare;
    expect(compare?.fields.map((f) => [f.field, f.differ])).toEqual([
      ["$.b", 5],
      ["$.a", 1],
    ]);
    expect(compare?.fields[0]?.examples.map((e) => e.candidate)).toEqual(["3", "4"]);
    expect(compare?.noise).toEqual([{ field: "$.ts", noise: 9 }]);
  });

  it("folds names past the bounds into (other), keeping the busiest, without losing a count", () => {
    const mirrors: ShardRows["mirrors"] = [];
    const fields: ShardRows["fields"] = [];
    for (let i = 0; i < MAX_MIRROR_NAMES_PER_ROUTE * 2; i++) {
      // Different shards and minutes each held their own names.
      mirrors.push([M + (i % 3), "r", `m${i}`, counts((c) => Array.from({ length: i + 1 }, () => countSent(c, 200)))]);
    }
    for (let i = 0; i < MAX_FIELDS * 2; i++) fields.push(["r", "m0", `$.f${i}`, i + 1, 0]);
    const route = summarize(mergeShards([rows({ mirrors }), rows({ fields })]), [M, M + 1, M + 2])[0];
    expect(route?.mirrors).toHaveLength(MAX_MIRROR_NAMES_PER_ROUTE);
    const total = (route?.mirrors ?? []).reduce((n, m) => n + m.sent, 0);
    expect(total).toBe((MAX_MIRROR_NAMES_PER_ROUTE * 2 * (MAX_MIRROR_NAMES_PER_ROUTE * 2 + 1)) / 2);
    expect(route?.mirrors.some((m) => m.mirror === `m${MAX_MIRROR_NAMES_PER_ROUTE * 2 - 1}`)).toBe(true);
    expect(route?.mirrors.some((m) => m.mirror === "m0")).toBe(false);
    const other = route?.mirrors.find((m) => m.mirror === OTHER);
    expect(other?.compare.fields).toHaveLength(MAX_FIELDS);
    expect(other?.compare.fields[0]?.field).toBe(OTHER);
    const differ = (other?.compare.fields ?? []).reduce((n, f) => n + f.differ, 0);
    expect(differ).toBe((MAX_FIELDS * 2 * (MAX_FIELDS * 2 + 1)) / 2);
  });

  it("keeps the newest samples across shards", () => {
    const samples = (from: number): ShardRows["samples"] =>
      Array.from({ length: LATEST_SAMPLES }, (_, i) => [from + 2 * i, JSON.stringify({ at: from + 2 * i })]);
    const merged = mergeShards([rows({ samples: samples(0) }), rows({ samples: samples(1) })]);
    expect(merged.samples).toHaveLength(LATEST_SAMPLES);
    expect(merged.samples[0]?.at).toBe(2 * LATEST_SAMPLES - 1);
    expect(merged.samples.map((s) => s.at)).toEqual([...merged.samples.map((s) => s.at)].sort((x, y) => y - x));
  });

  it("lists configured routes without traffic, with a zero series", () => {
    expect(summarize(mergeShards([]), [M, M + 1], ["b", "constructor"])).toEqual([
      expect.objectContaining({ route: "b", requests: 0, mirroredPercent: null, mirrors: [] }),
      expect.objectContaining({ route: "constructor", requests: 0, mirrors: [] }),
    ]);
    expect(summarize(mergeShards([]), [M], ["b"])[0]?.series[0]).toMatchObject({ requests: 0, diffRate: 0 });
  });
});

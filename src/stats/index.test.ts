import { describe, expect, it } from "vitest";
import type { MirrorOutcome } from "../record/index.js";
import {
  countOutcome,
  countRequest,
  emptyBatch,
  LATENCY_BOUNDS_MS,
  latencyQuantile,
  MAX_MIRRORS_PER_ROUTE,
  MAX_SAMPLES,
  mergeTally,
  OTHER_MIRRORS,
  summarize,
} from "./index.js";

const base = { route: "r", mirror: "m", requestId: "id" };

function sent(
  status: number,
  latencyMs: number,
  compare?: "match" | "differ" | "error",
): Extract<MirrorOutcome, { kind: "sent" }> {
  return {
    ...base,
    kind: "sent",
    status,
    latencyMs,
    bodyBytes: 10,
    ...(compare ? { compare: { verdict: compare, fields: [], noise: [] } } : {}),
  };
}

describe("counting", () => {
  it("counts routes and mirrors whose names an object already has: constructor, __proto__, toString", () => {
    const batch = emptyBatch();
    for (const route of ["constructor", "toString"]) {
      countRequest(batch.tally, route, true);
      countOutcome(batch, { ...sent(200, 4), route, mirror: "constructor" });
      countOutcome(batch, { ...base, route, mirror: "__proto__", kind: "skipped", reason: "unknown_cluster" });
    }
    const merged = mergeTally({}, JSON.parse(JSON.stringify(batch.tally)));
    const rows = summarize(merged, ["constructor", "hasOwnProperty"]);
    const mirrors = [
      ["__proto__", 0, { unknown_cluster: 1 }],
      ["constructor", 1, {}],
    ];
    expect(rows.map((r) => [r.route, r.requests, r.mirrors.map((m) => [m.mirror, m.sent, m.skipped])])).toEqual([
      ["constructor", 1, mirrors],
      ["hasOwnProperty", 0, []],
      ["toString", 1, mirrors],
    ]);
    expect(Object.getPrototypeOf(batch.tally)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).sent).toBeUndefined();
  });

  it("counts requests, sends by status class, failures by kind, skips by reason and verdicts", () => {
    const batch = emptyBatch();
    countRequest(batch.tally, "r", true);
    countRequest(batch.tally, "r", false);
    countOutcome(batch, sent(200, 4, "match"));
    countOutcome(batch, sent(503, 40, "differ"));
    countOutcome(batch, { ...base, kind: "failed", error: "timeout", message: "", latencyMs: 5000 });
    countOutcome(batch, { ...base, kind: "failed", error: "circuit_open", message: "", latencyMs: 0 });
    countOutcome(batch, { ...base, kind: "skipped", reason: "not_sampled" });
    const [route] = summarize(batch.tally);
    expect(route).toMatchObject({ route: "r", requests: 2, mirrored: 1, mirroredPercent: 50 });
    expect(route?.mirrors[0]).toMatchObject({
      mirror: "m",
      sent: 2,
      failed: 2,
      status: { "2xx": 1, "5xx": 1 },
      errors: { timeout: 1, circuit_open: 1 },
      skipped: { not_sampled: 1 },
      compare: { match: 1, differ: 1, error: 0, diffRate: 0.5 },
      // A circuit_open failure never went out, so it has no latency to count.
      latency: { avgMs: Math.round((4 + 40 + 5000) / 3), maxMs: 5000 },
    });
  });

  it("folds header-chosen mirror names past the limit into one bucket", () => {
    const batch = emptyBatch();
    for (let i = 0; i < MAX_MIRRORS_PER_ROUTE * 3; i++) {
      countOutcome(batch, { ...base, mirror: `attacker-${i}`, kind: "skipped", reason: "unknown_cluster" });
    }
    const mirrors = Object.keys(batch.tally.r?.mirrors ?? {});
    expect(mirrors).toHaveLength(MAX_MIRRORS_PER_ROUTE);
    expect(batch.tally.r?.mirrors[OTHER_MIRRORS]?.skipped.unknown_cluster).toBe(MAX_MIRRORS_PER_ROUTE * 2 + 1);
  });

  it("keeps only the newest samples", () => {
    const batch = emptyBatch();
    for (let i = 0; i < MAX_SAMPLES + 5; i++) {
      const sample = { at: i } as never;
      countOutcome(batch, { ...sent(200, 1, "differ"), sample });
    }
    expect(batch.samples).toHaveLength(MAX_SAMPLES);
    expect(batch.samples[0]?.at).toBe(5);
  });
});

describe("mergeTally", () => {
  it("adds every counter, so that batches from many isolates sum exactly", () => {
    const a = emptyBatch();
    const b = emptyBatch();
    countRequest(a.tally, "r", true);
    countOutcome(a, sent(200, 3, "differ"));
    countRequest(b.tally, "r", true);
    countOutcome(b, sent(200, 700, "match"));
    countOutcome(b, { ...base, mirror: "n", kind: "skipped", reason: "body_too_large" });
    const merged = mergeTally(mergeTally({}, a.tally), b.tally);
    expect(merged.r?.requests).toBe(2);
    expect(merged.r?.mirrors.m?.latency).toMatchObject({ count: 2, sumMs: 703, maxMs: 700 });
    expect(merged.r?.mirrors.m?.compare).toEqual({ match: 1, differ: 1, error: 0 });
    expect(merged.r?.mirrors.n?.skipped).toEqual({ body_too_large: 1 });
  });
});

describe("latencyQuantile", () => {
  it("answers with the bucket's upper bound, never more than the maximum seen", () => {
    const batch = emptyBatch();
    for (const ms of [1, 2, 3, 4, 30, 30, 30, 30, 30, 900]) countOutcome(batch, sent(200, ms));
    const latency = batch.tally.r?.mirrors.m?.latency ?? expect.fail("no latency");
    expect(latencyQuantile(latency, 0.4)).toBe(5);
    expect(latencyQuantile(latency, 0.5)).toBe(50);
    expect(latencyQuantile(latency, 1)).toBe(900);
    expect(latency.buckets).toHaveLength(LATENCY_BOUNDS_MS.length + 1);
  });
});

describe("summarize", () => {
  it("lists configured routes without traffic, and has no rates without data", () => {
    expect(summarize({}, ["b", "a"])).toEqual([
      { route: "a", requests: 0, mirrored: 0, mirroredPercent: null, mirrors: [] },
      { route: "b", requests: 0, mirrored: 0, mirroredPercent: null, mirrors: [] },
    ]);
  });
});

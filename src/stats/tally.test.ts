import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { CompareSummary, DiffSample } from "../compare/index.js";
import { planMirrors } from "../mirror/plan.js";
import { MAX_ALLOWED_CLUSTERS, MAX_MIRRORS_PER_ROUTE, parseRoute } from "../policy/index.js";
import type { MirrorOutcome } from "../record/index.js";
import {
  accounting,
  addCounts,
  COLUMNS,
  failedByKind,
  LATENCY_BOUNDS_MS,
  latencyQuantile,
  newCounts,
  outcomes,
  SLOT,
  SLOT_COUNT,
  sentByStatus,
  skippedByReason,
  verdicts,
} from "./counters.js";
import {
  bounded,
  countOutcome,
  countRequest,
  emptyBatch,
  MAX_BATCH_SAMPLES,
  MAX_FIELDS,
  MAX_MIRROR_NAMES_PER_ROUTE,
  MAX_ROUTES,
  OTHER,
  SAMPLES_PER_FIELD,
} from "./tally.js";

const base = { route: "r", mirror: "m", requestId: "id" };

function sent(status: number, latencyMs: number, compare?: CompareSummary, sample?: DiffSample): MirrorOutcome {
  return {
    ...base,
    kind: "sent",
    status,
    latencyMs,
    bodyBytes: 10,
    ...(compare ? { compare } : {}),
    ...(sample ? { sample } : {}),
  };
}

const plain = (record: Record<string, number>) => ({ ...record });

describe("counting into a batch", () => {
  it("counts requests, sends by status class, failures by kind, skips by reason and verdicts", () => {
    const batch = emptyBatch();
    countRequest(batch.tally, "r", true);
    countRequest(batch.tally, "r", false);
    countOutcome(batch, sent(200, 4, { verdict: "match", fields: [], noise: [] }));
    countOutcome(batch, sent(503, 40, { verdict: "differ", fields: ["$.a"], noise: [] }));
    countOutcome(batch, { ...base, kind: "failed", error: "timeout", message: "", latencyMs: 5000 });
    countOutcome(batch, { ...base, kind: "failed", error: "circuit_open", message: "", latencyMs: 0 });
    countOutcome(batch, { ...base, kind: "skipped", reason: "not_sampled" });
    const route = batch.tally.get("r");
    expect(route).toMatchObject({ requests: 2, mirrored: 1 });
    const c = route?.mirrors.get("m")?.counts ?? [];
    expect([c[SLOT.sent], c[SLOT.failed], outcomes(c)]).toEqual([2, 2, 5]);
    expect(plain(sentByStatus(c))).toEqual({ "2xx": 1, "5xx": 1 });
    expect(plain(failedByKind(c))).toEqual({ timeout: 1, circuit_open: 1 });
    expect(plain(skippedByReason(c))).toEqual({ not_sampled: 1 });
    expect(verdicts(c)).toEqual({ match: 1, differ: 1, error: 0 });
    // A circuit_open failure never went out, so it has no latency to count.
    expect([c[SLOT.latencyCount], c[SLOT.latencySumMs], c[SLOT.latencyMaxMs]]).toEqual([3, 5044, 5000]);
  });

  it("folds header-chosen mirror names past the limit into one bucket", () => {
    const batch = emptyBatch();
    for (let i = 0; i < MAX_MIRROR_NAMES_PER_ROUTE * 3; i++) {
      countOutcome(batch, { ...base, mirror: `attacker-${i}`, kind: "skipped", reason: "unknown_cluster" });
    }
    const mirrors = batch.tally.get("r")?.mirrors ?? new Map();
    expect(mirrors.size).toBe(MAX_MIRROR_NAMES_PER_ROUTE);
    expect(skippedByReason(mirrors.get(OTHER)?.counts ?? []).unknown_cluster).toBe(MAX_MIRROR_NAMES_PER_ROUTE * 2 + 1);
  });

  it("keeps a row for every configured mirror however many names outside allow a header sends", () => {
    // The policy's largest route: every listed mirror and every allowed name.
    const listed = Array.from({ length: MAX_MIRRORS_PER_ROUTE }, (_, i) => `https://audit-${i}.example.net`);
    const allowed = Array.from({ length: MAX_ALLOWED_CLUSTERS }, (_, i) => `branch-${i}`);
    const route = parseRoute({
      id: "r",
      mirrors: listed.map((origin) => ({ origin })),
      mirrorFromHeader: { header: "x-mirror-cluster", allow: allowed },
    });
    const batch = emptyBatch();
    const plan = (name: string) => planMirrors(route, new Headers({ "x-mirror-cluster": name }), new Map(), () => 0);
    // The review's case first: junk names sent before the mirrors' own outcomes arrive.
    for (let i = 0; i < 1000; i++) {
      for (const skip of plan(`junk-${i}`).skipped) countOutcome(batch, { ...base, kind: "skipped", ...skip });
    }
    for (const name of allowed) {
      for (const skip of plan(name).skipped) countOutcome(batch, { ...base, kind: "skipped", ...skip });
    }
    for (const target of plan("").targets) countOutcome(batch, { ...sent(503, 10), mirror: target.label });
    const mirrors = batch.tally.get("r")?.mirrors ?? new Map();
    expect(mirrors.has(OTHER)).toBe(false);
    for (const origin of listed) expect(sentByStatus(mirrors.get(origin)?.counts ?? []), origin).toEqual({ "5xx": 1 });
    for (const name of allowed) {
      expect(skippedByReason(mirrors.get(name)?.counts ?? []), name).toEqual({ unknown_cluster: 1 });
    }
    expect({ ...skippedByReason(mirrors.get("(not allowed)")?.counts ?? []) }).toEqual({ cluster_not_allowed: 1000 });
  });

  it("stops taking new routes at the limit", () => {
    const batch = emptyBatch();
    for (let i = 0; i < MAX_ROUTES + 10; i++) countRequest(batch.tally, `route-${i}`, false);
    expect(batch.tally.size).toBe(MAX_ROUTES);
  });

  it("counts names that are also Object.prototype's like any other", () => {
    const batch = emptyBatch();
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
      countRequest(batch.tally, name, true);
      countOutcome(batch, { ...base, route: name, mirror: name, kind: "skipped", reason: "unknown_cluster" });
      countOutcome(batch, sent(200, 1, { verdict: "differ", fields: [name], noise: ["__proto__"] }));
    }
    expect([...batch.tally.keys()].sort()).toEqual(["__proto__", "constructor", "hasOwnProperty", "r", "toString"]);
    expect(batch.tally.get("constructor")?.requests).toBe(1);
    expect(skippedByReason(batch.tally.get("__proto__")?.mirrors.get("__proto__")?.counts ?? []).unknown_cluster).toBe(
      1,
    );
    const fields = batch.tally.get("r")?.mirrors.get("m")?.fields;
    expect(fields?.get("constructor")).toEqual({ differ: 1, noise: 0 });
    expect(fields?.get("__proto__")).toEqual({ differ: 1, noise: 4 });
  });
});

describe("field counts", () => {
  it("counts every reported field and noise once per outcome, the overflow as (other)", () => {
    const batch = emptyBatch();
    countOutcome(batch, sent(200, 1, { verdict: "differ", fields: ["$.price", "status"], noise: ["$.ts"] }));
    countOutcome(batch, sent(200, 1, { verdict: "match", fields: [], noise: ["$.ts"] }));
    countOutcome(
      batch,
      sent(200, 1, { verdict: "differ", fields: ["$.price"], noise: [], overflow: { fields: 7, noise: 2 } }),
    );
    const fields = batch.tally.get("r")?.mirrors.get("m")?.fields;
    expect(Object.fromEntries(fields ?? [])).toEqual({
      "$.price": { differ: 2, noise: 0 },
      status: { differ: 1, noise: 0 },
      "$.ts": { differ: 0, noise: 2 },
      [OTHER]: { differ: 7, noise: 2 },
    });
  });

  it("keeps at most MAX_FIELDS fields per route and mirror, summing the rest under (other)", () => {
    const batch = emptyBatch();
    const many = Array.from({ length: MAX_FIELDS * 2 }, (_, i) => `$.f${i}`);
    countOutcome(batch, sent(200, 1, { verdict: "differ", fields: many, noise: [] }));
    const fields = batch.tally.get("r")?.mirrors.get("m")?.fields ?? new Map();
    expect(fields.size).toBe(MAX_FIELDS);
    expect(fields.get(OTHER)?.differ).toBe(MAX_FIELDS + 1);
    let total = 0;
    for (const c of fields.values()) total += c.differ;
    expect(total).toBe(many.length);
  });

  it("does nothing for uncompared outcomes: no field map is made", () => {
    const batch = emptyBatch();
    countOutcome(batch, sent(200, 1));
    expect(batch.tally.get("r")?.mirrors.get("m")?.fields).toBeUndefined();
  });
});

describe("samples in a batch", () => {
  const sample = (at: number, fields: string[]) => ({ ...base, at, fields }) as unknown as DiffSample;
  const differ = (fields: string[]): CompareSummary => ({ verdict: "differ", fields, noise: [] });

  it("keeps a sample while one of its fields has fewer than SAMPLES_PER_FIELD", () => {
    const batch = emptyBatch();
    for (let i = 0; i < 10; i++) countOutcome(batch, sent(200, 1, differ(["$.common"]), sample(i, ["$.common"])));
    countOutcome(batch, sent(200, 1, differ(["$.common", "$.rare"]), sample(100, ["$.common", "$.rare"])));
    expect(batch.samples.map((s) => s.at)).toEqual([...Array.from({ length: SAMPLES_PER_FIELD }, (_, i) => i), 100]);
  });

  it("keeps at most MAX_BATCH_SAMPLES", () => {
    const batch = emptyBatch();
    for (let i = 0; i < MAX_BATCH_SAMPLES * 2; i++) {
      countOutcome(batch, sent(200, 1, differ([`$.f${i}`]), sample(i, [`$.f${i}`])));
    }
    expect(batch.samples).toHaveLength(MAX_BATCH_SAMPLES);
  });
});

describe("counter arrays", () => {
  it("have one SQL column per slot", () => {
    expect(COLUMNS).toHaveLength(SLOT_COUNT);
    expect(new Set(COLUMNS).size).toBe(SLOT_COUNT);
    for (const column of COLUMNS) expect(column).toMatch(/^[a-z][a-z0-9_]*$/);
  });

  it("add slot by slot, keeping the larger maximum latency", () => {
    const a = emptyBatch();
    const b = emptyBatch();
    countOutcome(a, sent(200, 3));
    countOutcome(b, sent(200, 700));
    countOutcome(b, { ...base, kind: "skipped", reason: "body_too_large" });
    const sum = addCounts(
      addCounts(newCounts(), a.tally.get("r")?.mirrors.get("m")?.counts ?? []),
      b.tally.get("r")?.mirrors.get("m")?.counts ?? [],
    );
    expect([sum[SLOT.sent], sum[SLOT.latencyCount], sum[SLOT.latencySumMs], sum[SLOT.latencyMaxMs]]).toEqual([
      2, 2, 703, 700,
    ]);
    expect(plain(skippedByReason(sum))).toEqual({ body_too_large: 1 });
  });

  it("read quantiles as the bucket's upper bound, never more than the maximum seen", () => {
    const batch = emptyBatch();
    for (const ms of [1, 2, 3, 4, 30, 30, 30, 30, 30, 900]) countOutcome(batch, sent(200, ms));
    const c = batch.tally.get("r")?.mirrors.get("m")?.counts ?? [];
    expect(latencyQuantile(c, 0.4)).toBe(5);
    expect(latencyQuantile(c, 0.5)).toBe(50);
    expect(latencyQuantile(c, 1)).toBe(900);
    expect(latencyQuantile(newCounts(), 0.5)).toBeUndefined();
    expect(LATENCY_BOUNDS_MS.length + 1).toBe(COLUMNS.filter((c) => c.startsWith("lat_le_")).length);
  });
});

describe("bounded", () => {
  it("counts a literal (other) with the overflow, never twice", () => {
    const map = new Map<string, number[]>();
    for (const key of ["a", OTHER, "b", "c"]) bounded(map, key, 3, () => []).push(1);
    expect(Object.fromEntries([...map].map(([k, v]) => [k, v.length]))).toEqual({ a: 1, [OTHER]: 2, b: 1 });
  });
});

describe("accounting for every durable and best-effort copy", () => {
  /** What became of one planned copy, and the outcomes that say so, in order. */
  type Life = {
    final: "deliveredInline" | "redelivered" | "dead" | "failedFinal" | "skipped" | "pending";
    outcomes: MirrorOutcome[];
  };

  const failure = { error: "connect", message: "refused" } as const;
  const lives: fc.Arbitrary<Life> = fc.oneof(
    fc.constantFrom(200, 204, 301).map((status) => ({ final: "deliveredInline", outcomes: [sent(status, 3)] }) as Life),
    fc.constantFrom(400, 404, 503).map((status) => ({ final: "failedFinal", outcomes: [sent(status, 3)] }) as Life),
    fc.constant<Life>({
      final: "failedFinal",
      outcomes: [{ ...base, kind: "failed", error: "timeout", message: "", latencyMs: 5000 }],
    }),
    fc
      .constantFrom("body_too_large", "memory_budget", "spool_unavailable", "headers_too_large")
      .map((reason) => ({ final: "skipped", outcomes: [{ ...base, kind: "skipped", reason }] }) as Life),
    // Spooled, then a few failed attempts, then its end (or none yet); a dead copy may be redriven and go on.
    fc
      .record({
        retries: fc.nat(4),
        end: fc.constantFrom(
          "redelivered",
          "rejected",
          "dead",
          "pending",
          "redriven-then-delivered",
          "redriven-pending",
        ),
      })
      .map(({ retries, end }) => {
        const spooled: MirrorOutcome = {
          ...base,
          kind: "spooled",
          ...failure,
          latencyMs: 2,
          bodyBytes: 9,
          bodyIn: "message",
        };
        const retrying = Array.from(
          { length: retries },
          (_, i): MirrorOutcome => ({
            ...base,
            kind: "retrying",
            ...failure,
            attempt: i + 1,
            delaySeconds: 5,
            latencyMs: 1,
          }),
        );
        const delivered: MirrorOutcome = {
          ...base,
          kind: "redelivered",
          attempt: 1,
          status: 204,
          latencyMs: 1,
          bodyBytes: 9,
          ageMs: 1,
        };
        const dead: MirrorOutcome = { ...base, kind: "dead", ...failure, attempts: 3, ageMs: 9 };
        const redriven: MirrorOutcome = { ...base, kind: "redriven", ageMs: 10 };
        const rejected: MirrorOutcome = { ...base, kind: "rejected", attempt: 1, status: 400, latencyMs: 1, ageMs: 1 };
        const ends: Record<typeof end, Life> = {
          redelivered: { final: "redelivered", outcomes: [delivered] },
          rejected: { final: "failedFinal", outcomes: [rejected] },
          dead: { final: "dead", outcomes: [dead] },
          pending: { final: "pending", outcomes: [] },
          "redriven-then-delivered": { final: "redelivered", outcomes: [dead, redriven, ...retrying, delivered] },
          "redriven-pending": { final: "pending", outcomes: [dead, redriven] },
        };
        const tail = ends[end];
        return { final: tail.final, outcomes: [spooled, ...retrying, ...tail.outcomes] };
      }),
  );

  it("adds up exactly: planned = delivered inline + redelivered + dead + failed final + skipped + pending, however the outcomes are batched and merged", () => {
    fc.assert(
      fc.property(
        fc.array(lives, { maxLength: 60 }),
        fc.nat(20),
        fc.array(fc.nat(), { minLength: 200, maxLength: 200 }),
        (copies, unsampled, spread) => {
          // Each outcome lands in some isolate's (or the consumer's) batch; batches merge in any order.
          const batches = Array.from({ length: 5 }, () => emptyBatch());
          let at = 0;
          const land = (outcome: MirrorOutcome) =>
            countOutcome(batches[(spread[at++ % spread.length] ?? 0) % 5] as ReturnType<typeof emptyBatch>, outcome);
          for (const life of copies) for (const outcome of life.outcomes) land(outcome);
          for (let i = 0; i < unsampled; i++) land({ ...base, kind: "skipped", reason: "not_sampled" });
          const total = newCounts();
          for (const batch of batches.reverse())
            addCounts(total, batch.tally.get("r")?.mirrors.get("m")?.counts ?? newCounts());
          const a = accounting(total);
          const truth = (final: Life["final"]) => copies.filter((c) => c.final === final).length;
          expect(a).toMatchObject({
            planned: copies.length,
            deliveredInline: truth("deliveredInline"),
            redelivered: truth("redelivered"),
            dead: truth("dead"),
            failedFinal: truth("failedFinal"),
            skipped: truth("skipped"),
            pending: truth("pending"),
          });
          expect(a.deliveredInline + a.redelivered + a.dead + a.failedFinal + a.skipped + a.pending).toBe(a.planned);
          expect(outcomes(total)).toBe(copies.length + unsampled);
        },
      ),
      { numRuns: 300 },
    );
  });
});

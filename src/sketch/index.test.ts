import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { seeded } from "../../test/worker/seeded.js";
import {
  decodeSketch,
  encodeSketch,
  LatencySketch,
  nearestRank,
  SKETCH_MAX_MS,
  SKETCH_MIN_MS,
  SKETCH_RELATIVE_ERROR,
  SKETCH_SLOTS,
  SketchFormatError,
  slotBounds,
  slotOf,
  slotValue,
} from "./index.js";

const GAMMA = (1 + SKETCH_RELATIVE_ERROR) / (1 - SKETCH_RELATIVE_ERROR);
/** Floating point may put a value that is exactly a bucket's edge in the next bucket: a rounding's worth more. */
const ALLOWED = SKETCH_RELATIVE_ERROR * (1 + 1e-9);

function sketchOf(values: readonly number[]): LatencySketch {
  const sketch = new LatencySketch();
  for (const v of values) sketch.add(v);
  return sketch;
}

/** The value of nearest rank ⌈q·n⌉ among `values`. */
function exactQuantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[nearestRank(q, sorted.length) - 1] as number;
}

/** Whether `reported` is what the sketch promises for the true value `x`. */
function withinBound(reported: number, x: number): boolean {
  if (!(x >= SKETCH_MIN_MS)) return reported === 0;
  if (x > SKETCH_MAX_MS) return reported === SKETCH_MAX_MS;
  return Math.abs(reported - x) <= ALLOWED * x;
}

/** Latencies that make a histogram's life hard. */
const edge = fc.integer({ min: -57, max: 316 }).map((i) => GAMMA ** i);
const inRangeEdge = edge.filter((x) => x >= SKETCH_MIN_MS && x <= SKETCH_MAX_MS);
const adversarial = fc.oneof(
  // One value, many times.
  fc
    .tuple(fc.double({ min: 0, max: 400_000, noNaN: true }), fc.integer({ min: 1, max: 300 }))
    .map(([v, n]) => new Array<number>(n).fill(v)),
  // Whole milliseconds, as the Workers clock gives them, zeros included.
  fc.array(fc.integer({ min: 0, max: 30_000 }), { minLength: 1, maxLength: 400, size: "max" }),
  // Exactly on bucket edges, and a hair either side.
  fc.array(
    fc.tuple(edge, fc.constantFrom(1, 1 + Number.EPSILON, 1 - Number.EPSILON)).map(([e, f]) => e * f),
    { minLength: 1, maxLength: 400, size: "max" },
  ),
  // Two modes far apart: a cache and a cold path.
  fc.array(
    fc.oneof(fc.double({ min: 0.5, max: 2, noNaN: true }), fc.double({ min: 10_000, max: 20_000, noNaN: true })),
    {
      minLength: 1,
      maxLength: 400,
      size: "max",
    },
  ),
  // Heavy tails, past the range on both sides.
  fc.array(
    fc.double({ min: 1e-6, max: 1, noNaN: true }).map((u) => 1 / (u * u)),
    { minLength: 1, maxLength: 400, size: "max" },
  ),
  fc.array(fc.double({ min: 0, max: 1e9, noNaN: true }), { minLength: 1, maxLength: 400, size: "max" }),
  // Around the two ends of the range.
  fc.array(fc.constantFrom(0, 0.05, 0.0999, 0.1, 0.1001, 0.1023, 299_999, 300_000, 300_001, 1e7), {
    minLength: 1,
    maxLength: 200,
    size: "max",
  }),
);
const QUANTILES = [0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1];

describe("buckets", () => {
  it("report every value from 0.1 ms to 300 s within 2 %", () => {
    fc.assert(
      fc.property(fc.oneof(fc.double({ min: SKETCH_MIN_MS, max: SKETCH_MAX_MS, noNaN: true }), inRangeEdge), (x) => {
        const slot = slotOf(x);
        const { low, high } = slotBounds(slot);
        expect(slot).toBeGreaterThan(0);
        expect(slot).toBeLessThan(SKETCH_SLOTS - 1);
        expect(low * (1 - 1e-12)).toBeLessThanOrEqual(x);
        expect(x).toBeLessThanOrEqual(high * (1 + 1e-12));
        expect(withinBound(slotValue(slot), x)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it("put 0, negatives and NaN in the underflow bucket, reported as 0, and the rest past 300 s in the overflow", () => {
    for (const low of [0, -3, Number.NaN, 0.0999, Number.NEGATIVE_INFINITY]) expect(slotOf(low)).toBe(0);
    for (const high of [300_000.001, 1e12, Number.POSITIVE_INFINITY]) expect(slotOf(high)).toBe(SKETCH_SLOTS - 1);
    expect(slotValue(0)).toBe(0);
    expect(slotValue(SKETCH_SLOTS - 1)).toBe(SKETCH_MAX_MS);
    expect(SKETCH_SLOTS).toBe(376);
  });

  it("cover the range without gaps: each bucket starts where the one before ends", () => {
    for (let slot = 1; slot < SKETCH_SLOTS; slot++) {
      expect(slotBounds(slot).low).toBeCloseTo(slotBounds(slot - 1).high, 9);
    }
  });
});

describe("quantiles", () => {
  it("of 16 shards merged equal those of all samples within 2 %, and the merge is exact", () => {
    fc.assert(
      fc.property(
        adversarial,
        fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 400, size: "max" }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (values, shardOf, q) => {
          const shards = Array.from({ length: 16 }, () => new LatencySketch());
          values.forEach((v, i) => {
            shards[shardOf[i % shardOf.length] as number]?.add(v);
          });
          const merged = new LatencySketch();
          for (const shard of shards) merged.merge(shard);
          const backwards = new LatencySketch();
          for (const shard of [...shards].reverse()) backwards.merge(shard);
          const whole = sketchOf(values);
          // Exact: the same buckets as one sketch of every value, in whatever order shards merge.
          expect(encodeSketch(merged)).toEqual(encodeSketch(whole));
          expect(encodeSketch(backwards)).toEqual(encodeSketch(whole));
          expect(merged.count).toBe(values.length);
          for (const quantile of [...QUANTILES, q]) {
            const reported = merged.quantile(quantile) as number;
            const exact = exactQuantile(values, quantile);
            if (!withinBound(reported, exact)) {
              throw new Error(`q=${quantile}: reported ${reported} for ${exact} (${values.length} values)`);
            }
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it("are undefined for an empty sketch, and q must be from 0 to 1", () => {
    const sketch = new LatencySketch();
    expect(sketch.quantile(0.5)).toBeUndefined();
    sketch.add(10);
    for (const bad of [-0.1, 1.01, Number.NaN]) expect(() => sketch.quantile(bad)).toThrow(RangeError);
  });

  it("count a value many times at once", () => {
    const sketch = new LatencySketch();
    sketch.add(100, 99);
    sketch.add(1000);
    expect(sketch.count).toBe(100);
    expect(sketch.quantile(0.99)).toBeCloseTo(100, -1);
    expect(sketch.quantile(1)).toBeCloseTo(1000, -2);
    expect([...sketch.buckets()].map((b) => b.count)).toEqual([99, 1]);
  });
});

describe("serialisation", () => {
  it("round-trips every sketch, bucket for bucket", () => {
    fc.assert(
      fc.property(adversarial, fc.integer({ min: 1, max: 2 ** 40 }), (values, heavy) => {
        const sketch = sketchOf(values);
        sketch.add(values[0] as number, heavy);
        const decoded = decodeSketch(encodeSketch(sketch));
        expect([...decoded.buckets()]).toEqual([...sketch.buckets()]);
        expect(decoded.count).toBe(sketch.count);
      }),
      { numRuns: 300 },
    );
  });

  it("is one byte empty, and a few hundred bytes for a busy route's minute", () => {
    expect(encodeSketch(new LatencySketch())).toEqual(Uint8Array.of(1));
    // 1,000 and 10,000 latencies of a log-normal around 80 ms (σ = 0.6: p99 at 320 ms), whole milliseconds.
    const random = seeded(26);
    const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    const minute = (n: number) => sketchOf(Array.from({ length: n }, () => Math.round(80 * Math.exp(0.6 * normal()))));
    const thousand = encodeSketch(minute(1000));
    const tenThousand = encodeSketch(minute(10_000));
    expect(thousand.byteLength).toBeLessThan(300);
    expect(tenThousand.byteLength).toBeLessThan(450);
    // The most the docs state: every one of the 376 buckets filled, counts in the millions, 5 bytes each.
    const full = new LatencySketch();
    for (let slot = 0; slot < SKETCH_SLOTS; slot++) full.addToBucket(slot, 2 ** 21 + slot);
    expect(encodeSketch(full).byteLength).toBe(1 + 376 * 5);
  });

  it.each([
    ["nothing", [], /at least its version byte/],
    ["another version", [2, 0, 1], /version 2; this one reads version 1/],
    ["a cut-short count", [1, 0, 0x80], /count at byte 3 is cut short/],
    ["a count of 0", [1, 5, 0], /bucket 5 is listed with a count of 0/],
    ["a bucket past the last", [1, 0x80, 0x03, 1], /bucket 384 is past the last, 375/],
    ["an overlong varint", [1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1], /longer than 8 bytes/],
    ["a count past 2^53", [1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], /passes 2\^53/],
  ])("refuses %s", (_, bytes, message) => {
    expect(() => decodeSketch(Uint8Array.from(bytes))).toThrow(SketchFormatError);
    expect(() => decodeSketch(Uint8Array.from(bytes))).toThrow(message);
  });
});

describe("LatencySketch", () => {
  it("grows its range both ways and clones independently", () => {
    const sketch = sketchOf([100]);
    sketch.add(1);
    sketch.add(10_000);
    const copy = sketch.clone();
    copy.add(5);
    expect(sketch.count).toBe(3);
    expect(copy.count).toBe(4);
    expect([...sketch.buckets()].map((b) => slotValue(b.slot))).toEqual([
      slotValue(slotOf(1)),
      slotValue(slotOf(100)),
      slotValue(slotOf(10_000)),
    ]);
  });
});

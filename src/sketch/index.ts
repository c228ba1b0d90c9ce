/**
 * @module sketch
 * A latency histogram that merges exactly: fixed logarithmic buckets, as in DDSketch (Masson,
 * Rim and Lee, VLDB 2019). A latency of x ms (0.1 ≤ x ≤ 300,000) goes to bucket
 * i = ⌈log_γ x⌉, which holds (γ^(i−1), γ^i], with γ = (1 + α) / (1 − α) and α = 0.02; a
 * bucket is reported as 2γ^i / (γ + 1), within α of every value it holds. So a quantile read from
 * the sketch is within 2 % of the true quantile of the values added, whatever their distribution,
 * however many sketches were merged, in whatever order: merging adds bucket counts, exactly.
 * Below 0.1 ms (0, in practice: the Workers clock has millisecond steps) is one underflow
 * bucket, reported as 0; above 300 s, longer than any timeout edge-mirror allows (a route's is at
 * most 300 s, a mirror's 30 s), one overflow bucket, reported as 300,000.
 *
 * Counts are kept densely over the range of buckets seen (a route's latencies span a few dozen
 * to a few hundred buckets of the 376), and serialise sparsely (`encodeSketch`): only non-empty
 * buckets, as varints. Pure.
 */

/** The relative error of every value the sketch reports, for values from `SKETCH_MIN_MS` to `SKETCH_MAX_MS`. */
export const SKETCH_RELATIVE_ERROR = 0.02;
/** The smallest latency with a bucket of its own; smaller ones (and 0) share the underflow bucket. */
export const SKETCH_MIN_MS = 0.1;
/** The largest latency with a bucket of its own; larger ones share the overflow bucket. */
export const SKETCH_MAX_MS = 300_000;

const GAMMA = (1 + SKETCH_RELATIVE_ERROR) / (1 - SKETCH_RELATIVE_ERROR);
const LOG_GAMMA = Math.log(GAMMA);
/** ⌈log_γ 0.1⌉ = −57 and ⌈log_γ 300000⌉ = 316. */
const MIN_INDEX = Math.ceil(Math.log(SKETCH_MIN_MS) / LOG_GAMMA);
const MAX_INDEX = Math.ceil(Math.log(SKETCH_MAX_MS) / LOG_GAMMA);

/**
 * Slots: 0 is the underflow bucket, 1 … MAX_INDEX − MIN_INDEX + 1 the buckets of the indexes
 * MIN_INDEX … MAX_INDEX, and the last the overflow bucket: 376 in all.
 */
export const SKETCH_SLOTS = MAX_INDEX - MIN_INDEX + 3;
const UNDERFLOW = 0;
const OVERFLOW = SKETCH_SLOTS - 1;

/** The slot a latency is counted in. Anything that is not a number ≥ 0.1 (NaN, negative, 0) underflows. */
export function slotOf(ms: number): number {
  if (!(ms >= SKETCH_MIN_MS)) return UNDERFLOW;
  if (ms > SKETCH_MAX_MS) return OVERFLOW;
  const index = Math.ceil(Math.log(ms) / LOG_GAMMA);
  // Rounding at the two ends of the range must not leave it.
  return Math.min(Math.max(index, MIN_INDEX), MAX_INDEX) - MIN_INDEX + 1;
}

/** The values a slot holds: from `low` (exclusive but for the first bucket and the underflow) to `high`. */
export function slotBounds(slot: number): { low: number; high: number } {
  if (slot === UNDERFLOW) return { low: 0, high: SKETCH_MIN_MS };
  if (slot === OVERFLOW) return { low: SKETCH_MAX_MS, high: Number.POSITIVE_INFINITY };
  const index = slot - 1 + MIN_INDEX;
  return {
    low: index === MIN_INDEX ? SKETCH_MIN_MS : GAMMA ** (index - 1),
    high: index === MAX_INDEX ? SKETCH_MAX_MS : GAMMA ** index,
  };
}

/** What the sketch reports for a value in `slot`: within `SKETCH_RELATIVE_ERROR` of it, in range. */
export function slotValue(slot: number): number {
  if (slot === UNDERFLOW) return 0;
  if (slot === OVERFLOW) return SKETCH_MAX_MS;
  return (2 * GAMMA ** (slot - 1 + MIN_INDEX)) / (GAMMA + 1);
}

/**
 * The nearest rank of quantile `q` among `n` values (1-based): ⌈q·n⌉, at least 1. The small
 * allowance keeps 0.07 × 100 (7.000000000000001 in floating point) at rank 7.
 */
export function nearestRank(q: number, n: number): number {
  return Math.max(1, Math.ceil(q * n - 1e-9));
}

/** One non-empty bucket, in order (see `LatencySketch.buckets`). */
export interface SketchBucket {
  slot: number;
  low: number;
  high: number;
  count: number;
}

export class SketchFormatError extends Error {
  override readonly name = "SketchFormatError";
}

/**
 * A mergeable latency histogram (see the module's header). `add` is a logarithm, a bounds check
 * and an increment; `merge` adds counts bucket by bucket.
 */
export class LatencySketch {
  /** Counts of the slots `offset` … `offset + bins.length − 1`; the rest are 0. */
  private bins: number[] = [];
  private offset = 0;
  /** Every value added, in every bucket. */
  count = 0;

  /** Counts `ms` (`times` times: a whole number ≥ 1). */
  add(ms: number, times = 1): void {
    this.addToBucket(slotOf(ms), times);
  }

  /** Counts `times` values in the bucket of `slot` (0 … `SKETCH_SLOTS` − 1), as a decoder does. */
  addToBucket(slot: number, times: number): void {
    const bins = this.bins;
    if (bins.length === 0) {
      this.offset = slot;
      bins.push(times);
    } else if (slot < this.offset) {
      const grow = this.offset - slot;
      bins.unshift(times, ...new Array<number>(grow - 1).fill(0));
      this.offset = slot;
    } else if (slot >= this.offset + bins.length) {
      for (let i = this.offset + bins.length; i < slot; i++) bins.push(0);
      bins.push(times);
    } else {
      bins[slot - this.offset] = (bins[slot - this.offset] as number) + times;
    }
    this.count += times;
  }

  /** Adds every count of `other` to this sketch (exact: bucket-wise sums); returns this sketch. */
  merge(other: LatencySketch): this {
    const { bins, offset } = other;
    for (let i = 0; i < bins.length; i++) {
      const n = bins[i] as number;
      if (n > 0) this.addToBucket(offset + i, n);
    }
    return this;
  }

  /** Calls `each` with the slot and count of every non-empty bucket, lowest first. */
  forEachBucket(each: (slot: number, count: number) => void): void {
    for (let i = 0; i < this.bins.length; i++) {
      const count = this.bins[i] as number;
      if (count > 0) each(this.offset + i, count);
    }
  }

  /** The non-empty buckets, lowest first, with the values each holds. */
  *buckets(): IterableIterator<SketchBucket> {
    for (let i = 0; i < this.bins.length; i++) {
      const count = this.bins[i] as number;
      if (count > 0) yield { slot: this.offset + i, ...slotBounds(this.offset + i), count };
    }
  }

  /**
   * The sketch's value for quantile `q` (0–1) of what was added: the value of the bucket holding
   * the value of nearest rank ⌈q·n⌉, within 2 % of that value (0 below 0.1 ms, 300,000 above 300 s);
   * undefined when nothing was added.
   */
  quantile(q: number): number | undefined {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`a quantile is from 0 to 1, not ${q}`);
    if (this.count === 0) return undefined;
    const rank = nearestRank(q, this.count);
    let seen = 0;
    for (let i = 0; i < this.bins.length; i++) {
      seen += this.bins[i] as number;
      if (seen >= rank) return slotValue(this.offset + i);
    }
    return slotValue(this.offset + this.bins.length - 1);
  }

  /** An independent copy. */
  clone(): LatencySketch {
    const copy = new LatencySketch();
    copy.bins = [...this.bins];
    copy.offset = this.offset;
    copy.count = this.count;
    return copy;
  }
}

/** The serialisation's first byte. Another γ, range or layout gets another version. */
const FORMAT_VERSION = 1;
/** A varint of more bytes than this would pass 2^53. */
const MAX_VARINT_BYTES = 8;

function pushVarint(out: number[], value: number): void {
  let v = value;
  // Arithmetic, not bit operations: counts merged over shards and an hour may pass 2^32.
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/**
 * The sketch as bytes, for a BLOB column or a message: a version byte, then for each non-empty
 * bucket in order the gap from the previous one (its slot minus the previous slot minus one) and
 * its count, both unsigned LEB128 varints. Latencies of one route and minute fill a few dozen
 * buckets, each usually 2–3 bytes; an empty sketch is 1 byte.
 */
export function encodeSketch(sketch: LatencySketch): Uint8Array {
  const out = [FORMAT_VERSION];
  let previous = -1;
  sketch.forEachBucket((slot, count) => {
    pushVarint(out, slot - previous - 1);
    pushVarint(out, count);
    previous = slot;
  });
  return Uint8Array.from(out);
}

/**
 * The sketch `encodeSketch` wrote. Anything else — another version, a slot out of range, a
 * count of 0 or past 2^53, a truncated varint — is refused with a `SketchFormatError` saying
 * what is wrong, rather than read as some other histogram.
 */
export function decodeSketch(bytes: Uint8Array): LatencySketch {
  if (bytes.byteLength === 0) throw new SketchFormatError("an encoded sketch has at least its version byte");
  if (bytes[0] !== FORMAT_VERSION) {
    throw new SketchFormatError(`an encoded sketch of version ${bytes[0]}; this one reads version ${FORMAT_VERSION}`);
  }
  const sketch = new LatencySketch();
  let at = 1;
  const varint = (what: string): number => {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      const byte = bytes[at++];
      if (byte === undefined) throw new SketchFormatError(`the ${what} at byte ${at - 1} is cut short`);
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(value)) throw new SketchFormatError(`the ${what} at byte ${at - 1} passes 2^53`);
        return value;
      }
      scale *= 0x80;
    }
    throw new SketchFormatError(`the ${what} before byte ${at} is longer than ${MAX_VARINT_BYTES} bytes`);
  };
  let slot = -1;
  while (at < bytes.byteLength) {
    slot += varint("gap") + 1;
    if (slot >= SKETCH_SLOTS) throw new SketchFormatError(`bucket ${slot} is past the last, ${SKETCH_SLOTS - 1}`);
    const count = varint("count");
    if (count === 0) throw new SketchFormatError(`bucket ${slot} is listed with a count of 0`);
    sketch.addToBucket(slot, count);
    if (!Number.isSafeInteger(sketch.count)) throw new SketchFormatError("the counts add up past 2^53");
  }
  return sketch;
}

/**
 * @module verdict/interval
 * The 95 % intervals the verdict's checks rest on: Wilson's score interval for a proportion,
 * Newcombe's hybrid score interval for the difference of two, and an interval for a quantile read
 * from a latency sketch, found by inverting Wilson's interval at the sketch's bucket edges. Every
 * formula is in docs/verdict.md. Pure.
 */
import type { LatencySketch } from "../sketch/index.js";

/** The standard normal quantile of 0.975: a two-sided 95 % interval, each end a one-sided 97.5 % bound. */
export const Z_95 = 1.959963984540054;

/** A closed interval [low, high]; `high` may be `Infinity` where nothing bounds it. */
export type Interval = readonly [low: number, high: number];

/**
 * Wilson's score interval (1927) for a proportion of `successes` in `trials`: unlike the normal
 * approximation p ± z·√(p(1−p)/n), it never leaves [0, 1], is not empty at 0 or n successes, and
 * holds its coverage with few trials or proportions near 0 — a diff rate of 0.4 % is both. With no
 * trials, nothing is known: [0, 1].
 *
 *   centre = (p + z²/2n) / (1 + z²/n),  half = z / (1 + z²/n) · √(p(1−p)/n + z²/4n²)
 */
export function wilsonInterval(successes: number, trials: number, z = Z_95): Interval {
  if (!(trials > 0)) return [0, 1];
  const p = successes / trials;
  const z2 = z * z;
  const scale = 1 + z2 / trials;
  const centre = (p + z2 / (2 * trials)) / scale;
  const half = (z / scale) * Math.sqrt((p * (1 - p)) / trials + z2 / (4 * trials * trials));
  // At 0 and n successes the formula's ends are exactly 0 and 1; rounding must not move them.
  return [successes <= 0 ? 0 : Math.max(0, centre - half), successes >= trials ? 1 : Math.min(1, centre + half)];
}

/**
 * Newcombe's hybrid score interval (1998, method 10) for p₁ − p₂, from each proportion's Wilson
 * interval [l₁, u₁] and [l₂, u₂]:
 *
 *   low  = (p₁ − p₂) − √((p₁ − l₁)² + (u₂ − p₂)²)
 *   high = (p₁ − p₂) + √((u₁ − p₁)² + (p₂ − l₂)²)
 *
 * It is made for independent samples. The verdict's two samples are the same requests, answered
 * by the primary and by the mirror, and their error rates are positively correlated; the variance
 * of a difference of positively correlated proportions is smaller than of independent ones, so
 * this interval is wider than a paired one would be, and a check decided on it errs towards
 * inconclusive, never towards a false pass or fail.
 */
export function newcombeDifference(
  successes1: number,
  trials1: number,
  successes2: number,
  trials2: number,
  z = Z_95,
): Interval {
  const p1 = trials1 > 0 ? successes1 / trials1 : 0;
  const p2 = trials2 > 0 ? successes2 / trials2 : 0;
  const [l1, u1] = wilsonInterval(successes1, trials1, z);
  const [l2, u2] = wilsonInterval(successes2, trials2, z);
  const d = p1 - p2;
  return [
    Math.max(-1, d - Math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)),
    Math.min(1, d + Math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)),
  ];
}

/**
 * A 95 % interval for the `q` quantile ξ of the latencies a sketch summarises. The sketch knows
 * its empirical distribution F̂ exactly at every bucket edge e (the count of values ≤ e over n),
 * so Wilson's interval for F(e) is known there: where its upper end is below q, F(e) < q and
 * ξ > e; where its lower end is above q, F(e) > q and ξ ≤ e. The interval runs from the highest
 * edge of the first kind to the lowest of the second — each end a one-sided 97.5 % bound, as F̂ is
 * monotone. It takes both uncertainties in: the sample's (few values, a wide interval) and the
 * histogram's (an end is always a bucket edge, within 4 % of the next). With too few values in the
 * tail, nothing bounds the quantile from above and `high` is `Infinity`, as it is when the bound
 * falls in the overflow bucket; `low` is 0 when nothing bounds it from below.
 */
export function quantileInterval(sketch: LatencySketch, q: number, z = Z_95): Interval {
  const n = sketch.count;
  if (n === 0) return [0, Number.POSITIVE_INFINITY];
  let low = 0;
  let high = Number.POSITIVE_INFINITY;
  let below = 0;
  for (const bucket of sketch.buckets()) {
    const upTo = below + bucket.count;
    // The values below this bucket's lower edge are `below`: ξ lies above that edge.
    if (wilsonInterval(below, n, z)[1] < q) low = bucket.low;
    // The values up to its upper edge are `upTo`: ξ lies at or below that edge.
    if (wilsonInterval(upTo, n, z)[0] > q) {
      high = bucket.high;
      break;
    }
    below = upTo;
  }
  return [low, high];
}

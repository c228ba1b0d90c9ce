/**
 * @module verdict
 * The release verdict of one mirror over a window: pass, fail or inconclusive, with a reason per
 * check (docs/verdict.md). From plain counts and two latency sketches — what the live counters
 * keep per route, mirror and minute, added over the window — it judges:
 *
 * - `diffRate`: the share of compared answers that differ (noise cancelled), against
 *   `maxDiffRate`, by its Wilson interval;
 * - `errorRateIncrease`: the mirror's share of 5xx answers and failures minus the primary's, over
 *   the same requests, against `maxErrorRateIncrease`, by Newcombe's hybrid score interval;
 * - `latencyP50Ratio`, `latencyP99Ratio`: the mirror's latency quantile over the primary's, against
 *   `maxLatencyRatio`, by the quantiles' intervals read from the sketches.
 *
 * A check fails only when its 95 % interval lies wholly above the threshold, passes only when it
 * lies wholly below, and is otherwise inconclusive — as it is on fewer than `minSamples` requests.
 * The verdict fails if any check fails, passes if every check passes, and is otherwise
 * inconclusive. Pure.
 */
import { mirrorLabel } from "../mirror/plan.js";
import { DEFAULT_VERDICT_THRESHOLDS, type Route, type VerdictThresholds } from "../policy/index.js";
import type { LatencySketch } from "../sketch/index.js";
import { newcombeDifference, quantileInterval, wilsonInterval } from "./interval.js";
import {
  type CheckName,
  type CheckResult,
  type LatencyQuantiles,
  type ReportThresholds,
  type ShardsRead,
  STATUS_KEYS,
  type StatusCounts,
  type VerdictOutcome,
  type VerdictReport,
  type VerdictWindow,
} from "./report.js";

export { newcombeDifference, quantileInterval, wilsonInterval, Z_95 } from "./interval.js";
export * from "./report.js";

/**
 * What the live counters hold of one route and mirror over a window, added over its minutes and
 * every shard. Each side counts the same requests: those whose copy went out to the mirror (sent,
 * or failed after it was sent — a copy the breaker held back says nothing of the mirror).
 */
export interface VerdictInput {
  window: VerdictWindow;
  /** The shards read, and how many answered. */
  shards: ShardsRead;
  /** For a mirror with `compare`; absent for one that is not compared. */
  compare?:
    | {
        /** Comparisons that reached a verdict, `match` or `differ` (`error`s excluded). */
        compared: number;
        /** Of those, the ones that differ once noise is cancelled. */
        differ: number;
        /** Of those, the ones on which the reference cancelled at least one difference as noise. */
        noisy: number;
        /** Comparisons that ended in `error` (an answer too large, a reference that failed): not judged. */
        errors?: number | undefined;
      }
    | undefined;
  /** The primary's answer and the mirror's to each request, by status class. */
  status: { primary: StatusCounts; mirror: StatusCounts };
  /**
   * Time to response headers of the requests both answered (`sent` outcomes): the primary's
   * (its answer to the client's request) and the mirror's (to the copy).
   */
  latency: { primary: LatencySketch; mirror: LatencySketch };
}

/**
 * Latencies below 1 ms count as 1 ms in a ratio. The Workers clock advances in whole milliseconds
 * (and only between I/O), so two answers within the same millisecond are as fast as each other,
 * and a ratio of two sub-millisecond readings would be noise.
 */
export const LATENCY_FLOOR_MS = 1;

/** The thresholds of the mirror labelled `label` on `route`: its own, or the defaults. */
export function thresholdsFor(route: Pick<Route, "mirrors" | "mirrorFromHeader">, label: string): ReportThresholds {
  const listed = route.mirrors.find((mirror) => mirrorLabel(mirror) === label);
  const own = listed
    ? listed.verdict
    : route.mirrorFromHeader?.allow.includes(label)
      ? route.mirrorFromHeader.verdict
      : undefined;
  return resolved(own);
}

function resolved(own: VerdictThresholds | undefined): ReportThresholds {
  const t = own ?? DEFAULT_VERDICT_THRESHOLDS;
  return {
    maxDiffRate: t.maxDiffRate,
    maxErrorRateIncrease: t.maxErrorRateIncrease,
    maxLatencyRatio: { p50: t.maxLatencyRatio.p50, p99: t.maxLatencyRatio.p99 },
    minSamples: t.minSamples,
  };
}

/** Every status count zero: what a side without data reports. */
export function emptyStatus(): StatusCounts {
  return { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, failed: 0 };
}

function total(status: StatusCounts): number {
  let n = 0;
  for (const key of STATUS_KEYS) n += status[key];
  return n;
}

const errors = (status: StatusCounts) => status["5xx"] + status.failed;

/** A rate or ratio for JSON: six significant decimals are more than any threshold tells apart. */
const round = (x: number) => Math.round(x * 1e6) / 1e6;
const roundMs = (x: number) => Math.round(x * 100) / 100;
const percent = (x: number) => `${(x * 100).toFixed(2)} %`;
const points = (x: number) => `${x >= 0 ? "+" : "−"}${(Math.abs(x) * 100).toFixed(2)} points`;
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "unbounded");

/** Where a 95 % interval lies against `threshold`: wholly above fails, wholly below passes. */
function judged(low: number, high: number, threshold: number): VerdictOutcome {
  if (low > threshold) return "fail";
  if (high < threshold) return "pass";
  return "inconclusive";
}

const PASSED: Record<VerdictOutcome, boolean | null> = { pass: true, fail: false, inconclusive: null };

interface Measured {
  check: CheckName;
  threshold: number;
  samples: number;
  minSamples: number;
  observed: number | null;
  low: number;
  high: number;
  /** How a value of this check reads in a sentence. */
  show: (x: number) => string;
  /** What is measured, for the sentence: "of 1234 compared answers differ". */
  what: string;
  /** What more data would settle, for an inconclusive check. */
  tooFew: string;
}

function result(m: Measured): CheckResult {
  const base = {
    check: m.check,
    observed: m.observed === null ? null : round(m.observed),
    threshold: m.threshold,
    samples: m.samples,
  };
  if (m.samples < m.minSamples || m.observed === null) {
    return {
      ...base,
      outcome: "inconclusive",
      passed: null,
      ci95: null,
      reason: `${m.samples} ${m.tooFew}, fewer than minSamples ${m.minSamples}`,
    };
  }
  const outcome = judged(m.low, m.high, m.threshold);
  const ci95: [number | null, number | null] = [round(m.low), Number.isFinite(m.high) ? round(m.high) : null];
  const interval = `95 % interval ${m.show(m.low)} to ${m.show(m.high)}`;
  const reason =
    outcome === "fail"
      ? `${m.show(m.observed)} ${m.what}; ${interval}, wholly above the threshold ${m.show(m.threshold)}`
      : outcome === "pass"
        ? `${m.show(m.observed)} ${m.what}; ${interval}, wholly below the threshold ${m.show(m.threshold)}`
        : `${m.show(m.observed)} ${m.what}; ${interval} includes the threshold ${m.show(m.threshold)}: more requests will tell`;
  return { ...base, outcome, passed: PASSED[outcome], ci95, reason };
}

function diffRateCheck(compare: NonNullable<VerdictInput["compare"]>, t: ReportThresholds): CheckResult {
  const n = compare.compared;
  const [low, high] = wilsonInterval(compare.differ, n);
  // Comparisons that ended in error are no evidence either way, but a reader must know of them.
  const errors = compare.errors ?? 0;
  const besides = errors > 0 ? ` (besides ${errors} that ended in error)` : "";
  return result({
    check: "diffRate",
    threshold: t.maxDiffRate,
    samples: n,
    minSamples: t.minSamples,
    observed: n > 0 ? compare.differ / n : null,
    low,
    high,
    show: percent,
    what: `of ${n} compared answers differ${besides}`,
    tooFew: `compared requests${besides}`,
  });
}

function errorRateCheck(status: VerdictInput["status"], t: ReportThresholds): CheckResult {
  const nPrimary = total(status.primary);
  const nMirror = total(status.mirror);
  const [low, high] = newcombeDifference(errors(status.mirror), nMirror, errors(status.primary), nPrimary);
  const n = Math.min(nPrimary, nMirror);
  return result({
    check: "errorRateIncrease",
    threshold: t.maxErrorRateIncrease,
    samples: n,
    minSamples: t.minSamples,
    observed: n > 0 ? errors(status.mirror) / nMirror - errors(status.primary) / nPrimary : null,
    low,
    high,
    show: points,
    what: `of 5xx answers and failures over the primary's (${percent(errors(status.mirror) / Math.max(nMirror, 1))} of the mirror's ${nMirror}, ${percent(errors(status.primary) / Math.max(nPrimary, 1))} of the primary's ${nPrimary})`,
    tooFew: "copied requests",
  });
}

const floor = (ms: number) => Math.max(ms, LATENCY_FLOOR_MS);

function latencyCheck(
  check: "latencyP50Ratio" | "latencyP99Ratio",
  q: number,
  latency: VerdictInput["latency"],
  threshold: number,
  minSamples: number,
): CheckResult {
  const { primary, mirror } = latency;
  const n = Math.min(primary.count, mirror.count);
  const pointPrimary = primary.quantile(q);
  const pointMirror = mirror.quantile(q);
  const [mirrorLow, mirrorHigh] = quantileInterval(mirror, q);
  const [primaryLow, primaryHigh] = quantileInterval(primary, q);
  const name = q === 0.5 ? "p50" : "p99";
  return result({
    check,
    threshold,
    samples: n,
    minSamples,
    observed: pointPrimary === undefined || pointMirror === undefined ? null : floor(pointMirror) / floor(pointPrimary),
    // The ratio's lowest plausible value pairs the mirror's lowest with the primary's highest, and
    // the other way round; each end a one-sided 97.5 % bound of each quantile, 95 % together.
    low: Number.isFinite(primaryHigh) ? floor(mirrorLow) / floor(primaryHigh) : 0,
    high: Number.isFinite(mirrorHigh) ? floor(mirrorHigh) / floor(primaryLow) : Number.POSITIVE_INFINITY,
    show: times,
    what: `the primary's ${name} latency (${roundMs(pointMirror ?? 0)} ms against ${roundMs(pointPrimary ?? 0)} ms)`,
    tooFew: "latencies on the smaller side",
  });
}

/** p50, p95 and p99 of a sketch (within its 2 %), in ms to two decimals; null when it is empty. */
export function latencyQuantiles(sketch: LatencySketch): LatencyQuantiles | null {
  if (sketch.count === 0) return null;
  const at = (q: number) => roundMs(sketch.quantile(q) as number);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), count: sketch.count };
}

/** The verdict of mirror `mirror` of route `route` over `input`'s window, judged by `thresholds`. */
export function decideVerdict(
  route: string,
  mirror: string,
  input: VerdictInput,
  thresholds: ReportThresholds,
): VerdictReport {
  const reasons: CheckResult[] = [];
  if (input.compare) reasons.push(diffRateCheck(input.compare, thresholds));
  reasons.push(errorRateCheck(input.status, thresholds));
  const { p50, p99 } = thresholds.maxLatencyRatio;
  reasons.push(latencyCheck("latencyP50Ratio", 0.5, input.latency, p50, thresholds.minSamples));
  reasons.push(latencyCheck("latencyP99Ratio", 0.99, input.latency, p99, thresholds.minSamples));

  const verdict: VerdictOutcome = reasons.some((r) => r.outcome === "fail")
    ? "fail"
    : reasons.every((r) => r.outcome === "pass")
      ? "pass"
      : "inconclusive";
  const compare = input.compare;
  const compared = compare?.compared ?? 0;
  const diff = reasons.find((r) => r.check === "diffRate");
  const error = reasons.find((r) => r.check === "errorRateIncrease") as CheckResult;
  const nPrimary = total(input.status.primary);
  const nMirror = total(input.status.mirror);
  const [diffLow, diffHigh] = wilsonInterval(compare?.differ ?? 0, compared);
  const [increaseLow, increaseHigh] = newcombeDifference(
    errors(input.status.mirror),
    nMirror,
    errors(input.status.primary),
    nPrimary,
  );
  return {
    route,
    mirror,
    verdict,
    reasons,
    window: input.window,
    samples: compare ? compared : nMirror,
    diffRate: diff?.observed ?? null,
    diffRateCI95: compare && compared > 0 ? [round(diffLow), round(diffHigh)] : null,
    noiseRate: compare && compared > 0 ? round(compare.noisy / compared) : null,
    errorRate: {
      primary: nPrimary > 0 ? round(errors(input.status.primary) / nPrimary) : null,
      mirror: nMirror > 0 ? round(errors(input.status.mirror) / nMirror) : null,
      increase: error.observed,
      increaseCI95: nPrimary > 0 && nMirror > 0 ? [round(increaseLow), round(increaseHigh)] : null,
    },
    status: { primary: { ...input.status.primary }, mirror: { ...input.status.mirror } },
    latencyMs: {
      primary: latencyQuantiles(input.latency.primary),
      mirror: latencyQuantiles(input.latency.mirror),
    },
    thresholds,
    shards: { ...input.shards },
  };
}

/**
 * @module verdict/report
 * The contract of `GET <ADMIN_PREFIX>/api/verdict?route=R&mirror=M&window=15m`: the JSON it
 * answers (`VerdictReport`), the window syntax it takes (`parseWindow`), and a reader that
 * refuses anything else (`parseVerdictReport`). The endpoint and `npm run policy -- verdict` both
 * use this module, so that what one writes the other reads. Types and pure functions only.
 *
 * The endpoint answers 200 with a `VerdictReport` whatever the verdict (Argo Rollouts' Web
 * provider reads `result.verdict`; a non-2xx answer is an error to it, not a failed
 * measurement). Other answers are the admin surface's JSON errors, `{ "error", "message" }`:
 * 400 `invalid_query` (no `route`, or a window `parseWindow` refuses), 400 `mirror_required` (no
 * `mirror`, and the route has more than one), 404 `not_found` (no such route, or no such mirror
 * on it), 401 without the admin token, 503 `stats_unavailable` (no shard answered; a verdict on
 * the shards that did is a verdict on fewer requests, and `shards` says so).
 */

export const VERDICTS = ["pass", "fail", "inconclusive"] as const;
export type VerdictOutcome = (typeof VERDICTS)[number];

/** The checks, in the order a report lists them. */
export const CHECKS = ["diffRate", "errorRateIncrease", "latencyP50Ratio", "latencyP99Ratio"] as const;
export type CheckName = (typeof CHECKS)[number];

/** One check of a mirror against its threshold (docs/verdict.md). */
export interface CheckResult {
  check: CheckName;
  outcome: VerdictOutcome;
  /** `true` when the check passed, `false` when it failed, `null` when it is inconclusive. */
  passed: boolean | null;
  /**
   * The point estimate: a share for `diffRate`, a difference of shares for `errorRateIncrease`,
   * a ratio for the latency checks; `null` without data.
   */
  observed: number | null;
  /** Its 95 % interval; an end is `null` where nothing bounds it (a latency tail with too few values). */
  ci95: [number | null, number | null] | null;
  threshold: number;
  /** The requests the check rests on: the smaller side's, for the checks that compare two. */
  samples: number;
  /** Why, in a sentence: what was observed and what the interval says of the threshold. */
  reason: string;
}

/** Answers by status class; `failed` is a request that got none (timeout, refused connection). */
export interface StatusCounts {
  "1xx": number;
  "2xx": number;
  "3xx": number;
  "4xx": number;
  "5xx": number;
  failed: number;
}

export const STATUS_KEYS = ["1xx", "2xx", "3xx", "4xx", "5xx", "failed"] as const satisfies ReadonlyArray<
  keyof StatusCounts
>;

/** Latency to response headers, from the sketches (within 2 %), in ms. */
export interface LatencyQuantiles {
  p50: number;
  p95: number;
  p99: number;
  /** How many latencies the quantiles are read from. */
  count: number;
}

export interface VerdictWindow {
  minutes: number;
  /** ISO 8601: the start of the window's first minute, and when it was read. */
  from: string;
  to: string;
}

/**
 * The stats shards read for the window. Isolates draw their shard at random, so the shards that
 * answered hold a random part of the traffic: a verdict on them is unbiased, on fewer requests.
 */
export interface ShardsRead {
  asked: number;
  answered: number;
}

/** The resolved thresholds the report was judged by (the mirror's own, or the defaults). */
export interface ReportThresholds {
  maxDiffRate: number;
  maxErrorRateIncrease: number;
  maxLatencyRatio: { p50: number; p99: number };
  minSamples: number;
}

/** `GET <ADMIN_PREFIX>/api/verdict`'s 200 answer. */
export interface VerdictReport {
  route: string;
  mirror: string;
  /** `fail` if any check fails, `pass` if every check passes, otherwise `inconclusive`. */
  verdict: VerdictOutcome;
  /** Every check that applies, in `CHECKS` order (`diffRate` only for a compared mirror). */
  reasons: CheckResult[];
  window: VerdictWindow;
  /** Compared requests for a compared mirror; otherwise copies the mirror answered or failed. */
  samples: number;
  /** Of the compared requests (noise cancelled), the share that differ; `null` when not compared or none were. */
  diffRate: number | null;
  diffRateCI95: [number, number] | null;
  /** Of the compared requests, the share on which the reference cancelled a difference as noise. */
  noiseRate: number | null;
  /** 5xx answers and failures over all answers and failures, each side, and the difference. */
  errorRate: {
    primary: number | null;
    mirror: number | null;
    increase: number | null;
    increaseCI95: [number, number] | null;
  };
  status: { primary: StatusCounts; mirror: StatusCounts };
  latencyMs: { primary: LatencyQuantiles | null; mirror: LatencyQuantiles | null };
  thresholds: ReportThresholds;
  shards: ShardsRead;
}

/** The counters keep an hour, by minute. */
export const MAX_WINDOW_MINUTES = 60;
export const DEFAULT_WINDOW = "15m";

export class WindowError extends Error {
  override readonly name = "WindowError";
}

/** `15m`, `60m` or `1h` → minutes, from 1 to 60; anything else is a `WindowError` saying what is allowed. */
export function parseWindow(text: string): number {
  const match = /^([1-9][0-9]{0,3})(m|h)$/.exec(text);
  const minutes = match ? Number(match[1]) * (match[2] === "h" ? 60 : 1) : Number.NaN;
  if (!(minutes >= 1 && minutes <= MAX_WINDOW_MINUTES)) {
    throw new WindowError(
      `window ${JSON.stringify(text.slice(0, 32))} must be minutes or hours such as 15m or 1h, from 1m to ${MAX_WINDOW_MINUTES}m: the counters keep an hour`,
    );
  }
  return minutes;
}

/** The endpoint's path below the admin prefix, and its query. */
export function verdictPath(query: {
  route: string;
  mirror?: string | undefined;
  window?: string | undefined;
}): string {
  const params = new URLSearchParams({ route: query.route });
  if (query.mirror !== undefined) params.set("mirror", query.mirror);
  params.set("window", query.window ?? DEFAULT_WINDOW);
  return `/api/verdict?${params}`;
}

export class ReportFormatError extends Error {
  override readonly name = "ReportFormatError";
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * `value` as a `VerdictReport` when it has the fields a reader relies on — the verdict, the
 * reasons, the window, the route and mirror — each of its kind; otherwise a `ReportFormatError`
 * naming the first that is not. A reader never acts on a verdict it could not read.
 */
export function parseVerdictReport(value: unknown): VerdictReport {
  const fail = (what: string): never => {
    throw new ReportFormatError(`not a verdict report: ${what}`);
  };
  if (!isObject(value)) return fail("not a JSON object");
  if (!VERDICTS.includes(value.verdict as VerdictOutcome)) {
    fail(`verdict is ${JSON.stringify(value.verdict)}, not one of ${VERDICTS.join(", ")}`);
  }
  if (typeof value.route !== "string" || typeof value.mirror !== "string") fail("route and mirror must be strings");
  if (!Array.isArray(value.reasons)) return fail("reasons must be a list");
  for (const [i, reason] of value.reasons.entries()) {
    if (!isObject(reason)) return fail(`reasons[${i}] is not an object`);
    if (!CHECKS.includes(reason.check as CheckName)) fail(`reasons[${i}].check is ${JSON.stringify(reason.check)}`);
    if (!VERDICTS.includes(reason.outcome as VerdictOutcome)) {
      fail(`reasons[${i}].outcome is ${JSON.stringify(reason.outcome)}`);
    }
    if (typeof reason.reason !== "string") fail(`reasons[${i}].reason must be a string`);
  }
  const window = value.window;
  if (!isObject(window) || typeof window.minutes !== "number") fail("window.minutes must be a number");
  if (typeof value.samples !== "number") fail("samples must be a number");
  return value as unknown as VerdictReport;
}

/**
 * @module stats/summary
 * The merged window as `api/stats` returns it: per route and per mirror the totals, a series
 * with one point per minute of the window (empty minutes as zeros, so that charts never have
 * gaps), and for compared mirrors the fields that differed, most frequent first; beside each
 * mirror's answers the primary's to the same requests (status classes, p50/p95/p99 from the
 * latency sketches), the divergence signatures, and what the release verdict is judged on
 * (`verdictInput`). Pure.
 */
import { type SignatureSummary, TOP_SIGNATURES } from "../signature/index.js";
import type { CheckResult, ShardsRead, VerdictInput, VerdictOutcome } from "../verdict/index.js";
import { type LatencyQuantiles, latencyQuantiles } from "../verdict/index.js";
import type { StatusCounts } from "../verdict/report.js";
import {
  type Accounting,
  accounting,
  addCounts,
  type Counts,
  failedByKind,
  latencyQuantile,
  mirrorStatus,
  newCounts,
  noisyComparisons,
  primaryStatus,
  SLOT,
  sentByStatus,
  skippedByReason,
  skippedTotal,
  verdicts,
} from "./counters.js";
import { addLatency } from "./flush-log.js";
import type { FieldExample, Merged, MergedMirror, MergedRoute } from "./merge.js";
import { MINUTE_MS } from "./tables.js";
import { type LatencyPair, newLatencyPair } from "./tally.js";

export interface FieldSummary {
  field: string;
  /** Compared requests on which the field differed. */
  differ: number;
  /** Of the compared requests, those on which it differed as noise. */
  noise: number;
  /** Newest first: where it differed and both values, redacted. */
  examples: FieldExample[];
}

export interface MirrorPoint {
  minute: string;
  sent: number;
  failed: number;
  skipped: number;
  /** 0 when nothing was sent in the minute. */
  p95Ms: number;
  compared: number;
  differ: number;
  /** differ / compared; 0 when nothing was compared. */
  diffRate: number;
  /** 5xx answers and failures of the primary and of the mirror, over the copies that went out. */
  primaryErrors: number;
  mirrorErrors: number;
  /** p95 latency to response headers of the requests both answered, from the sketches; null without any. */
  primaryP95Ms: number | null;
  mirrorP95Ms: number | null;
}

/** One side of a mirror's requests: answers by status class, and latency from its sketch. */
export interface SideSummary {
  status: StatusCounts;
  /** Of the requests both sides answered; null when there were none. */
  latencyMs: LatencyQuantiles | null;
}

export interface RoutePoint {
  minute: string;
  requests: number;
  mirrored: number;
  /** Summed over the route's mirrors. */
  sent: number;
  failed: number;
  skipped: number;
  compared: number;
  differ: number;
  diffRate: number;
}

export interface MirrorSummary {
  mirror: string;
  sent: number;
  failed: number;
  skipped: Record<string, number>;
  errors: Record<string, number>;
  status: Record<string, number>;
  latency: { avgMs: number; p50Ms: number; p95Ms: number; maxMs: number } | null;
  /**
   * Every planned copy accounted for: `planned` = `deliveredInline` + `redelivered` + `dead` +
   * `failedFinal` + `skipped` + `pending` (stats/counters `accounting`; docs/metrics.md).
   */
  delivery: Accounting;
  compare: {
    match: number;
    differ: number;
    error: number;
    diffRate: number | null;
    /** Fields that differed at least once, most often first. */
    fields: FieldSummary[];
    /** Fields that were only ever noise, most often first. */
    noise: Array<{ field: string; noise: number }>;
    /** Comparisons (match or differ) on which the reference cancelled a difference as noise. */
    noisy: number;
  };
  /**
   * The primary's answers to the requests whose copies went out, beside the mirror's to the same
   * requests (a copy the breaker held back is on neither side).
   */
  sideBySide: { primary: SideSummary; mirror: SideSummary };
  /** Requests that differed, grouped by the set of fields that differ: the top 20 (src/signature). */
  signatures: SignatureSummary | null;
  /**
   * The release verdict over the same window, as `api/verdict` decides it (set by `api/stats` for
   * the mirrors the route's policy still lists).
   */
  verdict?: MirrorVerdict;
  series: MirrorPoint[];
}

/** What the dashboard shows of a mirror's release verdict: the outcome and every check's reason. */
export interface MirrorVerdict {
  verdict: VerdictOutcome;
  reasons: CheckResult[];
  samples: number;
}

export interface RouteSummary {
  route: string;
  requests: number;
  mirrored: number;
  mirroredPercent: number | null;
  mirrors: MirrorSummary[];
  series: RoutePoint[];
}

const iso = (minute: number) => new Date(minute * MINUTE_MS).toISOString();
const rate = (part: number, whole: number) => (whole === 0 ? 0 : part / whole);

function compareFields(mirror: MergedMirror): Pick<MirrorSummary["compare"], "fields" | "noise"> {
  const fields: FieldSummary[] = [];
  const noise: Array<{ field: string; noise: number }> = [];
  for (const [field, c] of mirror.fields) {
    if (c.differ > 0)
      fields.push({ field, differ: c.differ, noise: c.noise, examples: mirror.examples.get(field) ?? [] });
    else if (c.noise > 0) noise.push({ field, noise: c.noise });
  }
  fields.sort((a, b) => b.differ - a.differ || b.noise - a.noise || (a.field < b.field ? -1 : 1));
  noise.sort((a, b) => b.noise - a.noise || (a.field < b.field ? -1 : 1));
  return { fields, noise };
}

const errorsOf = (status: StatusCounts) => status["5xx"] + status.failed;
const p95 = (sketch: LatencyPair["primary"] | undefined) => (sketch ? (latencyQuantiles(sketch)?.p95 ?? null) : null);

function mirrorPoint(minute: number, c: Counts, latency: LatencyPair | undefined): MirrorPoint {
  const v = verdicts(c);
  const compared = v.match + v.differ;
  return {
    primaryErrors: errorsOf(primaryStatus(c)),
    mirrorErrors: errorsOf(mirrorStatus(c)),
    primaryP95Ms: p95(latency?.primary),
    mirrorP95Ms: p95(latency?.mirror),
    minute: iso(minute),
    sent: c[SLOT.sent] as number,
    failed: c[SLOT.failed] as number,
    skipped: skippedTotal(c),
    p95Ms: latencyQuantile(c, 0.95) ?? 0,
    compared,
    differ: v.differ,
    diffRate: rate(v.differ, compared),
  };
}

/** A mirror's counters and latency sketches added over the window's minutes (all it holds). */
export function windowTotals(mirror: MergedMirror | undefined): { counts: Counts; latency: LatencyPair } {
  const counts = newCounts();
  let latency = newLatencyPair();
  for (const minute of mirror?.minutes.values() ?? []) addCounts(counts, minute);
  for (const pair of mirror?.latency.values() ?? []) latency = addLatency(latency, pair);
  return { counts, latency };
}

/**
 * What the release verdict of one mirror is judged on, from its merged window (src/verdict):
 * comparisons when the mirror is compared, both sides' status classes and latency sketches.
 */
export function verdictInput(
  mirror: MergedMirror | undefined,
  window: { minutes: readonly number[]; to: number },
  options: { compared: boolean; shards: ShardsRead },
): VerdictInput {
  const { counts, latency } = windowTotals(mirror);
  const v = verdicts(counts);
  return {
    window: {
      minutes: window.minutes.length,
      from: iso(window.minutes[0] ?? Math.floor(window.to / MINUTE_MS)),
      to: new Date(window.to).toISOString(),
    },
    shards: options.shards,
    compare: options.compared
      ? { compared: v.match + v.differ, differ: v.differ, noisy: noisyComparisons(counts), errors: v.error }
      : undefined,
    status: { primary: primaryStatus(counts), mirror: mirrorStatus(counts) },
    latency,
  };
}

function summarizeMirror(name: string, mirror: MergedMirror, minutes: readonly number[]): MirrorSummary {
  const { counts: totals, latency } = windowTotals(mirror);
  const empty = newCounts();
  const v = verdicts(totals);
  const latencyCount = totals[SLOT.latencyCount] as number;
  return {
    mirror: name,
    sent: totals[SLOT.sent] as number,
    failed: totals[SLOT.failed] as number,
    skipped: skippedByReason(totals),
    errors: failedByKind(totals),
    status: sentByStatus(totals),
    latency:
      latencyCount === 0
        ? null
        : {
            avgMs: Math.round((totals[SLOT.latencySumMs] as number) / latencyCount),
            p50Ms: latencyQuantile(totals, 0.5) ?? 0,
            p95Ms: latencyQuantile(totals, 0.95) ?? 0,
            maxMs: totals[SLOT.latencyMaxMs] as number,
          },
    delivery: accounting(totals),
    compare: {
      ...v,
      diffRate: v.match + v.differ === 0 ? null : v.differ / (v.match + v.differ),
      ...compareFields(mirror),
      noisy: noisyComparisons(totals),
    },
    sideBySide: {
      primary: { status: primaryStatus(totals), latencyMs: latencyQuantiles(latency.primary) },
      mirror: { status: mirrorStatus(totals), latencyMs: latencyQuantiles(latency.mirror) },
    },
    signatures: mirror.signatures ? mirror.signatures.top(TOP_SIGNATURES) : null,
    series: minutes.map((minute) =>
      mirrorPoint(minute, mirror.minutes.get(minute) ?? empty, mirror.latency.get(minute)),
    ),
  };
}

function routePoint(minute: number, route: MergedRoute, mirrors: readonly MirrorSummary[], at: number): RoutePoint {
  const [requests, mirrored] = route.minutes.get(minute) ?? [0, 0];
  const point: RoutePoint = {
    minute: iso(minute),
    requests,
    mirrored,
    sent: 0,
    failed: 0,
    skipped: 0,
    compared: 0,
    differ: 0,
    diffRate: 0,
  };
  for (const m of mirrors) {
    const p = m.series[at] as MirrorPoint;
    point.sent += p.sent;
    point.failed += p.failed;
    point.skipped += p.skipped;
    point.compared += p.compared;
    point.differ += p.differ;
  }
  point.diffRate = rate(point.differ, point.compared);
  return point;
}

const EMPTY_ROUTE: MergedRoute = { minutes: new Map(), mirrors: new Map() };

/**
 * One row per route (configured ones included even without traffic), mirrors by name, each
 * with a point for every minute of `minutes` (epoch minutes, oldest first).
 */
export function summarize(
  merged: Merged,
  minutes: readonly number[],
  configured: readonly string[] = [],
): RouteSummary[] {
  const ids = [...new Set([...configured, ...merged.routes.keys()])].sort();
  return ids.map((id) => {
    const route = merged.routes.get(id) ?? EMPTY_ROUTE;
    const mirrors = [...route.mirrors]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, m]) => summarizeMirror(name, m, minutes));
    let requests = 0;
    let mirrored = 0;
    for (const [r, m] of route.minutes.values()) {
      requests += r;
      mirrored += m;
    }
    return {
      route: id,
      requests,
      mirrored,
      mirroredPercent: requests === 0 ? null : (100 * mirrored) / requests,
      mirrors,
      series: minutes.map((minute, at) => routePoint(minute, route, mirrors, at)),
    };
  });
}

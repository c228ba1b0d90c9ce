/**
 * @module stats/summary
 * The merged window as `api/stats` returns it: per route and per mirror the totals, a series
 * with one point per minute of the window (empty minutes as zeros, so that charts never have
 * gaps), and for compared mirrors the fields that differed, most frequent first. Pure.
 */
import {
  type Accounting,
  accounting,
  addCounts,
  type Counts,
  failedByKind,
  latencyQuantile,
  newCounts,
  SLOT,
  sentByStatus,
  skippedByReason,
  skippedTotal,
  verdicts,
} from "./counters.js";
import type { FieldExample, Merged, MergedMirror, MergedRoute } from "./merge.js";
import { MINUTE_MS } from "./tables.js";

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
  };
  series: MirrorPoint[];
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

function mirrorPoint(minute: number, c: Counts): MirrorPoint {
  const v = verdicts(c);
  const compared = v.match + v.differ;
  return {
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

function summarizeMirror(name: string, mirror: MergedMirror, minutes: readonly number[]): MirrorSummary {
  const totals = newCounts();
  for (const counts of mirror.minutes.values()) addCounts(totals, counts);
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
    },
    series: minutes.map((minute) => mirrorPoint(minute, mirror.minutes.get(minute) ?? empty)),
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

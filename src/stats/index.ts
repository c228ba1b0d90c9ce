/**
 * @module stats
 * Rolling per-route, per-mirror counters: pure tallies that the isolate batches and the
 * `MirrorStats` Durable Object sums into minute buckets for the dashboard. The same
 * `MirrorOutcome` feeds the log line, Analytics Engine and these counters.
 */
import type { DiffSample } from "../compare/index.js";
import { type MirrorOutcome, statusClass } from "../record/index.js";

/** Upper bounds of the latency histogram's buckets, in ms; one more bucket holds the rest. */
export const LATENCY_BOUNDS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000] as const;

/**
 * Mirror labels chosen by a request header may be anything a client sends; past this many per
 * route they are counted together under `OTHER_MIRRORS` so that a client cannot grow the tally.
 */
export const MAX_MIRRORS_PER_ROUTE = 32;
export const OTHER_MIRRORS = "(other)";
/** Routes come from policies, but a route deleted and re-added under new ids should not pile up. */
export const MAX_ROUTES = 1000;
/** Diff samples kept in all; the newest win. */
export const MAX_SAMPLES = 50;

export interface MirrorTally {
  sent: number;
  failed: number;
  skipped: Record<string, number>;
  errors: Record<string, number>;
  status: Record<string, number>;
  latency: { count: number; sumMs: number; maxMs: number; buckets: number[] };
  compare: { match: number; differ: number; error: number };
}

export interface RouteTally {
  /** Requests that matched the route. */
  requests: number;
  /** Of those, requests copied to at least one mirror. */
  mirrored: number;
  mirrors: Record<string, MirrorTally>;
}

export type Tally = Record<string, RouteTally>;

export interface StatsBatch {
  tally: Tally;
  samples: DiffSample[];
}

export function emptyBatch(): StatsBatch {
  return { tally: {}, samples: [] };
}

function emptyMirror(): MirrorTally {
  return {
    sent: 0,
    failed: 0,
    skipped: {},
    errors: {},
    status: {},
    latency: { count: 0, sumMs: 0, maxMs: 0, buckets: new Array(LATENCY_BOUNDS_MS.length + 1).fill(0) },
    compare: { match: 0, differ: 0, error: 0 },
  };
}

/**
 * Route ids and mirror labels are data: `constructor` is a valid route id and a cluster name,
 * and a client may name `__proto__` in `mirrorFromHeader`. Only own properties are read, and
 * new entries are defined as own properties, so that none of them reaches Object.prototype.
 */
function own<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

function defineOwn<T>(record: Record<string, T>, key: string, value: T): T {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
  return value;
}

function routeTally(tally: Tally, route: string): RouteTally | undefined {
  const entry = own(tally, route);
  if (entry) return entry;
  if (Object.keys(tally).length >= MAX_ROUTES) return undefined;
  return defineOwn(tally, route, { requests: 0, mirrored: 0, mirrors: {} });
}

function mirrorTally(route: RouteTally, label: string): MirrorTally {
  const known = own(route.mirrors, label);
  if (known) return known;
  const key = Object.keys(route.mirrors).length >= MAX_MIRRORS_PER_ROUTE - 1 ? OTHER_MIRRORS : label;
  return own(route.mirrors, key) ?? defineOwn(route.mirrors, key, emptyMirror());
}

export function latencyBucket(ms: number): number {
  const at = LATENCY_BOUNDS_MS.findIndex((bound) => ms <= bound);
  return at === -1 ? LATENCY_BOUNDS_MS.length : at;
}

function bump(counts: Record<string, number>, key: string, by = 1): void {
  counts[key] = (counts[key] ?? 0) + by;
}

export function countRequest(tally: Tally, route: string, mirrored: boolean): void {
  const entry = routeTally(tally, route);
  if (!entry) return;
  entry.requests++;
  if (mirrored) entry.mirrored++;
}

export function countOutcome(batch: StatsBatch, outcome: MirrorOutcome): void {
  const route = routeTally(batch.tally, outcome.route);
  if (!route) return;
  const mirror = mirrorTally(route, outcome.mirror);
  if (outcome.kind === "skipped") {
    bump(mirror.skipped, outcome.reason);
    return;
  }
  if (outcome.kind === "sent") {
    mirror.sent++;
    bump(mirror.status, statusClass(outcome.status));
  } else {
    mirror.failed++;
    bump(mirror.errors, outcome.error);
  }
  if (outcome.kind === "sent" || outcome.error !== "circuit_open") {
    const latency = mirror.latency;
    latency.count++;
    latency.sumMs += outcome.latencyMs;
    latency.maxMs = Math.max(latency.maxMs, outcome.latencyMs);
    const bucket = latencyBucket(outcome.latencyMs);
    latency.buckets[bucket] = (latency.buckets[bucket] ?? 0) + 1;
  }
  if (outcome.compare) mirror.compare[outcome.compare.verdict]++;
  if (outcome.sample) addSamples(batch.samples, [outcome.sample]);
}

/** Appends newest-last and keeps the newest `MAX_SAMPLES`. */
export function addSamples(into: DiffSample[], samples: readonly DiffSample[]): void {
  into.push(...samples);
  if (into.length > MAX_SAMPLES) into.splice(0, into.length - MAX_SAMPLES);
}

function mergeCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [key, n] of Object.entries(from)) bump(into, key, n);
}

export function mergeTally(into: Tally, from: Tally): Tally {
  for (const [routeId, route] of Object.entries(from)) {
    const target = routeTally(into, routeId);
    if (!target) continue;
    target.requests += route.requests;
    target.mirrored += route.mirrored;
    for (const [label, m] of Object.entries(route.mirrors)) {
      const t = mirrorTally(target, label);
      t.sent += m.sent;
      t.failed += m.failed;
      mergeCounts(t.skipped, m.skipped);
      mergeCounts(t.errors, m.errors);
      mergeCounts(t.status, m.status);
      t.latency.count += m.latency.count;
      t.latency.sumMs += m.latency.sumMs;
      t.latency.maxMs = Math.max(t.latency.maxMs, m.latency.maxMs);
      m.latency.buckets.forEach((n, i) => {
        t.latency.buckets[i] = (t.latency.buckets[i] ?? 0) + n;
      });
      t.compare.match += m.compare.match;
      t.compare.differ += m.compare.differ;
      t.compare.error += m.compare.error;
    }
  }
  return into;
}

/**
 * The histogram's estimate of quantile `q` (0–1): the upper bound of the bucket holding it, or
 * the largest latency seen when it falls in the open-ended last bucket.
 */
export function latencyQuantile(latency: MirrorTally["latency"], q: number): number | undefined {
  if (latency.count === 0) return undefined;
  const rank = Math.ceil(q * latency.count);
  let seen = 0;
  for (let i = 0; i < latency.buckets.length; i++) {
    seen += latency.buckets[i] ?? 0;
    if (seen >= rank) return Math.min(LATENCY_BOUNDS_MS[i] ?? latency.maxMs, latency.maxMs);
  }
  return latency.maxMs;
}

export interface MirrorSummary {
  mirror: string;
  sent: number;
  failed: number;
  skipped: Record<string, number>;
  errors: Record<string, number>;
  status: Record<string, number>;
  latency: { avgMs: number; p50Ms: number; p95Ms: number; maxMs: number } | null;
  compare: { match: number; differ: number; error: number; diffRate: number | null };
}

export interface RouteSummary {
  route: string;
  requests: number;
  mirrored: number;
  mirroredPercent: number | null;
  mirrors: MirrorSummary[];
}

function summarizeMirror(mirror: string, m: MirrorTally): MirrorSummary {
  const compared = m.compare.match + m.compare.differ;
  return {
    mirror,
    sent: m.sent,
    failed: m.failed,
    skipped: m.skipped,
    errors: m.errors,
    status: m.status,
    latency:
      m.latency.count === 0
        ? null
        : {
            avgMs: Math.round(m.latency.sumMs / m.latency.count),
            p50Ms: latencyQuantile(m.latency, 0.5) ?? 0,
            p95Ms: latencyQuantile(m.latency, 0.95) ?? 0,
            maxMs: m.latency.maxMs,
          },
    compare: { ...m.compare, diffRate: compared === 0 ? null : m.compare.differ / compared },
  };
}

/** One row per route (configured ones included even without traffic), mirrors by name. */
export function summarize(tally: Tally, configured: readonly string[] = []): RouteSummary[] {
  const ids = [...new Set([...configured, ...Object.keys(tally)])].sort();
  return ids.map((route) => {
    const t = own(tally, route) ?? { requests: 0, mirrored: 0, mirrors: {} };
    return {
      route,
      requests: t.requests,
      mirrored: t.mirrored,
      mirroredPercent: t.requests === 0 ? null : (100 * t.mirrored) / t.requests,
      mirrors: Object.entries(t.mirrors)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([label, m]) => summarizeMirror(label, m)),
    };
  });
}

/**
 * @module stats/tally
 * What an isolate counts between two flushes: per route the requests, per mirror one counter
 * array (stats/counters) and, for compared mirrors, how often each field differed or was noise;
 * plus a few diff samples, chosen so that every differing field has one. Bounded in routes,
 * mirror names and fields, because JSON field names come from clients and mirrors; mirror names
 * are the policy's (a header-chosen name outside `allow` is counted as `(not allowed)`), and the
 * bound gives each its own row. Names are `Map` keys only. For a copy that went out, the
 * primary's answer is counted beside the mirror's (its status class in the counters; both
 * latencies, when both answered, in a pair of `LatencySketch`es), and a compared request that
 * differs is counted under its divergence signature (`SignatureCounter`): what the release
 * verdict and the dashboard's side-by-side view read. Pure.
 */
import type { CompareSummary, DiffSample } from "../compare/index.js";
import { MAX_ALLOWED_CLUSTERS, MAX_MIRRORS_PER_ROUTE } from "../policy/index.js";
import type { MirrorOutcome } from "../record/index.js";
import { SignatureCounter, signatureOf } from "../signature/index.js";
import { LatencySketch } from "../sketch/index.js";
import {
  type Counts,
  countDelivery,
  countFailed,
  countLatency,
  countNoisy,
  countPrimary,
  countSent,
  countSkip,
  countVerdict,
  newCounts,
} from "./counters.js";

/** Routes come from policies, but a route deleted and re-added under new ids should not pile up. */
export const MAX_ROUTES = 1000;
/**
 * Mirror names per route, `(other)` included: every mirror a route lists, every name its
 * `mirrorFromHeader.allow` lists and `(not allowed)` each keep a row of their own. Only names
 * left over from an edited route (or a route id reused) can reach `(other)`, the last defence.
 */
export const MAX_MIRROR_NAMES_PER_ROUTE = MAX_MIRRORS_PER_ROUTE + MAX_ALLOWED_CLUSTERS + 2;
/** Fields per route and mirror, `(other)` included. */
export const MAX_FIELDS = 50;
export const OTHER = "(other)";
/** A batch keeps a sample while one of its fields has fewer than this many in the batch. */
export const SAMPLES_PER_FIELD = 3;
export const MAX_BATCH_SAMPLES = 20;

export interface FieldCounts {
  /** Compared requests on which the field differed. */
  differ: number;
  /** Compared requests on which it differed but the reference showed it to be noise. */
  noise: number;
}

/**
 * Time to response headers of the requests both the primary and the mirror answered: one sketch
 * each, over the same requests (src/sketch: within 2 %, merged exactly).
 */
export interface LatencyPair {
  primary: LatencySketch;
  mirror: LatencySketch;
}

export interface MirrorTally {
  counts: Counts;
  /** Only for compared mirrors with differences or noise. */
  fields?: Map<string, FieldCounts>;
  /** Only for mirrors with copies both sides answered. */
  latency?: LatencyPair;
  /** Only for compared mirrors with requests that differed. */
  signatures?: SignatureCounter;
}

export function newLatencyPair(): LatencyPair {
  return { primary: new LatencySketch(), mirror: new LatencySketch() };
}

export interface RouteTally {
  /** Requests that matched the route. */
  requests: number;
  /** Of those, requests copied to at least one mirror. */
  mirrored: number;
  mirrors: Map<string, MirrorTally>;
}

export type Tally = Map<string, RouteTally>;

/** What one flush sends to a shard. */
export interface StatsBatch {
  tally: Tally;
  samples: DiffSample[];
}

/** A batch being filled; `sampled` counts samples per route, mirror and field. */
export interface OpenBatch extends StatsBatch {
  sampled: Map<string, number>;
}

export function emptyBatch(): OpenBatch {
  return { tally: new Map(), samples: [], sampled: new Map() };
}

/**
 * The entry for `key`, created with `make` while the map has room; past `max` entries
 * (`(other)` included) new names share the `(other)` entry.
 */
export function bounded<V>(map: Map<string, V>, key: string, max: number, make: () => V): V {
  const known = map.get(key);
  if (known) return known;
  const named = map.size - (map.has(OTHER) ? 1 : 0);
  const name = named < max - 1 ? key : OTHER;
  let entry = map.get(name);
  if (!entry) {
    entry = make();
    map.set(name, entry);
  }
  return entry;
}

function routeTally(tally: Tally, route: string): RouteTally | undefined {
  const known = tally.get(route);
  if (known || tally.size >= MAX_ROUTES) return known;
  const entry: RouteTally = { requests: 0, mirrored: 0, mirrors: new Map() };
  tally.set(route, entry);
  return entry;
}

const newMirror = (): MirrorTally => ({ counts: newCounts() });
const newField = (): FieldCounts => ({ differ: 0, noise: 0 });

export function countRequest(tally: Tally, route: string, mirrored: boolean): void {
  const entry = routeTally(tally, route);
  if (!entry) return;
  entry.requests++;
  if (mirrored) entry.mirrored++;
}

export function countOutcome(batch: OpenBatch, outcome: MirrorOutcome): void {
  const route = routeTally(batch.tally, outcome.route);
  if (!route) return;
  const mirror = bounded(route.mirrors, outcome.mirror, MAX_MIRROR_NAMES_PER_ROUTE, newMirror);
  const counts = mirror.counts;
  switch (outcome.kind) {
    case "skipped":
      countSkip(counts, outcome.reason);
      return;
    case "spooled":
      countDelivery(counts, "spooled");
      return;
    case "retrying":
      countDelivery(counts, "retried");
      return;
    case "redelivered":
    case "rejected":
    case "dead":
    case "redriven":
      // Latency counts the inline sends only, which every mirror has alike.
      countDelivery(counts, outcome.kind);
      return;
  }
  if (outcome.kind === "sent") countSent(counts, outcome.status);
  else countFailed(counts, outcome.error);
  // A circuit_open failure never went out, so it has no latency to count.
  const wentOut = outcome.kind === "sent" || outcome.error !== "circuit_open";
  if (wentOut) countLatency(counts, outcome.latencyMs);
  const primary = outcome.primary;
  if (primary && wentOut) {
    countPrimary(counts, primary.status);
    if (outcome.kind === "sent" && primary.status !== null) {
      mirror.latency ??= newLatencyPair();
      mirror.latency.primary.add(primary.latencyMs);
      mirror.latency.mirror.add(outcome.latencyMs);
    }
  }
  const compared = outcome.compare;
  if (!compared) return;
  countVerdict(counts, compared.verdict);
  if (compared.verdict !== "error" && (compared.noise.length > 0 || (compared.overflow?.noise ?? 0) > 0)) {
    countNoisy(counts);
  }
  if (compared.fields.length > 0 || compared.noise.length > 0 || compared.overflow) countFields(mirror, compared);
  if (compared.verdict === "differ") countSignature(mirror, compared, outcome.requestId);
  if (outcome.sample) keepSample(batch, outcome.sample);
}

function countSignature(mirror: MirrorTally, compared: CompareSummary, requestId: string): void {
  const signature = signatureOf(compared);
  if (signature === undefined) return;
  mirror.signatures ??= new SignatureCounter();
  mirror.signatures.add(signature, requestId, Date.now());
}

function countFields(mirror: MirrorTally, compared: CompareSummary): void {
  mirror.fields ??= new Map();
  const fields = mirror.fields;
  for (const field of compared.fields) bounded(fields, field, MAX_FIELDS, newField).differ++;
  for (const field of compared.noise) bounded(fields, field, MAX_FIELDS, newField).noise++;
  if (compared.overflow) {
    const other = bounded(fields, OTHER, MAX_FIELDS, newField);
    other.differ += compared.overflow.fields;
    other.noise += compared.overflow.noise;
  }
}

/** The key of one route, mirror and field; none of them can hold a line break. */
export function fieldKey(route: string, mirror: string, field: string): string {
  return `${route}\n${mirror}\n${field}`;
}

/**
 * Keeps `sample` when one of its fields has fewer than `SAMPLES_PER_FIELD` samples in the batch,
 * so that a frequent difference cannot crowd out the samples of a rare one.
 */
function keepSample(batch: OpenBatch, sample: DiffSample): void {
  if (batch.samples.length >= MAX_BATCH_SAMPLES) return;
  const keys = sample.fields.map((field) => fieldKey(sample.route, sample.mirror, field));
  if (!keys.some((key) => (batch.sampled.get(key) ?? 0) < SAMPLES_PER_FIELD)) return;
  batch.samples.push(sample);
  for (const key of keys) batch.sampled.set(key, (batch.sampled.get(key) ?? 0) + 1);
}

/**
 * @module stats/merge
 * Adds the rows of every shard into one view of the window: per route, per mirror and per
 * minute. Counter arrays add slot by slot and field counts add, so the result is exact whatever
 * shard each isolate wrote to; latency sketches merge bucket by bucket, exactly too, and divergence
 * signatures as src/signature says. Names past the bounds fold into `(other)` as they do in a batch:
 * the busiest mirrors and the most frequent differences keep their own rows. Pure.
 */
import type { DiffSample } from "../compare/index.js";
import { SignatureCounter } from "../signature/index.js";
import { decodeSketch } from "../sketch/index.js";
import { addCounts, type Counts, newCounts, outcomes } from "./counters.js";
import { addLatency, addSignatures } from "./flush-log.js";
import { EXAMPLES_PER_FIELD, LATEST_SAMPLES, type ShardRows } from "./tables.js";
import { type FieldCounts, type LatencyPair, MAX_FIELDS, MAX_MIRROR_NAMES_PER_ROUTE, OTHER } from "./tally.js";

export interface FieldExample {
  /** Where the field differed in that answer, such as `$.items[3].price`. */
  path: string;
  primary: string;
  candidate: string;
  at: number;
}

export interface MergedMirror {
  minutes: Map<number, Counts>;
  /** Per minute, both sides' latency sketches, for the minutes that have them. */
  latency: Map<number, LatencyPair>;
  /** Divergence signatures over the window, for a compared mirror with requests that differed. */
  signatures?: SignatureCounter;
  fields: Map<string, FieldCounts>;
  /** Newest first, at most `EXAMPLES_PER_FIELD` per field. */
  examples: Map<string, FieldExample[]>;
}

export interface MergedRoute {
  /** minute → [requests, mirrored] */
  minutes: Map<number, [number, number]>;
  mirrors: Map<string, MergedMirror>;
}

export interface Merged {
  routes: Map<string, MergedRoute>;
  /** Newest first, at most `LATEST_SAMPLES`. */
  samples: DiffSample[];
}

function routeOf(routes: Map<string, MergedRoute>, route: string): MergedRoute {
  let entry = routes.get(route);
  if (!entry) {
    entry = { minutes: new Map(), mirrors: new Map() };
    routes.set(route, entry);
  }
  return entry;
}

function mirrorOf(route: MergedRoute, mirror: string): MergedMirror {
  let entry = route.mirrors.get(mirror);
  if (!entry) {
    entry = { minutes: new Map(), latency: new Map(), fields: new Map(), examples: new Map() };
    route.mirrors.set(mirror, entry);
  }
  return entry;
}

function addMinute(into: Map<number, Counts>, minute: number, counts: readonly number[]): void {
  let entry = into.get(minute);
  if (!entry) {
    entry = newCounts();
    into.set(minute, entry);
  }
  addCounts(entry, counts);
}

function addLatencyMinute(into: Map<number, LatencyPair>, minute: number, pair: LatencyPair): void {
  into.set(minute, addLatency(into.get(minute), pair));
}

function addField(into: Map<string, FieldCounts>, field: string, differ: number, noise: number): void {
  const entry = into.get(field);
  if (entry) {
    entry.differ += differ;
    entry.noise += noise;
  } else into.set(field, { differ, noise });
}

function addExamples(into: Map<string, FieldExample[]>, field: string, examples: readonly FieldExample[]): void {
  const list = [...(into.get(field) ?? []), ...examples].sort((a, b) => b.at - a.at);
  into.set(field, list.slice(0, EXAMPLES_PER_FIELD));
}

export function mergeShards(shards: readonly ShardRows[]): Merged {
  const routes = new Map<string, MergedRoute>();
  const samples: Array<[number, string]> = [];
  for (const shard of shards) {
    for (const [minute, route, requests, mirrored] of shard.routes) {
      const byMinute = routeOf(routes, route).minutes;
      const [r, m] = byMinute.get(minute) ?? [0, 0];
      byMinute.set(minute, [r + requests, m + mirrored]);
    }
    for (const [minute, route, mirror, counts] of shard.mirrors) {
      addMinute(mirrorOf(routeOf(routes, route), mirror).minutes, minute, counts);
    }
    for (const [minute, route, mirror, primary, mirrored] of shard.latency ?? []) {
      const pair = { primary: decodeSketch(primary), mirror: decodeSketch(mirrored) };
      addLatencyMinute(mirrorOf(routeOf(routes, route), mirror).latency, minute, pair);
    }
    for (const [route, mirror, counted] of shard.signatures ?? []) {
      const entry = mirrorOf(routeOf(routes, route), mirror);
      entry.signatures = addSignatures(entry.signatures, SignatureCounter.fromJSON(counted));
    }
    for (const [route, mirror, field, differ, noise] of shard.fields) {
      addField(mirrorOf(routeOf(routes, route), mirror).fields, field, differ, noise);
    }
    for (const [route, mirror, field, path, primary, candidate, at] of shard.examples) {
      addExamples(mirrorOf(routeOf(routes, route), mirror).examples, field, [{ path, primary, candidate, at }]);
    }
    samples.push(...shard.samples);
  }
  for (const route of routes.values()) foldMirrors(route);
  samples.sort((a, b) => b[0] - a[0]);
  return {
    routes,
    samples: samples.slice(0, LATEST_SAMPLES).map(([, body]) => JSON.parse(body) as DiffSample),
  };
}

function total(mirror: MergedMirror): number {
  let n = 0;
  for (const counts of mirror.minutes.values()) n += outcomes(counts);
  return n;
}

/** Keeps the `max - 1` entries that rank first (never `(other)` itself); the rest go to `(other)`. */
function overflowing<V>(entries: Map<string, V>, max: number, rank: (a: V, b: V) => number): string[] {
  if (entries.size <= max) return [];
  const named = [...entries]
    .filter(([name]) => name !== OTHER)
    .sort(([nameA, a], [nameB, b]) => rank(a, b) || (nameA < nameB ? -1 : 1));
  return named.slice(max - 1).map(([name]) => name);
}

/** Different minutes and shards may each hold different names; the merged view stays bounded too. */
function foldMirrors(route: MergedRoute): void {
  for (const name of overflowing(route.mirrors, MAX_MIRROR_NAMES_PER_ROUTE, (a, b) => total(b) - total(a))) {
    const folded = route.mirrors.get(name) as MergedMirror;
    route.mirrors.delete(name);
    const other = mirrorOf(route, OTHER);
    for (const [minute, counts] of folded.minutes) addMinute(other.minutes, minute, counts);
    for (const [minute, pair] of folded.latency) addLatencyMinute(other.latency, minute, pair);
    if (folded.signatures) other.signatures = addSignatures(other.signatures, folded.signatures);
    for (const [field, c] of folded.fields) addField(other.fields, field, c.differ, c.noise);
    for (const [field, examples] of folded.examples) addExamples(other.examples, field, examples);
  }
  for (const mirror of route.mirrors.values()) foldFields(mirror);
}

function foldFields(mirror: MergedMirror): void {
  const rank = (a: FieldCounts, b: FieldCounts) => b.differ - a.differ || b.noise - a.noise;
  for (const name of overflowing(mirror.fields, MAX_FIELDS, rank)) {
    const c = mirror.fields.get(name) as FieldCounts;
    mirror.fields.delete(name);
    addField(mirror.fields, OTHER, c.differ, c.noise);
    addExamples(mirror.examples, OTHER, mirror.examples.get(name) ?? []);
    mirror.examples.delete(name);
  }
}

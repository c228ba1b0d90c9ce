/**
 * @module stats/flush-log
 * One flush as one SQLite row: a batch's tally, its names already held to the shard's bounds,
 * encoded compactly as JSON arrays — `[route, requests, mirrored, [[mirror, counts, [[field,
 * differ, noise]…], latency, signatures]…]]…` — so that a flush writes one row however many
 * routes, mirrors and fields it counted (stats/tables logs it, and compacts the log into the
 * minute rows). `latency` is `[primary, mirror]`, each sketch as `encodeSketch`'s bytes in base64,
 * or 0; `signatures` a `SignatureCounter`'s JSON, or 0. The same text is what an isolate sends
 * its shard (`EncodedBatch`): a structured clone of the tally could not carry the sketches'
 * and counters' classes. Adding tallies is exact, as adding rows is (signatures: see src/signature
 * for when their counts become lower bounds). Pure.
 */
import type { DiffSample } from "../compare/index.js";
import { SignatureCounter, type SignatureCounterJSON } from "../signature/index.js";
import { decodeSketch, encodeSketch, type LatencySketch } from "../sketch/index.js";
import { addCounts, type Counts, newCounts, SLOT_COUNT } from "./counters.js";
import type { FieldCounts, LatencyPair, MirrorTally, RouteTally, Tally } from "./tally.js";

/** Part of the shard's layout (stats/tables): a log written in another format is dropped with it. */
export const FLUSH_LOG_FORMAT = 2;

/** What an isolate's flush sends its shard: the tally as `encodeTally` writes it, and the samples. */
export interface EncodedBatch {
  encoded: string;
  samples: DiffSample[];
}

type EncodedField = [field: string, differ: number, noise: number];
type EncodedMirror = [
  mirror: string,
  counts: number[],
  fields: EncodedField[],
  latency?: [primary: string, mirror: string] | 0,
  signatures?: SignatureCounterJSON | 0,
];

/** A sketch's bytes (`encodeSketch`) as base64, for JSON. */
export function sketchToBase64(sketch: LatencySketch): string {
  return bytesToBase64(encodeSketch(sketch));
}

export function bytesToBase64(bytes: Uint8Array): string {
  let text = "";
  // A sketch is at most a few kilobytes (376 buckets), so one pass of fromCharCode is fine.
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i] as number);
  return btoa(text);
}

export function sketchFromBase64(text: string): LatencySketch {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return decodeSketch(bytes);
}

/** `from`'s sketches added into `into`'s (created when absent); returns `into`'s. */
export function addLatency(into: LatencyPair | undefined, from: LatencyPair): LatencyPair {
  if (!into) return { primary: from.primary.clone(), mirror: from.mirror.clone() };
  into.primary.merge(from.primary);
  into.mirror.merge(from.mirror);
  return into;
}

/** `from` merged into `into` (a copy of `from` when absent); returns the result. */
export function addSignatures(into: SignatureCounter | undefined, from: SignatureCounter): SignatureCounter {
  return (into ?? new SignatureCounter()).merge(from);
}
type EncodedRoute = [route: string, requests: number, mirrored: number, mirrors: EncodedMirror[]];

export function encodeTally(tally: Tally): string {
  const routes: EncodedRoute[] = [];
  for (const [route, { requests, mirrored, mirrors }] of tally) {
    const encoded: EncodedMirror[] = [];
    for (const [mirror, { counts, fields, latency, signatures }] of mirrors) {
      const row: EncodedMirror = [mirror, counts, [...(fields ?? [])].map(([field, c]) => [field, c.differ, c.noise])];
      if (latency || signatures) {
        row.push(latency ? [sketchToBase64(latency.primary), sketchToBase64(latency.mirror)] : 0);
        row.push(signatures ? signatures.toJSON() : 0);
      }
      encoded.push(row);
    }
    routes.push([route, requests, mirrored, encoded]);
  }
  return JSON.stringify(routes);
}

const isCount = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n) && n >= 0;

/** The tally `encodeTally` wrote; throws on anything else, so that a damaged row is never half counted. */
export function decodeTally(text: string): Tally {
  const routes = JSON.parse(text) as unknown;
  if (!Array.isArray(routes)) throw new TypeError("a flush log row is not a list of routes");
  const tally: Tally = new Map();
  for (const entry of routes) {
    const [route, requests, mirrored, mirrors] = entry as EncodedRoute;
    if (typeof route !== "string" || !isCount(requests) || !isCount(mirrored) || !Array.isArray(mirrors)) {
      throw new TypeError("a flush log row holds a malformed route");
    }
    const decoded: RouteTally = { requests, mirrored, mirrors: new Map() };
    for (const [mirror, counts, fields, latency, signatures] of mirrors) {
      if (typeof mirror !== "string" || !Array.isArray(counts) || counts.length !== SLOT_COUNT) {
        throw new TypeError("a flush log row holds a malformed mirror");
      }
      if (!counts.every(isCount) || !Array.isArray(fields))
        throw new TypeError("a flush log row holds malformed counts");
      const tallied: MirrorTally = { counts: [...counts] };
      for (const [field, differ, noise] of fields) {
        if (typeof field !== "string" || !isCount(differ) || !isCount(noise)) {
          throw new TypeError("a flush log row holds a malformed field");
        }
        tallied.fields ??= new Map();
        tallied.fields.set(field, { differ, noise });
      }
      if (latency) {
        if (!Array.isArray(latency) || typeof latency[0] !== "string" || typeof latency[1] !== "string") {
          throw new TypeError("a flush log row holds malformed latency sketches");
        }
        tallied.latency = { primary: sketchFromBase64(latency[0]), mirror: sketchFromBase64(latency[1]) };
      }
      if (signatures) tallied.signatures = SignatureCounter.fromJSON(signatures);
      decoded.mirrors.set(mirror, tallied);
    }
    tally.set(route, decoded);
  }
  return tally;
}

/**
 * Adds `from` into `into`, name by name. The names are the shard's already (held to the minute's
 * bounds when they were logged), so nothing folds here.
 */
export function addTally(into: Tally, from: Tally): void {
  for (const [route, counted] of from) {
    let entry = into.get(route);
    if (!entry) {
      entry = { requests: 0, mirrored: 0, mirrors: new Map() };
      into.set(route, entry);
    }
    entry.requests += counted.requests;
    entry.mirrored += counted.mirrored;
    for (const [mirror, tallied] of counted.mirrors) {
      let target = entry.mirrors.get(mirror);
      if (!target) {
        target = { counts: newCounts() };
        entry.mirrors.set(mirror, target);
      }
      addMirrorTally(target, tallied);
    }
  }
}

/**
 * Adds one mirror's tally into `target`: counters, fields (each under the name `fieldName` gives
 * it; two that share a name are added, never replaced), sketches and signatures.
 */
export function addMirrorTally(
  target: MirrorTally,
  from: MirrorTally,
  fieldName: (field: string) => string = (field) => field,
): void {
  addCounts(target.counts as Counts, from.counts);
  for (const [field, c] of from.fields ?? []) {
    const name = fieldName(field);
    target.fields ??= new Map<string, FieldCounts>();
    const known = target.fields.get(name);
    if (known) {
      known.differ += c.differ;
      known.noise += c.noise;
    } else target.fields.set(name, { differ: c.differ, noise: c.noise });
  }
  if (from.latency) target.latency = addLatency(target.latency, from.latency);
  if (from.signatures) target.signatures = addSignatures(target.signatures, from.signatures);
}

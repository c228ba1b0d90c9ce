/**
 * @module stats/flush-log
 * One flush as one SQLite row: a batch's tally, its names already held to the shard's bounds,
 * encoded compactly as JSON arrays — `[route, requests, mirrored, [[mirror, counts, [[field,
 * differ, noise]…]]…]]…` — so that a flush writes one row however many routes, mirrors and fields
 * it counted (stats/tables logs it, and compacts the log into the minute rows). Adding tallies is
 * exact, as adding rows is. Pure.
 */
import { addCounts, type Counts, newCounts, SLOT_COUNT } from "./counters.js";
import type { FieldCounts, MirrorTally, RouteTally, Tally } from "./tally.js";

/** Part of the shard's layout (stats/tables): a log written in another format is dropped with it. */
export const FLUSH_LOG_FORMAT = 1;

type EncodedField = [field: string, differ: number, noise: number];
type EncodedMirror = [mirror: string, counts: number[], fields: EncodedField[]];
type EncodedRoute = [route: string, requests: number, mirrored: number, mirrors: EncodedMirror[]];

export function encodeTally(tally: Tally): string {
  const routes: EncodedRoute[] = [];
  for (const [route, { requests, mirrored, mirrors }] of tally) {
    const encoded: EncodedMirror[] = [];
    for (const [mirror, { counts, fields }] of mirrors) {
      encoded.push([mirror, counts, [...(fields ?? [])].map(([field, c]) => [field, c.differ, c.noise])]);
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
    for (const [mirror, counts, fields] of mirrors) {
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
      addCounts(target.counts as Counts, tallied.counts);
      for (const [field, c] of tallied.fields ?? []) {
        target.fields ??= new Map<string, FieldCounts>();
        const known = target.fields.get(field);
        if (known) {
          known.differ += c.differ;
          known.noise += c.noise;
        } else target.fields.set(field, { differ: c.differ, noise: c.noise });
      }
    }
  }
}

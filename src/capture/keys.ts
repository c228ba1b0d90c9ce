/**
 * @module capture/keys
 * Pure: the R2 keys of captured requests. One object holds one route's records from one batch of
 * one isolate, under the route and the UTC date and hour of its earliest request:
 *
 *   captures/<route>/<YYYY-MM-DD>/<HH>/<first>_<last>_<isolate>-<seq>.ndjson.gz
 *
 * where `first` and `last` are the earliest and latest start among its records
 * (`20261125T101503123Z`). Keys of a route sort by their earliest start, so a time range is one
 * listing that starts a little before it (`listStartAfter`), and a listing alone says which objects
 * can hold requests of the range. The isolate's random id and its own counter make every key
 * unique without a read: no object is written twice, and none is on every isolate's path.
 */

/** Every capture object's key starts with this (a bucket may hold nothing else, or other things). */
export const CAPTURES_PREFIX = "captures/";

export { CAPTURES_BINDING } from "./binding.js";

/**
 * How far before a range's start an object can begin and still hold requests of the range: a
 * batch is open for at most 60 s (`CAPTURE_FLUSH_MS`), and a request joins it once the primary
 * has answered (at most 300 s, a route's longest `timeoutMs`) and its bodies are read (10 s for a
 * capture that reads alone). Listing from this far back costs list pages, never object reads.
 */
export const LOOKBACK_MS = 10 * 60_000;

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** Epoch milliseconds → `20261125T101503123Z` (UTC; fixed width, so that it sorts as it reads). */
export function stamp(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}${pad(d.getUTCMilliseconds(), 3)}Z`;
}

const STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/;

/** `stamp`'s inverse; undefined for anything else. */
export function parseStamp(text: string): number | undefined {
  const m = STAMP.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, ms] = m.map(Number) as number[];
  const value = Date.UTC(y as number, (mo as number) - 1, d, h, mi, s, ms);
  return stamp(value) === text ? value : undefined;
}

/** Where one route's objects live. Route ids are letters, digits, `.`, `_` and `-` (src/policy). */
export function routePrefix(route: string): string {
  return `${CAPTURES_PREFIX}${route}/`;
}

/** `captures/<route>/<YYYY-MM-DD>/<HH>/` of the hour `ms` falls in, then its stamp. */
function datedPrefix(route: string, ms: number): string {
  const s = stamp(ms);
  return `${routePrefix(route)}${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}/${s.slice(9, 11)}/`;
}

export interface ObjectName {
  route: string;
  /** Earliest and latest start among the object's records, epoch ms. */
  firstStart: number;
  lastStart: number;
  /** The writing isolate's random id and its count of objects written. */
  isolate: string;
  seq: number;
}

export function objectKey(name: ObjectName): string {
  return `${datedPrefix(name.route, name.firstStart)}${stamp(name.firstStart)}_${stamp(name.lastStart)}_${name.isolate}-${name.seq}.ndjson.gz`;
}

const OBJECT =
  /^captures\/([A-Za-z0-9][A-Za-z0-9._-]*)\/\d{4}-\d{2}-\d{2}\/\d{2}\/(\w{19})_(\w{19})_([0-9a-f]+)-(\d+)\.ndjson\.gz$/;

/** What a key says about its object; undefined for a key capture did not write. */
export function parseObjectKey(key: string): ObjectName | undefined {
  const m = OBJECT.exec(key);
  if (!m) return undefined;
  const firstStart = parseStamp(m[2] as string);
  const lastStart = parseStamp(m[3] as string);
  if (firstStart === undefined || lastStart === undefined || lastStart < firstStart) return undefined;
  const name = { route: m[1] as string, firstStart, lastStart, isolate: m[4] as string, seq: Number(m[5]) };
  // The date and hour directories must be the first start's, as objectKey writes them.
  return objectKey(name) === key ? name : undefined;
}

/**
 * The `startAfter` of a listing of `route` that finds every object that can hold requests started
 * at `fromMs` or later: keys sort by their earliest start, and no object spans more than
 * `LOOKBACK_MS`.
 */
export function listStartAfter(route: string, fromMs: number): string {
  const at = Math.max(0, fromMs - LOOKBACK_MS);
  return `${datedPrefix(route, at)}${stamp(at)}`;
}

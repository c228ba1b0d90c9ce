/**
 * @module capture/export
 * Reads one route's captured records of a time range back from R2, in start order, as HAR or
 * NDJSON, streamed: the admin API (`GET {ADMIN_PREFIX}/api/captures`) and the local CLI
 * (`npm run capture -- export`) both run it, on the worker's binding or on the local state
 * `wrangler dev` keeps. The range is one listing (capture/keys), which also says which objects
 * can hold requests of it, so only those are read. Objects overlap in time (every isolate writes
 * its own), so records are held until no object still to come can start before them — at most
 * `MAX_PENDING_RECORDS`, past which the oldest go first.
 */
import { harEntry, harHead, harTail } from "./har.js";
import { CAPTURES_PREFIX, listStartAfter, parseObjectKey, routePrefix } from "./keys.js";
import { gunzipped, ndjsonLines } from "./lines.js";
import { type CaptureRecord, parseRecord } from "./record.js";

/** What the export needs of an R2 bucket (the binding, or Miniflare's in the CLI). */
export interface CaptureBucketReader {
  list(options: { prefix: string; startAfter?: string; cursor?: string; limit?: number }): Promise<{
    objects: ReadonlyArray<{ key: string }>;
    truncated: boolean;
    cursor?: string;
  }>;
  get(key: string): Promise<{ body: ReadableStream<Uint8Array> } | null>;
}

/** What listing the captured routes needs of an R2 bucket. */
export interface CaptureBucketLister {
  list(options: { prefix: string; delimiter: string; cursor?: string }): Promise<{
    delimitedPrefixes: string[];
    truncated: boolean;
    cursor?: string;
  }>;
}

/** Every route that has captures, one listing of the route prefixes (page by page). */
export async function capturedRoutes(bucket: CaptureBucketLister): Promise<string[]> {
  const routes: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix: CAPTURES_PREFIX, delimiter: "/", ...(cursor ? { cursor } : {}) });
    for (const prefix of page.delimitedPrefixes) routes.push(prefix.slice(CAPTURES_PREFIX.length, -1));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  return routes;
}

export interface ExportQuery {
  route: string;
  /** Requests started in [from, to], epoch ms. */
  from: number;
  to: number;
  /** At most this many records. */
  limit: number;
  /** At most this many objects are read (a Worker's subrequests are limited); undefined: all. */
  maxObjects?: number | undefined;
}

/** Records held for ordering at most; past it, the oldest are written out of turn. */
export const MAX_PENDING_RECORDS = 20_000;

export interface ExportSummary {
  route: string;
  from: string;
  to: string;
  records: number;
  objects: number;
  /** False when `limit` or `maxObjects` stopped the export: `nextFrom` continues it. */
  complete: boolean;
  nextFrom?: string;
  /** Lines of stored objects that could not be read (never expected): how many, and the first few. */
  invalidLines: number;
  invalid: Array<{ key: string; line: number; error: string }>;
}

/** Unreadable lines listed in a summary at most; the rest are counted. */
export const MAX_LISTED_INVALID = 100;

function invalidLine(summary: ExportSummary, key: string, line: number, error: string): void {
  summary.invalidLines++;
  if (summary.invalid.length < MAX_LISTED_INVALID) summary.invalid.push({ key, line, error });
}

/** Objects of the range in key order, i.e. by their earliest start. */
async function* rangeObjects(
  bucket: CaptureBucketReader,
  query: ExportQuery,
): AsyncGenerator<{ key: string; firstStart: number; lastStart: number }> {
  const prefix = routePrefix(query.route);
  let cursor: string | undefined;
  const startAfter = listStartAfter(query.route, query.from);
  for (;;) {
    const page = await bucket.list({ prefix, limit: 1000, ...(cursor ? { cursor } : { startAfter }) });
    for (const { key } of page.objects) {
      const name = parseObjectKey(key);
      if (!name || name.route !== query.route) continue;
      if (name.firstStart > query.to) return;
      if (name.lastStart < query.from) continue;
      yield { key, firstStart: name.firstStart, lastStart: name.lastStart };
    }
    if (!page.truncated || !page.cursor) return;
    cursor = page.cursor;
  }
}

/** A pending record: what it is, and where it came from for a stable order. */
interface Pending {
  record: CaptureRecord;
  order: number;
}

const byStart = (a: Pending, b: Pending) => a.record.startedAt - b.record.startedAt || a.order - b.order;

/**
 * The range's records in start order (see the module's note). `summary` is filled in as it goes
 * and is final once the generator is done.
 */
export async function* exportRecords(
  bucket: CaptureBucketReader,
  query: ExportQuery,
  summary: ExportSummary,
): AsyncGenerator<CaptureRecord> {
  let pending: Pending[] = [];
  let order = 0;
  /** Yields the pending records that started before `before` (all of them for Infinity). */
  const release = function* (before: number): Generator<CaptureRecord, boolean> {
    pending.sort(byStart);
    let n = 0;
    while (n < pending.length && (pending[n] as Pending).record.startedAt < before) {
      if (summary.records >= query.limit) {
        summary.complete = false;
        summary.nextFrom = new Date((pending[n] as Pending).record.startedAt).toISOString();
        pending = [];
        return false;
      }
      summary.records++;
      yield (pending[n] as Pending).record;
      n++;
    }
    pending = pending.slice(n);
    return true;
  };
  for await (const object of rangeObjects(bucket, query)) {
    if (!(yield* release(object.firstStart))) return;
    if (query.maxObjects !== undefined && summary.objects >= query.maxObjects) {
      summary.complete = false;
      summary.nextFrom = new Date(object.firstStart).toISOString();
      return;
    }
    summary.objects++;
    const stored = await bucket.get(object.key);
    if (!stored) continue;
    for await (const line of ndjsonLines(await gunzipped(stored.body))) {
      if ("error" in line) {
        invalidLine(summary, object.key, line.line, line.error);
        continue;
      }
      let parsed: ReturnType<typeof parseRecord>;
      try {
        parsed = parseRecord(JSON.parse(line.text));
      } catch (err) {
        parsed = { ok: false, error: `not JSON: ${(err as Error).message}` };
      }
      if (!parsed.ok) {
        invalidLine(summary, object.key, line.line, parsed.error);
        continue;
      }
      const { startedAt } = parsed.record;
      if (startedAt < query.from || startedAt > query.to) continue;
      pending.push({ record: parsed.record, order: order++ });
    }
    if (pending.length > MAX_PENDING_RECORDS) {
      pending.sort(byStart);
      const cut = (pending[pending.length - MAX_PENDING_RECORDS] as Pending).record.startedAt;
      if (!(yield* release(cut))) return;
    }
  }
  yield* release(Number.POSITIVE_INFINITY);
}

export type ExportFormat = "har" | "ndjson";

export function emptySummary(query: ExportQuery): ExportSummary {
  return {
    route: query.route,
    from: new Date(query.from).toISOString(),
    to: new Date(query.to).toISOString(),
    records: 0,
    objects: 0,
    complete: true,
    invalidLines: 0,
    invalid: [],
  };
}

/**
 * The export as bytes, pulled as the reader reads: HAR (whose `log._edgeMirror` says at the end
 * how many records it holds and whether it is complete) or NDJSON (one record a line).
 * `onDone` gets the summary once the last byte is out.
 */
export function exportStream(
  bucket: CaptureBucketReader,
  query: ExportQuery,
  format: ExportFormat,
  onDone?: (summary: ExportSummary) => void,
): ReadableStream<Uint8Array> {
  const summary = emptySummary(query);
  const records = exportRecords(bucket, query, summary);
  const utf8 = new TextEncoder();
  let started = false;
  let first = true;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (!started) {
          started = true;
          if (format === "har") {
            controller.enqueue(utf8.encode(harHead(`route ${query.route}, ${summary.from} to ${summary.to}`)));
            return;
          }
        }
        const next = await records.next();
        if (next.done) {
          if (format === "har") controller.enqueue(utf8.encode(harTail(summary)));
          controller.close();
          onDone?.(summary);
          return;
        }
        const text =
          format === "har"
            ? `${first ? "" : ","}${JSON.stringify(harEntry(next.value))}`
            : `${JSON.stringify(next.value)}\n`;
        first = false;
        controller.enqueue(utf8.encode(text));
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      await records.return(undefined);
    },
  });
}

export const DEFAULT_EXPORT_LIMIT = 10_000;
export const MAX_EXPORT_LIMIT = 100_000;
const HOUR_MS = 60 * 60_000;

const ROUTE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** An ISO 8601 time or epoch milliseconds; undefined when it is neither. */
export function parseTime(value: string): number | undefined {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

export interface ExportParams {
  route: string;
  from: number;
  to: number;
  limit: number;
  format: ExportFormat;
}

/** The export's query parameters, or which one is wrong and why. */
export function exportParams(query: Record<string, string | undefined>, now: number): Parsed<ExportParams> {
  const { route, from, to, limit, format } = query;
  if (!route) return { ok: false, message: "route is required" };
  if (!ROUTE_ID.test(route)) return { ok: false, message: "route must be a route id" };
  const toMs = to === undefined ? now : parseTime(to);
  if (toMs === undefined) return { ok: false, message: "to must be an ISO 8601 time or epoch milliseconds" };
  const fromMs = from === undefined ? toMs - HOUR_MS : parseTime(from);
  if (fromMs === undefined) return { ok: false, message: "from must be an ISO 8601 time or epoch milliseconds" };
  if (fromMs > toMs) return { ok: false, message: "from must not be after to" };
  const count = limit === undefined ? DEFAULT_EXPORT_LIMIT : Number(limit);
  if (!Number.isInteger(count) || count < 1 || count > MAX_EXPORT_LIMIT) {
    return { ok: false, message: `limit must be an integer from 1 to ${MAX_EXPORT_LIMIT}` };
  }
  if (format !== undefined && format !== "har" && format !== "ndjson") {
    return { ok: false, message: 'format must be "har" or "ndjson"' };
  }
  return { ok: true, value: { route, from: fromMs, to: toMs, limit: count, format: format ?? "har" } };
}

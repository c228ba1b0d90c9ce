/**
 * @module stats/tables
 * One stats shard's SQLite tables (docs/storage-schema.md). A flush writes one row: its batch,
 * its names held to the minute's bounds, in a ring of `FLUSH_LOG_SLOTS` rows (`flush_log`,
 * stats/flush-log) that later flushes overwrite rather than delete, since a deleted row is billed
 * as a written one. The shard keeps the logged batches' sum in memory, and once a minute (or every
 * `COMPACT_AFTER_FLUSHES` flushes) compacts it into the rows the dashboard reads, keyed by
 * (minute, route[, mirror[, field]]) with `INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x`;
 * reads add what is not compacted yet, so a count is read as soon as its flush is in. An instance
 * that starts anew reads the log back from the last compaction on: nothing flushed is lost. A batch
 * too large for one row is added to the minute rows at once. Diff samples are one row each,
 * indexed by field, with bounded retention, written after the counters in a transaction of their
 * own, so that a sample can never cost a count. Names and samples are held to the bounds of
 * compare/bounds again here, whatever an isolate sent. Reads return raw rows for the caller to
 * merge across shards. Synchronous SQL on the object's storage; no other I/O.
 */
import { boundSample, clipField, type DiffSample, MAX_SAMPLE_BYTES, utf8Bytes } from "../compare/index.js";
import { SignatureCounter, type SignatureCounterJSON } from "../signature/index.js";
import { decodeSketch, encodeSketch } from "../sketch/index.js";
import { addCounts, COLUMNS, type Counts, newCounts } from "./counters.js";
import {
  addLatency,
  addMirrorTally,
  addSignatures,
  addTally,
  decodeTally,
  encodeTally,
  FLUSH_LOG_FORMAT,
} from "./flush-log.js";
import {
  bounded,
  fieldKey,
  type LatencyPair,
  MAX_FIELDS,
  MAX_MIRROR_NAMES_PER_ROUTE,
  MAX_ROUTES,
  type MirrorTally,
  OTHER,
  type RouteTally,
  SAMPLES_PER_FIELD,
  type StatsBatch,
  type Tally,
} from "./tally.js";

export const MINUTE_MS = 60_000;
export const RETAINED_MINUTES = 60;
/** Newest samples kept besides the per-field ones, for the dashboard's "latest diffs". */
export const LATEST_SAMPLES = 20;
/** Hard cap per shard, whatever the per-field rule would keep. */
export const MAX_STORED_SAMPLES = 500;
/** Example values per field returned by a read. */
export const EXAMPLES_PER_FIELD = 2;
/** The flush log's ring: a slot is overwritten only once its flush is compacted. */
export const FLUSH_LOG_SLOTS = 8192;
/** Flushes logged since the last compaction past which the shard compacts without waiting for the minute. */
export const COMPACT_AFTER_FLUSHES = 4096;
/** A batch whose logged row would be larger is added to the minute rows at once (SQLite takes 2 MB a row). */
export const MAX_LOGGED_BATCH_BYTES = 256 * 1024;

const counterColumns = COLUMNS.map((c) => `${c} INTEGER NOT NULL DEFAULT 0`).join(", ");
/**
 * Beside the counters: the two latency sketches (`encodeSketch`'s bytes, at most 376 buckets:
 * under 2 KB whatever the traffic) and the divergence signatures (a `SignatureCounter`'s JSON, at
 * most 50 signatures). Merged in code, not SQL: a compaction reads the row's, adds, and writes the
 * sum; NULL while there is nothing to keep.
 */
const EXTRA_COLUMNS = ["lat_primary", "lat_mirror", "signatures"] as const;

/**
 * The layout. It is stored in `meta`; an object that finds a different one drops its tables and
 * starts again (live counters are an hour deep, so a layout change costs at most that hour).
 */
const SCHEMA = [
  "CREATE TABLE route_minute (minute INTEGER NOT NULL, route TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0, mirrored INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (minute, route)) WITHOUT ROWID",
  `CREATE TABLE mirror_minute (minute INTEGER NOT NULL, route TEXT NOT NULL, mirror TEXT NOT NULL, ${counterColumns}, ${EXTRA_COLUMNS.map((c) => `${c} ${c === "signatures" ? "TEXT" : "BLOB"}`).join(", ")}, PRIMARY KEY (minute, route, mirror)) WITHOUT ROWID`,
  "CREATE TABLE field_minute (minute INTEGER NOT NULL, route TEXT NOT NULL, mirror TEXT NOT NULL, field TEXT NOT NULL, differ INTEGER NOT NULL DEFAULT 0, noise INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (minute, route, mirror, field)) WITHOUT ROWID",
  "CREATE TABLE sample (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, route TEXT NOT NULL, mirror TEXT NOT NULL, body TEXT NOT NULL)",
  "CREATE TABLE sample_field (route TEXT NOT NULL, mirror TEXT NOT NULL, field TEXT NOT NULL, sample_id INTEGER NOT NULL, path TEXT NOT NULL, primary_value TEXT NOT NULL, candidate_value TEXT NOT NULL, PRIMARY KEY (route, mirror, field, sample_id)) WITHOUT ROWID",
  "CREATE TABLE flush_log (slot INTEGER PRIMARY KEY, seq INTEGER NOT NULL, minute INTEGER NOT NULL, tally TEXT NOT NULL)",
  // One row, keyed by its rowid: `meta`'s text key is an index of its own, a second row written.
  "CREATE TABLE flush_mark (id INTEGER PRIMARY KEY, compacted INTEGER NOT NULL)",
];
const TABLES = ["route_minute", "mirror_minute", "field_minute", "sample", "sample_field", "flush_log", "flush_mark"];
/** What `meta` holds as the layout: the tables, and the format of the log's rows. */
const LAYOUT = [...SCHEMA, `-- flush_log.tally format ${FLUSH_LOG_FORMAT}`].join(";\n");

const LOG_FLUSH =
  "INSERT INTO flush_log (slot, seq, minute, tally) VALUES (?, ?, ?, ?) ON CONFLICT (slot) DO UPDATE SET seq = excluded.seq, minute = excluded.minute, tally = excluded.tally";
const SET_COMPACTED =
  "INSERT INTO flush_mark (id, compacted) VALUES (0, ?) ON CONFLICT (id) DO UPDATE SET compacted = excluded.compacted";

const ADD_ROUTE =
  "INSERT INTO route_minute (minute, route, requests, mirrored) VALUES (?, ?, ?, ?) ON CONFLICT (minute, route) DO UPDATE SET requests = requests + excluded.requests, mirrored = mirrored + excluded.mirrored";
const ADD_MIRROR = `INSERT INTO mirror_minute (minute, route, mirror, ${[...COLUMNS, ...EXTRA_COLUMNS].join(", ")}) VALUES (?, ?, ?, ${[...COLUMNS, ...EXTRA_COLUMNS].map(() => "?").join(", ")}) ON CONFLICT (minute, route, mirror) DO UPDATE SET ${[
  ...COLUMNS.map((c) => (c === "lat_max_ms" ? `${c} = max(${c}, excluded.${c})` : `${c} = ${c} + excluded.${c}`)),
  ...EXTRA_COLUMNS.map((c) => `${c} = coalesce(excluded.${c}, ${c})`),
].join(", ")}`;
const MIRROR_EXTRAS = `SELECT ${EXTRA_COLUMNS.join(", ")} FROM mirror_minute WHERE minute = ? AND route = ? AND mirror = ?`;
const ADD_FIELD =
  "INSERT INTO field_minute (minute, route, mirror, field, differ, noise) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (minute, route, mirror, field) DO UPDATE SET differ = differ + excluded.differ, noise = noise + excluded.noise";

/** What a flush cost the shard, in SQLite's own billing units. */
export interface FlushResult {
  /** Everything: counters, compaction, samples and the once-a-minute expiry. */
  rowsWritten: number;
  /**
   * Of those, the rows this flush's counts took: its one row in the log, or, for a batch too large
   * for one, an upsert per route, (route, mirror) and (route, mirror, field) it counted.
   */
  counterRows: number;
  /** The compaction and expiry this flush ran (the first of each minute): minute rows, deletions, the log's mark. */
  compactionRows: number;
  /** Set when the batch's samples could not be written (its counts were): why. */
  samplesFailed?: string;
}

/** Raw rows of one shard for a window; stats/merge adds them across shards. */
export interface ShardRows {
  /** [minute, route, requests, mirrored] */
  routes: Array<[number, string, number, number]>;
  /** [minute, route, mirror, counts] */
  mirrors: Array<[number, string, string, Counts]>;
  /** [minute, route, mirror, primary sketch, mirror sketch] (`encodeSketch`), for the rows that have them */
  latency: Array<[number, string, string, Uint8Array, Uint8Array]>;
  /** [route, mirror, signatures] merged over the window (`SignatureCounter.toJSON`), for compared mirrors that differed */
  signatures: Array<[string, string, SignatureCounterJSON]>;
  /** [route, mirror, field, differ, noise], summed over the window */
  fields: Array<[string, string, string, number, number]>;
  /** [route, mirror, field, path, primary, candidate, at], newest first, ≤ EXAMPLES_PER_FIELD each */
  examples: Array<[string, string, string, string, string, string, number]>;
  /** [at, sample as JSON], newest first, ≤ LATEST_SAMPLES */
  samples: Array<[number, string]>;
}

function pendingFor(pending: Pending, minute: number): Tally {
  let tally = pending.byMinute.get(minute);
  if (!tally) {
    tally = new Map();
    pending.byMinute.set(minute, tally);
  }
  return tally;
}

/** The names a minute already holds, so that its rows stay within the tally's bounds. */
class MinuteNames {
  private readonly routes = new Map<string, Map<string, Map<string, true>>>();

  constructor(
    readonly minute: number,
    sql: SqlStorage,
  ) {
    const routes = sql.exec(
      "SELECT route FROM route_minute WHERE minute = ?1 UNION SELECT route FROM mirror_minute WHERE minute = ?1",
      minute,
    );
    for (const [route] of routes.raw<[string]>()) this.routes.set(route, new Map());
    const mirrors = sql.exec("SELECT route, mirror FROM mirror_minute WHERE minute = ?", minute);
    for (const [route, mirror] of mirrors.raw<[string, string]>()) this.routes.get(route)?.set(mirror, new Map());
    const fields = sql.exec("SELECT route, mirror, field FROM field_minute WHERE minute = ?", minute);
    for (const [route, mirror, field] of fields.raw<[string, string, string]>()) {
      this.routes.get(route)?.get(mirror)?.set(field, true);
    }
  }

  /** Registers the names of a tally not compacted yet: they count toward the minute's bounds. */
  learn(tally: Tally | undefined): void {
    for (const [route, counted] of tally ?? []) {
      let mirrors = this.routes.get(route);
      if (!mirrors) {
        mirrors = new Map();
        this.routes.set(route, mirrors);
      }
      for (const [mirror, tallied] of counted.mirrors) {
        let fields = mirrors.get(mirror);
        if (!fields) {
          fields = new Map();
          mirrors.set(mirror, fields);
        }
        for (const field of tallied.fields?.keys() ?? []) fields.set(field, true);
      }
    }
  }

  /** Undefined past `MAX_ROUTES`: as in a batch, further routes are not counted. */
  route(route: string): string | undefined {
    if (this.routes.has(route)) return route;
    if (this.routes.size >= MAX_ROUTES) return undefined;
    this.routes.set(route, new Map());
    return route;
  }

  mirror(route: string, mirror: string): string {
    const mirrors = this.routes.get(route) as Map<string, Map<string, true>>;
    return this.nameIn(mirrors, mirror, MAX_MIRROR_NAMES_PER_ROUTE, () => new Map());
  }

  field(route: string, mirror: string, field: string): string {
    const fields = this.routes.get(route)?.get(mirror) as Map<string, true>;
    return this.nameIn(fields, field, MAX_FIELDS, () => true as const);
  }

  private nameIn<V>(map: Map<string, V>, name: string, max: number, make: () => V): string {
    const entry = bounded(map, name, max, make);
    return map.get(name) === entry ? name : OTHER;
  }
}

/** The flush log's sizes; tests make them small. */
export interface FlushLogOptions {
  slots?: number;
  compactAfter?: number;
  maxLoggedBytes?: number;
}

/** The flushes logged since the last compaction, added up per minute. */
interface Pending {
  byMinute: Map<number, Tally>;
  flushes: number;
}

export class ShardTables {
  private names: MinuteNames | undefined;
  private prunedAt: number | undefined;
  /** Undefined until read back from the log (lazily, on first use). */
  private pending: Pending | undefined;
  /** The sequence number of the last flush logged, and of the last one compacted. */
  private lastSeq = 0;
  private compacted = 0;
  private readonly slots: number;
  private readonly compactAfter: number;
  private readonly maxLoggedBytes: number;

  constructor(
    private readonly storage: DurableObjectStorage,
    options: FlushLogOptions = {},
  ) {
    this.slots = options.slots ?? FLUSH_LOG_SLOTS;
    // Below the ring's size, so that a slot is never overwritten before its flush is compacted.
    this.compactAfter = Math.min(options.compactAfter ?? COMPACT_AFTER_FLUSHES, this.slots);
    this.maxLoggedBytes = options.maxLoggedBytes ?? MAX_LOGGED_BATCH_BYTES;
    this.migrate();
  }

  private get sql(): SqlStorage {
    return this.storage.sql;
  }

  /** Runs a statement to its end and returns the rows it wrote (SQLite's billing unit). */
  private write(query: string, ...bindings: unknown[]): number {
    const cursor = this.sql.exec(query, ...bindings);
    for (const _ of cursor.raw()) {
      // Drained so that the count is final.
    }
    return cursor.rowsWritten;
  }

  private migrate(): void {
    const sql = this.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    const stored = sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").toArray()[0]?.value;
    if (stored === LAYOUT) return;
    this.storage.transactionSync(() => {
      for (const table of TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      for (const statement of SCHEMA) sql.exec(statement);
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", LAYOUT);
    });
  }

  /** The flushes not compacted yet, read back from the log when this instance has not yet. */
  private loaded(): Pending {
    if (this.pending) return this.pending;
    const sql = this.sql;
    this.compacted = sql.exec<{ compacted: number }>("SELECT compacted FROM flush_mark").toArray()[0]?.compacted ?? 0;
    const last = sql.exec<{ seq: number | null }>("SELECT max(seq) AS seq FROM flush_log").one().seq;
    this.lastSeq = Math.max(last ?? 0, this.compacted);
    const pending: Pending = { byMinute: new Map(), flushes: 0 };
    for (const [minute, tally] of sql
      .exec("SELECT minute, tally FROM flush_log WHERE seq > ? ORDER BY seq", this.compacted)
      .raw<[number, string]>()) {
      addTally(pendingFor(pending, minute), decodeTally(tally));
      pending.flushes++;
    }
    this.pending = pending;
    return pending;
  }

  /** The names the minute holds, in its rows and in what is not compacted yet. */
  private namesFor(minute: number): MinuteNames {
    if (this.names?.minute === minute) return this.names;
    const names = new MinuteNames(minute, this.sql);
    names.learn(this.loaded().byMinute.get(minute));
    this.names = names;
    return names;
  }

  /**
   * Adds a batch to the minute of `now`. The counters are one transaction, so that a flush
   * counts wholly or not at all; the samples follow in one of their own, and a sample that cannot
   * be written is reported in the result rather than losing the counts.
   */
  add(batch: StatsBatch, now: number): FlushResult {
    const minute = Math.floor(now / MINUTE_MS);
    const counted = this.guarded(() => this.count(batch, minute, now));
    if (batch.samples.length === 0) return counted;
    try {
      const written = this.guarded(() =>
        this.storage.transactionSync(() => this.addSamples(batch.samples, this.namesFor(minute))),
      );
      return { ...counted, rowsWritten: counted.rowsWritten + written };
    } catch (err) {
      return { ...counted, samplesFailed: String(err).slice(0, 500) };
    }
  }

  /**
   * Runs `write`; when it throws, what this instance remembers of the tables (the minute's names,
   * the last expiry) may describe rows that were rolled back, so it is read again next time.
   */
  private guarded<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      this.names = undefined;
      this.prunedAt = undefined;
      throw err;
    }
  }

  /**
   * The batch's counters: compacts first when a minute has begun (expiring the oldest with it)
   * or the log has grown long, then logs the batch as one row, or adds it to the minute rows at
   * once when it is too large for one.
   */
  private count(batch: StatsBatch, minute: number, now: number): FlushResult {
    const pending = this.loaded();
    let compactionRows = 0;
    if (this.prunedAt !== minute || pending.flushes >= this.compactAfter) {
      compactionRows = this.compact(minute, now);
    }
    const tally = this.named(batch.tally, this.namesFor(minute));
    const row = encodeTally(tally);
    let counterRows: number;
    if (utf8Bytes(row) > this.maxLoggedBytes) {
      counterRows = this.storage.transactionSync(() => this.addRows(minute, tally));
    } else {
      const seq = this.lastSeq + 1;
      counterRows = this.storage.transactionSync(() => this.write(LOG_FLUSH, seq % this.slots, seq, minute, row));
      this.lastSeq = seq;
      addTally(pendingFor(pending, minute), tally);
      pending.flushes++;
    }
    return { rowsWritten: compactionRows + counterRows, counterRows, compactionRows };
  }

  /** The batch with its names as the minute holds them: bounded, and field names clipped. */
  private named(tally: Tally, names: MinuteNames): Tally {
    const out: Tally = new Map();
    for (const [routeId, route] of tally) {
      const r = names.route(routeId);
      if (r === undefined) continue;
      const entry: RouteTally = { requests: route.requests, mirrored: route.mirrored, mirrors: new Map() };
      out.set(r, entry);
      for (const [mirrorId, mirror] of route.mirrors) {
        const m = names.mirror(r, mirrorId);
        // Two names of a batch may share one row, (other): added, never replaced.
        let target = entry.mirrors.get(m);
        if (!target) {
          target = { counts: newCounts() };
          entry.mirrors.set(m, target);
        }
        // Field names are clipped at the source too; an isolate of another version may not have.
        addMirrorTally(target, mirror, (field) => names.field(r, m, clipField(field)));
      }
    }
    return out;
  }

  /** Upserts a tally into the minute rows: one row per route, (route, mirror) and (route, mirror, field). */
  private addRows(minute: number, tally: Tally): number {
    let written = 0;
    for (const [route, counted] of tally) {
      if (counted.requests > 0 || counted.mirrored > 0) {
        written += this.write(ADD_ROUTE, minute, route, counted.requests, counted.mirrored);
      }
      for (const [mirror, tallied] of counted.mirrors) {
        const { counts, fields } = tallied;
        written += this.write(
          ADD_MIRROR,
          minute,
          route,
          mirror,
          ...counts,
          ...this.extras(minute, route, mirror, tallied),
        );
        for (const [field, c] of fields ?? [])
          written += this.write(ADD_FIELD, minute, route, mirror, field, c.differ, c.noise);
      }
    }
    return written;
  }

  /**
   * The sketches and signatures to write for a row: the tally's added to what the row holds
   * already (a minute compacted twice), or nulls, which leave the row's as they are.
   */
  private extras(
    minute: number,
    route: string,
    mirror: string,
    tallied: MirrorTally,
  ): Array<Uint8Array | string | null> {
    if (!tallied.latency && !tallied.signatures) return [null, null, null];
    let latency: LatencyPair | undefined;
    let signatures: SignatureCounter | undefined;
    const stored = this.sql
      .exec(MIRROR_EXTRAS, minute, route, mirror)
      .raw<[ArrayBuffer | null, ArrayBuffer | null, string | null]>()
      .next();
    if (!stored.done) ({ latency, signatures } = storedExtras(...stored.value));
    if (tallied.latency) latency = addLatency(latency, tallied.latency);
    if (tallied.signatures) signatures = addSignatures(signatures, tallied.signatures);
    return [
      latency ? encodeSketch(latency.primary) : null,
      latency ? encodeSketch(latency.mirror) : null,
      signatures ? JSON.stringify(signatures.toJSON()) : null,
    ];
  }

  /**
   * Moves what the log holds beyond the last compaction into the minute rows, in one transaction
   * with the mark that says so; once per minute, the expiry of what is older than the retained
   * hour goes with it. The log's rows stay, to be overwritten: deleting them would bill a row each.
   */
  private compact(minute: number, now: number): number {
    const pending = this.loaded();
    const prune = this.prunedAt !== minute;
    const written = this.storage.transactionSync(() => {
      let rows = prune ? this.prune(minute, now) : 0;
      if (pending.flushes === 0) return rows;
      for (const [at, tally] of pending.byMinute) {
        // A minute past the retained hour (an object idle that long) would only be deleted again.
        if (at > minute - RETAINED_MINUTES) rows += this.addRows(at, tally);
      }
      return rows + this.write(SET_COMPACTED, this.lastSeq);
    });
    if (prune) this.prunedAt = minute;
    if (pending.flushes > 0) {
      this.compacted = this.lastSeq;
      pending.byMinute.clear();
      pending.flushes = 0;
    }
    return written;
  }

  /** Drops what is older than the retained hour. */
  private prune(minute: number, now: number): number {
    let written = 0;
    for (const table of ["route_minute", "mirror_minute", "field_minute"]) {
      written += this.write(`DELETE FROM ${table} WHERE minute <= ?`, minute - RETAINED_MINUTES);
    }
    written += this.write("DELETE FROM sample WHERE at < ?", now - RETAINED_MINUTES * MINUTE_MS);
    return written + this.dropOrphanFields();
  }

  private dropOrphanFields(): number {
    return this.write("DELETE FROM sample_field WHERE sample_id NOT IN (SELECT id FROM sample)");
  }

  /**
   * One row per sample and one per field it shows. Keeps, per route, mirror and field, the
   * newest `SAMPLES_PER_FIELD`; besides those the newest `LATEST_SAMPLES`; never more than
   * `MAX_STORED_SAMPLES`.
   */
  private addSamples(samples: readonly DiffSample[], names: MinuteNames): number {
    let written = 0;
    const touched = new Map<string, [string, string, string]>();
    for (const sent of samples) {
      const sample = boundSample(sent);
      const body = JSON.stringify(sample);
      if (utf8Bytes(body) > MAX_SAMPLE_BYTES) continue;
      const route = names.route(sample.route);
      if (route === undefined) continue;
      const mirror = names.mirror(route, sample.mirror);
      const insert = this.sql.exec<{ id: number }>(
        "INSERT INTO sample (at, route, mirror, body) VALUES (?, ?, ?, ?) RETURNING id",
        sample.at,
        route,
        mirror,
        body,
      );
      const id = insert.one().id;
      written += insert.rowsWritten;
      for (const d of sample.differences) {
        const field = names.field(route, mirror, d.field);
        written += this.write(
          "INSERT OR IGNORE INTO sample_field (route, mirror, field, sample_id, path, primary_value, candidate_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
          route,
          mirror,
          field,
          id,
          d.path,
          d.primary,
          d.candidate,
        );
        touched.set(fieldKey(route, mirror, field), [route, mirror, field]);
      }
    }
    for (const [route, mirror, field] of touched.values()) {
      written += this.write(
        "DELETE FROM sample_field WHERE route = ?1 AND mirror = ?2 AND field = ?3 AND sample_id NOT IN (SELECT sample_id FROM sample_field WHERE route = ?1 AND mirror = ?2 AND field = ?3 ORDER BY sample_id DESC LIMIT ?4)",
        route,
        mirror,
        field,
        SAMPLES_PER_FIELD,
      );
    }
    written += this.write(
      "DELETE FROM sample WHERE id NOT IN (SELECT sample_id FROM sample_field) AND id NOT IN (SELECT id FROM sample ORDER BY id DESC LIMIT ?)",
      LATEST_SAMPLES,
    );
    const capped = this.write(
      "DELETE FROM sample WHERE id NOT IN (SELECT id FROM sample ORDER BY id DESC LIMIT ?)",
      MAX_STORED_SAMPLES,
    );
    return written + capped + (capped > 0 ? this.dropOrphanFields() : 0);
  }

  /** Every row of the minutes from `since` (an epoch minute) on, what is not compacted yet added in. */
  read(since: number): ShardRows {
    const signatures: SignatureRows = new Map();
    const rows = this.compactedRows(since, signatures);
    addPending(rows, this.loaded(), since, signatures);
    for (const [route, mirror, counter] of signatures.values()) rows.signatures.push([route, mirror, counter.toJSON()]);
    return rows;
  }

  private compactedRows(since: number, signatures: SignatureRows): ShardRows {
    const sql = this.sql;
    const from = since * MINUTE_MS;
    const routes = [
      ...sql.exec("SELECT minute, route, requests, mirrored FROM route_minute WHERE minute >= ?", since).raw(),
    ] as ShardRows["routes"];
    const mirrors: ShardRows["mirrors"] = [];
    const latency: ShardRows["latency"] = [];
    const extrasAt = 3 + COLUMNS.length;
    for (const row of sql
      .exec(
        `SELECT minute, route, mirror, ${[...COLUMNS, ...EXTRA_COLUMNS].join(", ")} FROM mirror_minute WHERE minute >= ?`,
        since,
      )
      .raw()) {
      const [minute, route, mirror] = row as [number, string, string];
      mirrors.push([minute, route, mirror, row.slice(3, extrasAt) as number[]]);
      const [primary, mirrored, counted] = row.slice(extrasAt) as [
        ArrayBuffer | null,
        ArrayBuffer | null,
        string | null,
      ];
      const kept = storedExtras(primary, mirrored, counted);
      if (kept.latency && primary && mirrored) {
        latency.push([minute, route, mirror, new Uint8Array(primary), new Uint8Array(mirrored)]);
      }
      if (kept.signatures) addSignatureRow(signatures, route, mirror, kept.signatures);
    }
    const fields = [
      ...sql
        .exec(
          "SELECT route, mirror, field, SUM(differ), SUM(noise) FROM field_minute WHERE minute >= ? GROUP BY route, mirror, field",
          since,
        )
        .raw(),
    ] as ShardRows["fields"];
    const examples: ShardRows["examples"] = [];
    const perField = new Map<string, number>();
    for (const row of sql
      .exec(
        "SELECT f.route, f.mirror, f.field, f.path, f.primary_value, f.candidate_value, s.at FROM sample_field f JOIN sample s ON s.id = f.sample_id WHERE s.at >= ? ORDER BY f.sample_id DESC",
        from,
      )
      .raw()) {
      const key = fieldKey(row[0] as string, row[1] as string, row[2] as string);
      const seen = perField.get(key) ?? 0;
      if (seen >= EXAMPLES_PER_FIELD) continue;
      perField.set(key, seen + 1);
      examples.push(row as ShardRows["examples"][number]);
    }
    const samples = [
      ...sql.exec("SELECT at, body FROM sample WHERE at >= ? ORDER BY id DESC LIMIT ?", from, LATEST_SAMPLES).raw(),
    ] as ShardRows["samples"];
    return { routes, mirrors, latency, signatures: [], fields, examples, samples };
  }

  /** The newest samples that show `field` of one route and mirror, as JSON, newest first. */
  fieldSamples(route: string, mirror: string, field: string, since: number): Array<[number, string]> {
    return [
      ...this.sql
        .exec(
          "SELECT s.at, s.body FROM sample_field f JOIN sample s ON s.id = f.sample_id WHERE f.route = ? AND f.mirror = ? AND f.field = ? AND s.at >= ? ORDER BY f.sample_id DESC LIMIT ?",
          route,
          mirror,
          field,
          since * MINUTE_MS,
          SAMPLES_PER_FIELD,
        )
        .raw(),
    ] as Array<[number, string]>;
  }

  reset(): void {
    this.storage.transactionSync(() => {
      for (const table of TABLES) this.sql.exec(`DELETE FROM ${table}`);
    });
    this.names = undefined;
    this.pending = { byMinute: new Map(), flushes: 0 };
    this.lastSeq = 0;
    this.compacted = 0;
  }
}

/**
 * A row's sketches and signatures as stored. A value that does not decode (a row damaged, or
 * written by a format this code does not read) is left out, and logged: it must cost what it held,
 * never the compaction that adds to it (which would stop every later flush of the shard) or the
 * read of the shard's other rows.
 */
function storedExtras(
  primary: ArrayBuffer | null,
  mirrored: ArrayBuffer | null,
  counted: string | null,
): { latency?: LatencyPair; signatures?: SignatureCounter } {
  const out: { latency?: LatencyPair; signatures?: SignatureCounter } = {};
  try {
    if (primary && mirrored) {
      out.latency = { primary: decodeSketch(new Uint8Array(primary)), mirror: decodeSketch(new Uint8Array(mirrored)) };
    }
  } catch (err) {
    console.error(
      JSON.stringify({ msg: "edge-mirror.stats_row_damaged", column: "lat_primary, lat_mirror", error: String(err) }),
    );
  }
  try {
    if (counted) out.signatures = SignatureCounter.fromJSON(JSON.parse(counted));
  } catch (err) {
    console.error(JSON.stringify({ msg: "edge-mirror.stats_row_damaged", column: "signatures", error: String(err) }));
  }
  return out;
}

/** A window's signatures per (route, mirror), merged over its minutes, keyed by `fieldKey(route, mirror, "")`. */
type SignatureRows = Map<string, [string, string, SignatureCounter]>;

function addSignatureRow(rows: SignatureRows, route: string, mirror: string, counter: SignatureCounter): void {
  const key = fieldKey(route, mirror, "");
  const known = rows.get(key);
  if (known) known[2].merge(counter);
  else rows.set(key, [route, mirror, addSignatures(undefined, counter)]);
}

/**
 * Adds the flushes not compacted yet to rows read from the tables, key by key, so that a read
 * shows a count as soon as its flush is in, and each key still has one row.
 */
function addPending(rows: ShardRows, pending: Pending, since: number, signatures: SignatureRows): void {
  if (pending.flushes === 0) return;
  const latency = new Map(rows.latency.map((row, at) => [`${row[0]}\n${fieldKey(row[1], row[2], "")}`, at]));
  const routes = new Map(rows.routes.map((row) => [`${row[0]}\n${row[1]}`, row]));
  const mirrors = new Map(rows.mirrors.map((row) => [`${row[0]}\n${fieldKey(row[1], row[2], "")}`, row]));
  const fields = new Map(rows.fields.map((row) => [fieldKey(row[0], row[1], row[2]), row]));
  for (const [minute, tally] of pending.byMinute) {
    if (minute < since) continue;
    for (const [route, counted] of tally) {
      if (counted.requests > 0 || counted.mirrored > 0) {
        const known = routes.get(`${minute}\n${route}`);
        if (known) {
          known[2] += counted.requests;
          known[3] += counted.mirrored;
        } else {
          const row: ShardRows["routes"][number] = [minute, route, counted.requests, counted.mirrored];
          routes.set(`${minute}\n${route}`, row);
          rows.routes.push(row);
        }
      }
      for (const [mirror, { counts, fields: differing, latency: sketches, signatures: counter }] of counted.mirrors) {
        const key = `${minute}\n${fieldKey(route, mirror, "")}`;
        if (sketches) {
          const at = latency.get(key);
          const stored = at === undefined ? undefined : rows.latency[at];
          if (stored) {
            const sum = addLatency({ primary: decodeSketch(stored[3]), mirror: decodeSketch(stored[4]) }, sketches);
            stored[3] = encodeSketch(sum.primary);
            stored[4] = encodeSketch(sum.mirror);
          } else {
            latency.set(key, rows.latency.length);
            rows.latency.push([minute, route, mirror, encodeSketch(sketches.primary), encodeSketch(sketches.mirror)]);
          }
        }
        if (counter) addSignatureRow(signatures, route, mirror, counter);
        const known = mirrors.get(key);
        if (known) addCounts(known[3], counts);
        else {
          const row: ShardRows["mirrors"][number] = [minute, route, mirror, [...counts]];
          mirrors.set(key, row);
          rows.mirrors.push(row);
        }
        for (const [field, c] of differing ?? []) {
          const seen = fields.get(fieldKey(route, mirror, field));
          if (seen) {
            seen[3] += c.differ;
            seen[4] += c.noise;
          } else {
            const row: ShardRows["fields"][number] = [route, mirror, field, c.differ, c.noise];
            fields.set(fieldKey(route, mirror, field), row);
            rows.fields.push(row);
          }
        }
      }
    }
  }
}

/**
 * @module stats/tables
 * One stats shard's SQLite tables (docs/storage-schema.md): a flush adds its batch to rows
 * keyed by (minute, route[, mirror[, field]]) with `INSERT … ON CONFLICT DO UPDATE SET x = x +
 * excluded.x`, so it writes only the rows its batch changed; diff samples are one row each,
 * indexed by field, with bounded retention, written after the counters in a transaction of
 * their own, so that a sample can never cost a count. Names and samples are held to the bounds
 * of compare/bounds again here, whatever an isolate sent. Reads return raw rows for the caller
 * to merge across shards. Synchronous SQL on the object's storage; no other I/O.
 */
import { boundSample, clipField, type DiffSample, MAX_SAMPLE_BYTES, utf8Bytes } from "../compare/index.js";
import { COLUMNS, type Counts } from "./counters.js";
import {
  bounded,
  fieldKey,
  MAX_FIELDS,
  MAX_MIRROR_NAMES_PER_ROUTE,
  MAX_ROUTES,
  OTHER,
  SAMPLES_PER_FIELD,
  type StatsBatch,
} from "./tally.js";

export const MINUTE_MS = 60_000;
export const RETAINED_MINUTES = 60;
/** Newest samples kept besides the per-field ones, for the dashboard's "latest diffs". */
export const LATEST_SAMPLES = 20;
/** Hard cap per shard, whatever the per-field rule would keep. */
export const MAX_STORED_SAMPLES = 500;
/** Example values per field returned by a read. */
export const EXAMPLES_PER_FIELD = 2;

const counterColumns = COLUMNS.map((c) => `${c} INTEGER NOT NULL DEFAULT 0`).join(", ");

/**
 * The layout. It is stored in `meta`; an object that finds a different one drops its tables and
 * starts again (live counters are an hour deep, so a layout change costs at most that hour).
 */
const SCHEMA = [
  "CREATE TABLE route_minute (minute INTEGER NOT NULL, route TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0, mirrored INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (minute, route)) WITHOUT ROWID",
  `CREATE TABLE mirror_minute (minute INTEGER NOT NULL, route TEXT NOT NULL, mirror TEXT NOT NULL, ${counterColumns}, PRIMARY KEY (minute, route, mirror)) WITHOUT ROWID`,
  "CREATE TABLE field_minute (minute INTEGER NOT NULL, route TEXT NOT NULL, mirror TEXT NOT NULL, field TEXT NOT NULL, differ INTEGER NOT NULL DEFAULT 0, noise INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (minute, route, mirror, field)) WITHOUT ROWID",
  "CREATE TABLE sample (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, route TEXT NOT NULL, mirror TEXT NOT NULL, body TEXT NOT NULL)",
  "CREATE TABLE sample_field (route TEXT NOT NULL, mirror TEXT NOT NULL, field TEXT NOT NULL, sample_id INTEGER NOT NULL, path TEXT NOT NULL, primary_value TEXT NOT NULL, candidate_value TEXT NOT NULL, PRIMARY KEY (route, mirror, field, sample_id)) WITHOUT ROWID",
];
const TABLES = ["route_minute", "mirror_minute", "field_minute", "sample", "sample_field"];

const ADD_ROUTE =
  "INSERT INTO route_minute (minute, route, requests, mirrored) VALUES (?, ?, ?, ?) ON CONFLICT (minute, route) DO UPDATE SET requests = requests + excluded.requests, mirrored = mirrored + excluded.mirrored";
const ADD_MIRROR = `INSERT INTO mirror_minute (minute, route, mirror, ${COLUMNS.join(", ")}) VALUES (?, ?, ?, ${COLUMNS.map(() => "?").join(", ")}) ON CONFLICT (minute, route, mirror) DO UPDATE SET ${COLUMNS.map((c) => (c === "lat_max_ms" ? `${c} = max(${c}, excluded.${c})` : `${c} = ${c} + excluded.${c}`)).join(", ")}`;
const ADD_FIELD =
  "INSERT INTO field_minute (minute, route, mirror, field, differ, noise) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (minute, route, mirror, field) DO UPDATE SET differ = differ + excluded.differ, noise = noise + excluded.noise";

/** What a flush cost the shard, in SQLite's own billing units. */
export interface FlushResult {
  /** Everything: counters, samples and the once-a-minute expiry. */
  rowsWritten: number;
  /** Of those, the counter upserts: one per route, (route, mirror) and (route, mirror, field) in the batch. */
  counterRows: number;
  /** Set when the batch's samples could not be written (its counts were): why. */
  samplesFailed?: string;
}

/** Raw rows of one shard for a window; stats/merge adds them across shards. */
export interface ShardRows {
  /** [minute, route, requests, mirrored] */
  routes: Array<[number, string, number, number]>;
  /** [minute, route, mirror, counts] */
  mirrors: Array<[number, string, string, Counts]>;
  /** [route, mirror, field, differ, noise], summed over the window */
  fields: Array<[string, string, string, number, number]>;
  /** [route, mirror, field, path, primary, candidate, at], newest first, ≤ EXAMPLES_PER_FIELD each */
  examples: Array<[string, string, string, string, string, string, number]>;
  /** [at, sample as JSON], newest first, ≤ LATEST_SAMPLES */
  samples: Array<[number, string]>;
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

export class ShardTables {
  private names: MinuteNames | undefined;
  private prunedAt: number | undefined;

  constructor(private readonly storage: DurableObjectStorage) {
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
    const layout = SCHEMA.join(";\n");
    const stored = sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema'").toArray()[0]?.value;
    if (stored === layout) return;
    this.storage.transactionSync(() => {
      for (const table of TABLES) sql.exec(`DROP TABLE IF EXISTS ${table}`);
      for (const statement of SCHEMA) sql.exec(statement);
      sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", layout);
    });
  }

  /**
   * Adds a batch to the minute of `now`. The counters are one transaction, so that a flush
   * counts wholly or not at all; the samples follow in one of their own, and a sample that cannot
   * be written is reported in the result rather than losing the counts.
   */
  add(batch: StatsBatch, now: number): FlushResult {
    const minute = Math.floor(now / MINUTE_MS);
    const counted = this.guarded(() => this.storage.transactionSync(() => this.count(batch, minute, now)));
    if (batch.samples.length === 0) return counted;
    try {
      const written = this.guarded(() =>
        this.storage.transactionSync(() => this.addSamples(batch.samples, this.names as MinuteNames)),
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

  /** The batch's counters, and the once-a-minute expiry. */
  private count(batch: StatsBatch, minute: number, now: number): FlushResult {
    let counterRows = 0;
    const run = (query: string, ...bindings: unknown[]) => {
      counterRows += this.write(query, ...bindings);
    };
    const pruned = this.prune(minute, now);
    if (this.names?.minute !== minute) this.names = new MinuteNames(minute, this.sql);
    const names = this.names;
    for (const [routeId, route] of batch.tally) {
      const r = names.route(routeId);
      if (r === undefined) continue;
      if (route.requests > 0 || route.mirrored > 0) run(ADD_ROUTE, minute, r, route.requests, route.mirrored);
      for (const [mirrorId, mirror] of route.mirrors) {
        const m = names.mirror(r, mirrorId);
        run(ADD_MIRROR, minute, r, m, ...mirror.counts);
        for (const [fieldId, counts] of mirror.fields ?? []) {
          // Clipped at the source too; an isolate of another version may not have.
          run(ADD_FIELD, minute, r, m, names.field(r, m, clipField(fieldId)), counts.differ, counts.noise);
        }
      }
    }
    return { rowsWritten: pruned + counterRows, counterRows };
  }

  /** Drops what is older than the retained hour, once per minute. */
  private prune(minute: number, now: number): number {
    if (this.prunedAt === minute) return 0;
    this.prunedAt = minute;
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

  /** Every row of the minutes from `since` (an epoch minute) on. */
  read(since: number): ShardRows {
    const sql = this.sql;
    const from = since * MINUTE_MS;
    const routes = [
      ...sql.exec("SELECT minute, route, requests, mirrored FROM route_minute WHERE minute >= ?", since).raw(),
    ] as ShardRows["routes"];
    const mirrors: ShardRows["mirrors"] = [];
    for (const row of sql
      .exec(`SELECT minute, route, mirror, ${COLUMNS.join(", ")} FROM mirror_minute WHERE minute >= ?`, since)
      .raw()) {
      mirrors.push([row[0] as number, row[1] as string, row[2] as string, row.slice(3) as number[]]);
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
    return { routes, mirrors, fields, examples, samples };
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
  }
}

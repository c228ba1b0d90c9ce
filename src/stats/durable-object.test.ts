import { abortAllDurableObjects, reset, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { type DiffSample, MAX_FIELD_CHARS, MAX_SAMPLE_BYTES } from "../compare/index.js";
import { MAX_ALLOWED_CLUSTERS, MAX_MIRRORS_PER_ROUTE } from "../policy/index.js";
import type { MirrorOutcome } from "../record/index.js";
import { outcomes, SLOT } from "./counters.js";
import type { MirrorStatsShard, ShardSnapshot } from "./durable-object.js";
import { mergeShards } from "./merge.js";
import { shardName } from "./shards.js";
import {
  LATEST_SAMPLES,
  MAX_STORED_SAMPLES,
  MINUTE_MS,
  RETAINED_MINUTES,
  type ShardRows,
  ShardTables,
} from "./tables.js";
import {
  countOutcome,
  countRequest,
  emptyBatch,
  MAX_MIRROR_NAMES_PER_ROUTE,
  OTHER,
  SAMPLES_PER_FIELD,
  type StatsBatch,
} from "./tally.js";

const stub = () => env.MIRROR_STATS.get(env.MIRROR_STATS.idFromName(shardName(0)));
/** RPC typing widens the row tuples to arrays; the values are the tuples the shard built. */
const readShard = async (since: number) => (await stub().read(since)) as unknown as ShardSnapshot;

function batchOf(...outcomes: MirrorOutcome[]): StatsBatch {
  const batch = emptyBatch();
  for (const o of outcomes) {
    countRequest(batch.tally, o.route, o.kind !== "skipped");
    countOutcome(batch, o);
  }
  return { tally: batch.tally, samples: batch.samples };
}

const sentTo = (route: string, mirror: string, extra: Partial<MirrorOutcome> = {}): MirrorOutcome =>
  ({
    route,
    mirror,
    requestId: "id",
    kind: "sent",
    status: 200,
    latencyMs: 12,
    bodyBytes: 0,
    ...extra,
  }) as MirrorOutcome;

function sample(at: number, fields: string[], route = "r"): DiffSample {
  return {
    at,
    route,
    mirror: "m",
    requestId: `req-${at}`,
    method: "GET",
    path: "/",
    fields,
    noise: [],
    differences: fields.map((field) => ({ field, path: field, primary: "1", candidate: "2" })),
    primary: { status: 200, headers: {}, bodyBytes: 1, sha256: "", excerpt: "" },
    candidate: { status: 200, headers: {}, bodyBytes: 1, sha256: "", excerpt: "" },
  };
}

const differing = (at: number, fields: string[], route = "r"): MirrorOutcome =>
  sentTo(route, "m", {
    compare: { verdict: "differ", fields, noise: [] },
    sample: sample(at, fields, route),
  } as Partial<MirrorOutcome>);

/** Requests per route over all minutes read. */
function requests(rows: ShardRows): Record<string, number> {
  const out: Record<string, number> = Object.create(null);
  for (const [, route, n] of rows.routes) out[route] = (out[route] ?? 0) + n;
  return { ...out };
}

const NOW = Date.UTC(2026, 10, 25, 12, 0, 30);
const minuteOf = (t: number) => Math.floor(t / MINUTE_MS);

beforeEach(() => reset());

describe("MirrorStatsShard", () => {
  it("writes one row per flush, and reads the flushes back as one row per minute, route and mirror", async () => {
    const shard = stub();
    const first = await shard.add(batchOf(sentTo("r", "m"), sentTo("r", "m"), sentTo("r", "n")));
    await shard.add(batchOf(sentTo("r", "m")));
    // The batch as one row of the flush log, however many routes and mirrors it counted.
    expect([first.rowsWritten, first.counterRows]).toEqual([1, 1]);
    // From the previous minute on, in case the flushes straddle a minute boundary.
    const rows = await readShard(minuteOf(Date.now()) - 1);
    expect(requests(rows)).toEqual({ r: 4 });
    const sent = mergeShards([rows]).routes.get("r")?.mirrors;
    const total = (mirror: string) =>
      [...(sent?.get(mirror)?.minutes.values() ?? [])].reduce((n, c) => n + (c[SLOT.sent] as number), 0);
    expect([total("m"), total("n")]).toEqual([3, 1]);
    expect(rows.load.flushes).toBe(2);
  });

  it("keeps its counts when the instance is evicted: a new one reads them from SQLite", async () => {
    await stub().add(batchOf(sentTo("r", "m"), sentTo("constructor", "__proto__")));
    const before = await readShard(minuteOf(Date.now()) - 1);
    await abortAllDurableObjects();
    const after = await readShard(minuteOf(Date.now()) - 1);
    expect(after.load.flushes).toBe(0);
    expect({ ...after, load: undefined }).toEqual({ ...before, load: undefined });
    expect(requests(after)).toEqual({ constructor: 1, r: 1 });
    expect(mergeShards([after]).routes.get("constructor")?.mirrors.has("__proto__")).toBe(true);
  });

  it("drops minutes older than the retained hour", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage);
      tables.add(batchOf(sentTo("old", "m")), NOW - (RETAINED_MINUTES + 1) * MINUTE_MS);
      tables.add(batchOf(sentTo("edge", "m")), NOW - (RETAINED_MINUTES - 1) * MINUTE_MS);
      expect(requests(tables.read(0))).toEqual({ edge: 1, old: 1 });
      tables.add(batchOf(sentTo("new", "m")), NOW);
      const left = tables.read(0);
      expect(requests(left)).toEqual({ edge: 1, new: 1 });
      expect(new Set(left.mirrors.map(([, route]) => route))).toEqual(new Set(["edge", "new"]));
      // The minute rows hold what was compacted; the current minute is in the flush log until the next.
      const minutes = state.storage.sql.exec("SELECT DISTINCT minute FROM route_minute ORDER BY minute").toArray();
      expect(minutes.map((m) => m.minute)).toEqual([minuteOf(NOW) - RETAINED_MINUTES + 1]);
    });
  });

  it("compacts the flush log into the minute rows at the first flush of a minute, counts exact", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage);
      const minuteRows = () => Number(state.storage.sql.exec("SELECT count(*) AS n FROM mirror_minute").one().n);
      const flushes = [
        batchOf(sentTo("r", "m"), sentTo("r", "n")),
        batchOf(differing(NOW, ["$.a", "$.b"]), sentTo("s", "m")),
        batchOf(sentTo("r", "m", { status: 503 } as Partial<MirrorOutcome>)),
      ];
      for (const batch of flushes) expect(tables.add(batch, NOW).counterRows).toBe(1);
      expect(minuteRows()).toBe(0);
      const before = tables.read(0);
      expect(requests(before)).toEqual({ r: 4, s: 1 });
      expect(before.fields).toEqual([
        ["r", "m", "$.a", 1, 0],
        ["r", "m", "$.b", 1, 0],
      ]);

      // The next minute's first flush: routes r and s (2), mirrors r/m, r/n, s/m (3), fields (2), the mark (1).
      const next = tables.add(batchOf(sentTo("r", "m")), NOW + MINUTE_MS);
      expect([next.counterRows, next.compactionRows]).toEqual([1, 8]);
      expect(minuteRows()).toBe(3);
      const after = tables.read(0);
      expect(requests(after)).toEqual({ r: 5, s: 1 });
      const sent = (route: string, mirror: string) =>
        after.mirrors
          .filter(([, r, m]) => r === route && m === mirror)
          .reduce((n, [, , , counts]) => n + (counts[SLOT.sent] as number), 0);
      expect([sent("r", "m"), sent("r", "n"), sent("s", "m")]).toEqual([4, 1, 1]);
      expect(after.fields).toEqual(before.fields);
    });
  });

  it("overwrites the log's oldest rows instead of deleting them, and compacts before a slot is reused", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage, { slots: 16, compactAfter: 8 });
      const results = Array.from({ length: 40 }, (_, i) => tables.add(batchOf(sentTo(`r${i % 3}`, "m")), NOW));
      expect(results.every((r) => r.counterRows === 1)).toBe(true);
      // Compacted every eight flushes (the first compacted nothing: the object had no log yet).
      expect(results.filter((r) => r.compactionRows > 0)).toHaveLength(4);
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM flush_log").one().n).toBe(16);
      expect(requests(tables.read(0))).toEqual({ r0: 14, r1: 13, r2: 13 });
      // A new instance reads back what is not compacted yet, and nothing twice.
      expect(requests(new ShardTables(state.storage, { slots: 16, compactAfter: 8 }).read(0))).toEqual({
        r0: 14,
        r1: 13,
        r2: 13,
      });
    });
  });

  it("adds a batch too large for one row to the minute rows at once", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage, { maxLoggedBytes: 200 });
      tables.add(batchOf(sentTo("small", "m")), NOW);
      const large = batchOf(...Array.from({ length: 5 }, (_, i) => sentTo(`route-${i}`, "m")));
      expect(tables.add(large, NOW).counterRows).toBe(10);
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM flush_log").one().n).toBe(1);
      expect(requests(tables.read(0))).toEqual({
        small: 1,
        "route-0": 1,
        "route-1": 1,
        "route-2": 1,
        "route-3": 1,
        "route-4": 1,
      });
    });
  });

  it("bounds mirror names per route and minute across flushes from many isolates", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage);
      for (let i = 0; i < MAX_MIRROR_NAMES_PER_ROUTE * 2; i++) {
        const skipped: MirrorOutcome = {
          route: "r",
          mirror: `x-${i}`,
          requestId: "",
          kind: "skipped",
          reason: "unknown_cluster",
        };
        tables.add(batchOf(skipped), NOW);
      }
      const rows = tables.read(0);
      const names = new Set(rows.mirrors.map(([, , mirror]) => mirror));
      expect(names.size).toBe(MAX_MIRROR_NAMES_PER_ROUTE);
      expect(names.has(OTHER)).toBe(true);
      const other = rows.mirrors.find(([, , mirror]) => mirror === OTHER)?.[3] ?? [];
      expect(outcomes(other)).toBe(MAX_MIRROR_NAMES_PER_ROUTE + 1);
    });
  });

  it("keeps a row for every configured mirror in a minute, flushed by many isolates after junk names", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage);
      const skipped = (mirror: string, reason: "cluster_not_allowed" | "unknown_cluster"): MirrorOutcome => ({
        route: "r",
        mirror,
        requestId: "",
        kind: "skipped",
        reason,
      });
      // Junk names arrive as header-chosen names outside allow do: all as one label.
      for (let i = 0; i < 40; i++) tables.add(batchOf(skipped("(not allowed)", "cluster_not_allowed")), NOW);
      const configured = [
        ...Array.from({ length: MAX_MIRRORS_PER_ROUTE }, (_, i) => `https://audit-${i}.example.net`),
        ...Array.from({ length: MAX_ALLOWED_CLUSTERS }, (_, i) => `branch-${i}`),
      ];
      for (const mirror of configured) tables.add(batchOf(skipped(mirror, "unknown_cluster")), NOW);
      const names = new Set(tables.read(0).mirrors.map(([, , mirror]) => mirror));
      expect(names.has(OTHER)).toBe(false);
      expect(names.size).toBe(configured.length + 1);
      for (const mirror of configured) expect(names.has(mirror), mirror).toBe(true);
    });
  });

  it("writes samples apart from the counters: a sample that cannot be written never costs a count", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      // SQLite refusing the sample's row, as it refused a 2.5 MiB one (SQLITE_TOOBIG).
      const bound = <T extends object>(target: T, name: PropertyKey) => {
        const value = Reflect.get(target, name, target);
        return typeof value === "function" ? value.bind(target) : value;
      };
      const sql = new Proxy(state.storage.sql, {
        get(target, name) {
          if (name !== "exec") return bound(target, name);
          return (query: string, ...bindings: unknown[]) => {
            if (query.startsWith("INSERT INTO sample ")) throw new Error("string or blob too big: SQLITE_TOOBIG");
            return target.exec(query, ...bindings);
          };
        },
      });
      const storage = new Proxy(state.storage, {
        get: (target, name) => (name === "sql" ? sql : bound(target, name)),
      });
      const tables = new ShardTables(storage as DurableObjectStorage);
      const result = tables.add(batchOf(differing(NOW, ["$.a"]), sentTo("other", "m"), sentTo("other", "m")), NOW);
      expect(result.samplesFailed).toMatch(/SQLITE_TOOBIG/);
      // The batch's one row in the flush log.
      expect(result.counterRows).toBe(1);
      const rows = tables.read(0);
      expect(requests(rows)).toEqual({ other: 2, r: 1 });
      expect(rows.fields).toEqual([["r", "m", "$.a", 1, 0]]);
      expect(rows.samples).toEqual([]);
      // The next flush counts as usual.
      tables.add(batchOf(sentTo("other", "m")), NOW);
      expect(requests(tables.read(0))).toEqual({ other: 3, r: 1 });
    });
  });

  it("clips field names and samples again, whatever an isolate sent", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage);
      // As an isolate that does not clip at the source would send the review's 2.5 MiB key.
      const key = `$.${"k".repeat(2.5 * 1024 * 1024)}`;
      const unclipped = sample(NOW, [key]);
      unclipped.primary.excerpt = JSON.stringify({ [key.slice(2)]: 1 }, null, 2);
      const batch = batchOf(
        sentTo("r", "m", {
          compare: { verdict: "differ", fields: [key], noise: [] },
          sample: unclipped,
        } as Partial<MirrorOutcome>),
        sentTo("other", "m"),
      );
      tables.add(batch, NOW);
      const rows = tables.read(0);
      expect(requests(rows)).toEqual({ other: 1, r: 1 });
      const [field] = rows.fields;
      expect(field?.[2]).toHaveLength(MAX_FIELD_CHARS);
      expect(field?.[2]).toMatch(/^\$\.k+…#[0-9a-f]{14}$/);
      expect(rows.examples.map((e) => e[2])).toEqual([field?.[2]]);
      const [[, body] = [0, ""]] = rows.samples;
      expect(new TextEncoder().encode(body).byteLength).toBeLessThanOrEqual(MAX_SAMPLE_BYTES);
      expect(JSON.parse(body).fields).toEqual([field?.[2]]);
    });
  });

  it("keeps a few samples per field, the newest overall, and never more than the cap", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      const tables = new ShardTables(state.storage);
      let at = NOW - 30 * MINUTE_MS;
      // A frequent difference and a rare one: the rare one keeps its samples.
      tables.add(batchOf(differing(at++, ["$.rare"])), at);
      for (let i = 0; i < 40; i++) tables.add(batchOf(differing(at++, ["$.common"])), at);
      const rareSamples = tables.fieldSamples("r", "m", "$.rare", 0);
      expect(rareSamples).toHaveLength(1);
      const common = tables.fieldSamples("r", "m", "$.common", 0).map(([time]) => time);
      expect(common).toEqual([at - 1, at - 2, at - 3].slice(0, SAMPLES_PER_FIELD));
      const count = () => Number(state.storage.sql.exec("SELECT count(*) AS n FROM sample").one().n);
      // The rare field's sample, the newest per field, and the newest LATEST_SAMPLES overall.
      expect(count()).toBe(1 + LATEST_SAMPLES);
      const rows = tables.read(0);
      expect(rows.samples).toHaveLength(LATEST_SAMPLES);
      expect(rows.samples[0]?.[0]).toBe(at - 1);

      // Distinct fields (of distinct routes, so that no field folds into "(other)") each keep a
      // sample, up to the hard cap.
      for (let i = 0; i < MAX_STORED_SAMPLES + 50; i++) tables.add(batchOf(differing(at++, ["$.f"], `r${i}`)), at);
      expect(count()).toBe(MAX_STORED_SAMPLES);
      const orphans = state.storage.sql
        .exec("SELECT count(*) AS n FROM sample_field WHERE sample_id NOT IN (SELECT id FROM sample)")
        .one().n;
      expect(orphans).toBe(0);

      // An hour later every sample has aged out.
      tables.add(batchOf(sentTo("r", "m")), at + (RETAINED_MINUTES + 1) * MINUTE_MS);
      expect(count()).toBe(0);
      expect(state.storage.sql.exec("SELECT count(*) AS n FROM sample_field").one().n).toBe(0);
    });
  });

  it("rebuilds its tables when it finds another layout, and clears them on reset", async () => {
    await runInDurableObject(stub(), (_instance: MirrorStatsShard, state) => {
      new ShardTables(state.storage).add(batchOf(sentTo("r", "m")), NOW);
      state.storage.sql.exec("UPDATE meta SET value = 'an older layout' WHERE key = 'schema'");
      const tables = new ShardTables(state.storage);
      expect(tables.read(0).routes).toEqual([]);
      tables.add(batchOf(sentTo("r", "m")), NOW);
      expect(requests(tables.read(0))).toEqual({ r: 1 });
      tables.reset();
      expect(tables.read(0)).toMatchObject({ routes: [], mirrors: [], fields: [], samples: [] });
    });
  });
});

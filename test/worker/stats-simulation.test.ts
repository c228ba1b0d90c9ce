/**
 * Counters at the edge's scale, simulated in workerd against the real `MirrorStatsShard`
 * objects: thousands of isolates (one `StatsBuffer` each, on a shard drawn as production draws
 * it) count seeded random traffic over many routes and mirrors and flush concurrently. The
 * totals read back through `api/stats` must equal a tally kept independently here, every flush
 * must write exactly the rows its batch changed, and the shards must share the writes. The
 * figures printed here are the measured ones in docs/scale.md.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { CompareSummary, DiffSample } from "../../src/compare/index.js";
import type { MirrorOutcome } from "../../src/record/index.js";
import { StatsBuffer } from "../../src/stats/buffer.js";
import type { MirrorStatsShard } from "../../src/stats/durable-object.js";
import { decodeTally, type EncodedBatch } from "../../src/stats/flush-log.js";
import { statsSettings } from "../../src/stats/index.js";
import { shardName } from "../../src/stats/shards.js";
import type { RouteSummary } from "../../src/stats/summary.js";
import type { FlushResult } from "../../src/stats/tables.js";
import type { StatsBatch } from "../../src/stats/tally.js";
import { adminStats } from "./helpers.js";
import { seeded } from "./seeded.js";

const ISOLATES = 2000;
const ROUNDS = 2;
const TOKEN = "simulation-admin-token-0123456789";

interface SimRoute {
  id: string;
  mirrors: string[];
  /** The mirror with compare mode, if any. */
  compared?: string;
}

// Route ids include names that plain objects would mistake for their prototype's.
const ROUTES: SimRoute[] = Array.from({ length: 48 }, (_, i) => {
  const id = i === 0 ? "constructor" : i === 1 ? "toString" : i === 2 ? "hasOwnProperty" : `route-${i}`;
  const mirrors = Array.from({ length: 1 + (i % 3) }, (_, m) => (m === 0 && i === 0 ? "__proto__" : `mirror-${m}`));
  return i % 4 === 0 ? { id, mirrors: [...mirrors, "canary"], compared: "canary" } : { id, mirrors };
});
const FIELDS = ["$.price", "$.items[*].id", "status", "headers.etag", "$.user.name", "$.constructor"];

/** The independent tally: one number per "route|mirror|what". */
class Expected {
  readonly counts = new Map<string, number>();
  add(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }
  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

function sampleFor(route: string, mirror: string, fields: string[], at: number): DiffSample {
  const side = { status: 200, headers: {}, bodyBytes: 2, sha256: "", excerpt: "{}" };
  return {
    at,
    route,
    mirror,
    requestId: `r-${at}`,
    method: "GET",
    path: "/",
    fields,
    noise: [],
    differences: fields.map((field) => ({ field, path: field.replace("[*]", "[0]"), primary: "1", candidate: "2" })),
    primary: side,
    candidate: side,
  };
}

/** One request's outcomes, counted into `expected` as they are made. */
function simulateRequest(route: SimRoute, random: () => number, expected: Expected, at: number): MirrorOutcome[] {
  const outcomes: MirrorOutcome[] = [];
  for (const mirror of route.mirrors) {
    const base = { route: route.id, mirror, requestId: "" };
    const key = `${route.id}|${mirror}`;
    if (random() < 0.5) {
      outcomes.push({ ...base, kind: "skipped", reason: "not_sampled" });
      expected.add(`${key}|skipped.not_sampled`);
      continue;
    }
    let compare: CompareSummary | undefined;
    let sample: DiffSample | undefined;
    if (random() < 0.1) {
      if (mirror === route.compared) {
        compare = { verdict: "error", fields: [], noise: [] };
        expected.add(`${key}|error`);
      }
      outcomes.push({
        ...base,
        kind: "failed",
        error: "timeout",
        message: "",
        latencyMs: 5000,
        ...(compare ? { compare } : {}),
      });
      expected.add(`${key}|failed`);
      continue;
    }
    const status = random() < 0.1 ? 503 : 200;
    if (mirror === route.compared) {
      const differs = random() < 0.3;
      const fields = differs ? FIELDS.filter(() => random() < 0.4).slice(0, 3) : [];
      if (differs && fields.length === 0) fields.push("$.price");
      const noise = random() < 0.2 ? ["$.ts"] : [];
      compare = { verdict: fields.length > 0 ? "differ" : "match", fields, noise };
      expected.add(`${key}|${compare.verdict}`);
      for (const f of fields) expected.add(`${key}|field|${f}|differ`);
      for (const f of noise) expected.add(`${key}|field|${f}|noise`);
      if (fields.length > 0) sample = sampleFor(route.id, mirror, fields, at);
    }
    outcomes.push({
      ...base,
      kind: "sent",
      status,
      latencyMs: Math.floor(random() * 400),
      bodyBytes: 0,
      ...(compare ? { compare } : {}),
      ...(sample ? { sample } : {}),
    });
    expected.add(`${key}|sent`);
    expected.add(`${key}|status.${status === 200 ? "2xx" : "5xx"}`);
  }
  return outcomes;
}

/** The rows a flush of `batch` would write as minute rows: what the flush log saves. */
function changedRows(batch: StatsBatch): number {
  let rows = 0;
  for (const route of batch.tally.values()) {
    if (route.requests > 0) rows++;
    for (const mirror of route.mirrors.values()) rows += 1 + (mirror.fields?.size ?? 0);
  }
  return rows;
}

function batchBytes(batch: EncodedBatch): number {
  return JSON.stringify(batch).length;
}

interface Flush {
  shard: number;
  result: FlushResult;
  expectedCounterRows: number;
  samples: number;
  sampleFields: number;
  bytes: number;
}

const stat = (values: number[]) => ({
  mean: Math.round((values.reduce((a, b) => a + b, 0) / values.length) * 10) / 10,
  max: Math.max(...values),
});

describe("stats at the edge's scale (simulation)", () => {
  it(`${ISOLATES} isolates flushing concurrently to the shards read back exactly`, { timeout: 240_000 }, async () => {
    const random = seeded(20261125);
    const { shards } = statsSettings(env);
    expect(shards).toBeGreaterThan(1);
    const expected = new Expected();
    const flushes: Flush[] = [];
    const isolates = Array.from({ length: ISOLATES }, () => {
      const settings = statsSettings(
        { STATS_SHARDS: String(shards), STATS_FLUSH_MS: String(Math.floor(random() * 5)) },
        random,
      );
      const id = env.MIRROR_STATS.idFromName(shardName(settings.shard));
      const buffer = new StatsBuffer(async (batch) => {
        const result = (await env.MIRROR_STATS.get(id).add(batch)) as FlushResult;
        const decoded: StatsBatch = { tally: decodeTally(batch.encoded), samples: batch.samples };
        const sampleFields = batch.samples.reduce((n, s) => n + s.differences.length, 0);
        flushes.push({
          shard: settings.shard,
          result,
          expectedCounterRows: changedRows(decoded),
          samples: batch.samples.length,
          sampleFields,
          bytes: batchBytes(batch),
        });
      }, settings.flushMs);
      return buffer;
    });

    let requests = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const pending: Promise<unknown>[] = [];
      const waitUntil = (p: Promise<unknown>) => pending.push(p);
      for (const buffer of isolates) {
        const sink = buffer.sink(waitUntil);
        // Busy and idle isolates: 0–24 requests in this interval, skewed to a few routes.
        const count = Math.floor(random() ** 2 * 24);
        for (let i = 0; i < count; i++) {
          const route = ROUTES[Math.floor(random() ** 1.5 * ROUTES.length)] as SimRoute;
          const outcomes = simulateRequest(route, random, expected, Date.now() + requests);
          const mirrored = outcomes.some((o) => o.kind !== "skipped");
          buffer.countRequest(route.id, mirrored, waitUntil);
          expected.add(`${route.id}|requests`);
          if (mirrored) expected.add(`${route.id}|mirrored`);
          for (const o of outcomes) sink(o);
          requests++;
        }
      }
      // Every isolate's flush is in flight at once.
      await Promise.all(pending);
    }

    // Totals through the worker's own API: every shard read and merged.
    const res = await adminStats({ ...env, ADMIN_TOKEN: TOKEN } as Env, "?minutes=60");
    expect(res.status).toBe(200);
    const data = (await res.json()) as { routes: RouteSummary[]; sources: { shards: Array<{ answered: boolean }> } };
    expect(data.sources.shards.every((s) => s.answered)).toBe(true);

    let checked = 0;
    for (const route of ROUTES) {
      const got = data.routes.find((r) => r.route === route.id);
      expect(got, route.id).toBeDefined();
      expect([got?.requests, got?.mirrored], route.id).toEqual([
        expected.get(`${route.id}|requests`),
        expected.get(`${route.id}|mirrored`),
      ]);
      for (const mirror of route.mirrors) {
        const key = `${route.id}|${mirror}`;
        const m = got?.mirrors.find((x) => x.mirror === mirror);
        if (!m) {
          expect(expected.get(`${key}|sent`) + expected.get(`${key}|skipped.not_sampled`), key).toBe(0);
          continue;
        }
        expect([m.sent, m.failed, m.skipped.not_sampled ?? 0, m.status["2xx"] ?? 0, m.status["5xx"] ?? 0], key).toEqual(
          [
            expected.get(`${key}|sent`),
            expected.get(`${key}|failed`),
            expected.get(`${key}|skipped.not_sampled`),
            expected.get(`${key}|status.2xx`),
            expected.get(`${key}|status.5xx`),
          ],
        );
        expect([m.compare.match, m.compare.differ, m.compare.error], key).toEqual([
          expected.get(`${key}|match`),
          expected.get(`${key}|differ`),
          expected.get(`${key}|error`),
        ]);
        for (const f of m.compare.fields) {
          expect([f.differ, f.noise], `${key} ${f.field}`).toEqual([
            expected.get(`${key}|field|${f.field}|differ`),
            expected.get(`${key}|field|${f.field}|noise`),
          ]);
        }
        const listed = m.compare.fields.reduce((n, f) => n + f.differ, 0);
        const sentDiffers = FIELDS.reduce((n, f) => n + expected.get(`${key}|field|${f}|differ`), 0);
        expect(listed, key).toBe(sentDiffers);
        // The series adds up to the totals: minute rows and totals come from the same rows.
        expect(
          m.series.reduce((n, p) => n + p.sent, 0),
          key,
        ).toBe(m.sent);
        checked++;
      }
      expect(got?.series.reduce((n, p) => n + p.requests, 0)).toBe(got?.requests);
    }
    expect(checked).toBeGreaterThan(80);
    // Every (route, mirror, field) of the traffic, twice (a compaction may hold two minutes).
    const compactionBound =
      2 * ROUTES.reduce((n, r) => n + 1 + r.mirrors.length + (r.compared ? FIELDS.length + 1 : 0), 0);

    // Writes: every flush wrote one row for its counts, whatever its batch changed; a compaction
    // at most one per minute row it adds to, and the mark; samples at most one insert and one
    // eviction per row they added.
    for (const f of flushes) {
      expect(f.result.counterRows).toBe(1);
      expect(f.result.compactionRows).toBeLessThanOrEqual(compactionBound + 1);
      expect(f.result.rowsWritten - f.result.counterRows - f.result.compactionRows).toBeLessThanOrEqual(
        2 * (f.samples + f.sampleFields) + f.sampleFields,
      );
    }

    // The shards shared the writes, and each counted exactly the flushes sent to it.
    const perShard = Array.from({ length: shards }, (_, shard) => flushes.filter((f) => f.shard === shard).length);
    const seen = await Promise.all(
      perShard.map((_, shard) =>
        runInDurableObject(
          env.MIRROR_STATS.get(env.MIRROR_STATS.idFromName(shardName(shard))),
          async (instance: MirrorStatsShard, state) => {
            const { load } = await instance.read(0);
            return { flushes: load.flushes, databaseBytes: state.storage.sql.databaseSize };
          },
        ),
      ),
    );
    expect(seen.map((s) => s.flushes)).toEqual(perShard);
    expect(flushes.length).toBe(perShard.reduce((a, b) => a + b, 0));
    const mean = flushes.length / shards;
    expect(Math.max(...perShard)).toBeLessThan(2 * mean);

    const rows = stat(flushes.map((f) => f.result.rowsWritten));
    const counterRows = stat(flushes.map((f) => f.result.counterRows));
    const asMinuteRows = stat(flushes.map((f) => f.expectedCounterRows));
    const bytes = stat(flushes.map((f) => f.bytes));
    console.log(
      JSON.stringify(
        {
          simulation: {
            isolates: ISOLATES,
            rounds: ROUNDS,
            shards,
            requests,
            flushes: flushes.length,
            flushesPerShard: { min: Math.min(...perShard), mean: Math.round(mean), max: Math.max(...perShard) },
            rowsWrittenPerFlush: rows,
            counterRowsPerFlush: counterRows,
            minuteRowsEachBatchChanged: asMinuteRows,
            compactionRows: flushes.reduce((n, f) => n + f.result.compactionRows, 0),
            batchBytesPerFlush: bytes,
            flushesWithSamples: flushes.filter((f) => f.samples > 0).length,
            databaseBytesPerShard: stat(seen.map((s) => s.databaseBytes)),
          },
        },
        null,
        2,
      ),
    );
  });
});

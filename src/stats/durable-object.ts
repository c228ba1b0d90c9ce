/**
 * @module stats/durable-object
 * `MirrorStatsShard`: one of `STATS_SHARDS` Durable Objects that share the isolates' counter
 * writes (stats/shards picks one per isolate). Each keeps the last hour in its own SQLite
 * (stats/tables); readers ask every shard and merge. The object holds no counts in memory, so a
 * new instance after eviction reads the same numbers back. docs/metrics.md explains the design.
 */
import { DurableObject } from "cloudflare:workers";
import { decodeTally, type EncodedBatch } from "./flush-log.js";
import { type FlushResult, type ShardRows, ShardTables } from "./tables.js";
import type { StatsBatch } from "./tally.js";

/** Since this instance started: what the dashboard shows to size `STATS_SHARDS`. */
export interface ShardLoad {
  since: number;
  flushes: number;
  rowsWritten: number;
}

export interface ShardSnapshot extends ShardRows {
  load: ShardLoad;
}

export class MirrorStatsShard extends DurableObject<Env> {
  private readonly tables: ShardTables;
  private readonly load: ShardLoad = { since: Date.now(), flushes: 0, rowsWritten: 0 };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.tables = new ShardTables(ctx.storage);
  }

  /**
   * Adds an isolate's flush to the current minute (see `ShardTables.add`): its tally encoded as the
   * flush log keeps it (what isolates send), or as a tally of plain counts (tests, and isolates of
   * the version before, during a deployment).
   */
  async add(batch: StatsBatch | EncodedBatch): Promise<FlushResult> {
    const decoded = "encoded" in batch ? { tally: decodeTally(batch.encoded), samples: batch.samples } : batch;
    const result = this.tables.add(decoded, Date.now());
    if (result.samplesFailed !== undefined) {
      // The counts are in; only this batch's diff samples are missing from the dashboard.
      console.error(JSON.stringify({ msg: "edge-mirror.stats_samples_failed", error: result.samplesFailed }));
    }
    this.load.flushes++;
    this.load.rowsWritten += result.rowsWritten;
    return result;
  }

  /** The rows of the minutes from `since` (an epoch minute) on, and this instance's load. */
  async read(since: number): Promise<ShardSnapshot> {
    return { ...this.tables.read(since), load: { ...this.load } };
  }

  async fieldSamples(route: string, mirror: string, field: string, since: number): Promise<Array<[number, string]>> {
    return this.tables.fieldSamples(route, mirror, field, since);
  }

  async reset(): Promise<void> {
    this.tables.reset();
  }
}

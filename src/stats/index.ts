/**
 * @module stats
 * Live per-route, per-mirror counters for the dashboard: what an isolate needs to count. Each
 * isolate batches its outcomes (stats/buffer, stats/tally) and flushes them to one of
 * `STATS_SHARDS` `MirrorStatsShard` Durable Objects (stats/durable-object, stats/tables); reads
 * merge every shard (stats/shards, stats/merge, stats/summary). Settings parsing is pure; the
 * buffer's send is the only I/O. docs/metrics.md explains the design, docs/scale.md its costs.
 */
import { StatsBuffer } from "./buffer.js";
import { shardName } from "./shards.js";

export const DEFAULT_SHARDS = 16;
/** A read is one subrequest per shard; this keeps it far inside the paid plan's limit. */
export const MAX_SHARDS = 128;
export const DEFAULT_FLUSH_MS = 5000;

export interface StatsSettings {
  /** How many shard objects share the writes (`STATS_SHARDS`). */
  shards: number;
  /** How long an isolate batches before it writes (`STATS_FLUSH_MS`). */
  flushMs: number;
  /** The shard this isolate writes to, 0 ≤ shard < shards. */
  shard: number;
}

function intSetting(value: string | undefined, fallback: number, min: number, max: number): number {
  const n = Number(value);
  return value !== undefined && value.trim() !== "" && Number.isInteger(n) && n >= min && n <= max ? n : fallback;
}

/**
 * The settings for one isolate. The shard is drawn at random rather than from the location:
 * every isolate flushes at most once per interval whatever its traffic, so a uniform draw
 * spreads the writes evenly, where busy locations would make their shard hot.
 */
export function statsSettings(
  env: { STATS_SHARDS?: string; STATS_FLUSH_MS?: string },
  random: () => number = Math.random,
): StatsSettings {
  const shards = intSetting(env.STATS_SHARDS, DEFAULT_SHARDS, 1, MAX_SHARDS);
  const flushMs = intSetting(env.STATS_FLUSH_MS, DEFAULT_FLUSH_MS, 0, 60_000);
  return { shards, flushMs, shard: Math.min(Math.floor(random() * shards), shards - 1) };
}

/** The isolate's counter buffer, writing to its shard; undefined without the `MIRROR_STATS` binding. */
export function createStatsBuffer(env: Env, settings: StatsSettings = statsSettings(env)): StatsBuffer | undefined {
  const namespace = env.MIRROR_STATS;
  if (!namespace) return undefined;
  const id = namespace.idFromName(shardName(settings.shard));
  // A stub belongs to the request that made it, so each flush makes its own.
  return new StatsBuffer((batch) => namespace.get(id).add(batch), settings.flushMs);
}

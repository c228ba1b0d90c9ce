/**
 * @module stats/shards
 * The read side of the `STATS_SHARDS` `MirrorStatsShard` objects named `shard-<n>`: a read asks
 * every shard at once and merges (stats/merge), so the numbers are the same whichever shard an
 * isolate wrote to. Durable Object I/O only.
 */
import type { DiffSample } from "../compare/index.js";
import type { MirrorStatsShard, ShardSnapshot } from "./durable-object.js";
import { type Merged, mergeShards } from "./merge.js";
import { MINUTE_MS, RETAINED_MINUTES } from "./tables.js";
import { SAMPLES_PER_FIELD } from "./tally.js";

/** One name per shard; the names are part of the storage layout (docs/storage-schema.md). */
export function shardName(shard: number): string {
  return `shard-${shard}`;
}

/** No shard answered a read. */
export class StatsUnavailableError extends Error {
  override readonly name = "StatsUnavailableError";
}

export interface ShardStatus {
  shard: number;
  answered: boolean;
  /** Flushes received since the shard's instance started (an instance restarts when evicted). */
  flushes?: number;
  /** The same per second; compare with the ~1,000 requests/s one object takes. */
  flushesPerSecond?: number;
  rowsWrittenPerFlush?: number;
}

export interface StatsRead {
  merged: Merged;
  /** The window's epoch minutes, oldest first; the current minute is the last. */
  minutes: number[];
  shards: ShardStatus[];
}

type Namespace = DurableObjectNamespace<MirrorStatsShard>;

/**
 * The shards as their class declares them. RPC typing widens the tuples of `ShardRows` to
 * plain arrays; structured cloning keeps them exactly as the object built them.
 */
interface ShardCalls {
  read(since: number): Promise<ShardSnapshot>;
  fieldSamples(route: string, mirror: string, field: string, since: number): Promise<Array<[number, string]>>;
  reset(): Promise<void>;
}

function stubs(namespace: Namespace, shards: number): ShardCalls[] {
  return Array.from(
    { length: shards },
    (_, shard) => namespace.get(namespace.idFromName(shardName(shard))) as unknown as ShardCalls,
  );
}

export function windowMinutes(windowLength: number, now: number): number[] {
  const length = Math.min(Math.max(Math.trunc(windowLength) || 1, 1), RETAINED_MINUTES);
  const current = Math.floor(now / MINUTE_MS);
  return Array.from({ length }, (_, i) => current - length + 1 + i);
}

/** Every shard's rows for the last `windowLength` minutes, merged. Shards that fail are reported, not fatal. */
export async function readStats(
  namespace: Namespace,
  shards: number,
  windowLength: number,
  now = Date.now(),
): Promise<StatsRead> {
  const minutes = windowMinutes(windowLength, now);
  const since = minutes[0] as number;
  const results = await Promise.allSettled(stubs(namespace, shards).map((stub) => stub.read(since)));
  const answered = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  if (answered.length === 0) {
    const reason = results[0]?.status === "rejected" ? String(results[0].reason) : "no shards";
    throw new StatsUnavailableError(`no stats shard answered: ${reason}`);
  }
  const status = results.map((r, shard): ShardStatus => {
    if (r.status === "rejected") return { shard, answered: false };
    const { since: started, flushes, rowsWritten } = r.value.load;
    const seconds = Math.max((now - started) / 1000, 1);
    return {
      shard,
      answered: true,
      flushes,
      flushesPerSecond: Math.round((flushes / seconds) * 100) / 100,
      rowsWrittenPerFlush: flushes === 0 ? 0 : Math.round((rowsWritten / flushes) * 10) / 10,
    };
  });
  return { merged: mergeShards(answered), minutes, shards: status };
}

/** The newest samples in the window that show `field`, across shards, newest first. */
export async function readFieldSamples(
  namespace: Namespace,
  shards: number,
  field: { route: string; mirror: string; field: string },
  windowLength: number,
  now = Date.now(),
): Promise<DiffSample[]> {
  const since = windowMinutes(windowLength, now)[0] as number;
  const results = await Promise.allSettled(
    stubs(namespace, shards).map((stub) => stub.fieldSamples(field.route, field.mirror, field.field, since)),
  );
  const rows = results.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
  if (rows.length === 0 && results.every((r) => r.status === "rejected")) {
    throw new StatsUnavailableError("no stats shard answered");
  }
  rows.sort((a, b) => b[0] - a[0]);
  return rows.slice(0, SAMPLES_PER_FIELD).map(([, body]) => JSON.parse(body) as DiffSample);
}

export async function resetStats(namespace: Namespace, shards: number): Promise<void> {
  await Promise.all(stubs(namespace, shards).map((stub) => stub.reset()));
}

/**
 * @module stats/durable-object
 * `MirrorStats`: one Durable Object that sums the isolates' batches into minute buckets (kept
 * for an hour) and keeps the newest diff samples, so that the dashboard shows live numbers
 * wherever Analytics Engine cannot be queried (locally, in tests, and without the binding).
 * docs/metrics.md explains the choice.
 */
import { DurableObject } from "cloudflare:workers";
import type { DiffSample } from "../compare/index.js";
import { addSamples, mergeTally, type StatsBatch, type Tally } from "./index.js";

/** Every isolate reports to the same object; the name is part of the storage layout. */
export const STATS_OBJECT_NAME = "global";
export const RETAINED_MINUTES = 60;
const MINUTE_MS = 60_000;
const MINUTE_PREFIX = "minute:";
const SAMPLES_KEY = "samples";

export interface StatsSnapshot {
  /** Window start and end (ms since the epoch); the current minute is included. */
  from: number;
  to: number;
  tally: Tally;
  /** Newest first. */
  samples: DiffSample[];
}

/** Zero-padded so that storage lists minutes in order. */
function minuteKey(minute: number): string {
  return `${MINUTE_PREFIX}${String(minute).padStart(12, "0")}`;
}

/** The one `MirrorStats` object, or undefined without the `MIRROR_STATS` binding. */
export function statsObject(env: Env): DurableObjectStub<MirrorStats> | undefined {
  const namespace = env.MIRROR_STATS;
  return namespace ? namespace.get(namespace.idFromName(STATS_OBJECT_NAME)) : undefined;
}

export class MirrorStats extends DurableObject<Env> {
  private readonly minutes = new Map<number, Tally>();
  private samples: DiffSample[] = [];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const stored = await ctx.storage.list<Tally>({ prefix: MINUTE_PREFIX });
      for (const [key, tally] of stored) this.minutes.set(Number(key.slice(MINUTE_PREFIX.length)), tally);
      this.samples = (await ctx.storage.get<DiffSample[]>(SAMPLES_KEY)) ?? [];
    });
  }

  async record(batch: StatsBatch): Promise<void> {
    const minute = Math.floor(Date.now() / MINUTE_MS);
    const tally = mergeTally(this.minutes.get(minute) ?? {}, batch.tally);
    this.minutes.set(minute, tally);
    const writes: Record<string, unknown> = { [minuteKey(minute)]: tally };
    if (batch.samples.length > 0) {
      addSamples(this.samples, batch.samples);
      writes[SAMPLES_KEY] = this.samples;
    }
    await this.ctx.storage.put(writes);
    const expired = [...this.minutes.keys()].filter((m) => m <= minute - RETAINED_MINUTES);
    if (expired.length > 0) {
      for (const m of expired) this.minutes.delete(m);
      await this.ctx.storage.delete(expired.map(minuteKey));
    }
  }

  /** Sums the last `windowMinutes` minutes (1–60), the current one included. */
  async read(windowMinutes: number): Promise<StatsSnapshot> {
    const window = Math.min(Math.max(Math.trunc(windowMinutes) || 1, 1), RETAINED_MINUTES);
    const now = Date.now();
    const current = Math.floor(now / MINUTE_MS);
    const tally: Tally = {};
    for (const [minute, counts] of this.minutes) {
      if (minute > current - window) mergeTally(tally, counts);
    }
    const from = (current - window + 1) * MINUTE_MS;
    return { from, to: now, tally, samples: this.samples.filter((s) => s.at >= from).reverse() };
  }

  async reset(): Promise<void> {
    this.minutes.clear();
    this.samples = [];
    await this.ctx.storage.deleteAll();
  }
}

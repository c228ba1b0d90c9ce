import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { SLOT } from "./counters.js";
import type { ShardSnapshot } from "./durable-object.js";
import { createStatsBuffer, DEFAULT_FLUSH_MS, DEFAULT_SHARDS, MAX_SHARDS, statsSettings } from "./index.js";
import { shardName } from "./shards.js";

describe("statsSettings", () => {
  it("reads STATS_SHARDS and STATS_FLUSH_MS, falling back to the defaults on anything else", () => {
    expect(statsSettings({ STATS_SHARDS: "4", STATS_FLUSH_MS: "250" }, () => 0)).toEqual({
      shards: 4,
      flushMs: 250,
      shard: 0,
    });
    for (const bad of [undefined, "", " ", "0", "-3", "2.5", "abc", String(MAX_SHARDS + 1)]) {
      expect(statsSettings({ STATS_SHARDS: bad }, () => 0).shards, String(bad)).toBe(DEFAULT_SHARDS);
    }
    for (const bad of [undefined, "", "-1", "2.5", "abc", "60001"]) {
      expect(statsSettings({ STATS_FLUSH_MS: bad }, () => 0).flushMs, String(bad)).toBe(DEFAULT_FLUSH_MS);
    }
    expect(statsSettings({ STATS_FLUSH_MS: "0" }).flushMs).toBe(0);
  });

  it("draws every shard, and only shards that exist", () => {
    expect(statsSettings({ STATS_SHARDS: "16" }, () => 0.999_999_9).shard).toBe(15);
    const seen = new Set<number>();
    for (let i = 0; i < 16; i++) seen.add(statsSettings({ STATS_SHARDS: "16" }, () => i / 16).shard);
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 16 }, (_, i) => i));
  });
});

describe("createStatsBuffer", () => {
  it("is undefined without the MIRROR_STATS binding", () => {
    expect(createStatsBuffer({ ...env, MIRROR_STATS: undefined } as unknown as Env)).toBeUndefined();
  });

  // The file's first Durable Object call starts the object's worker: allow for a slow machine.
  it("flushes to the shard it was given", { timeout: 30_000 }, async () => {
    const buffer = createStatsBuffer(env, { shards: 8, flushMs: 0, shard: 5 });
    const pending: Promise<unknown>[] = [];
    buffer?.countRequest("r", true, (p) => pending.push(p));
    buffer?.sink((p) => pending.push(p))({
      route: "r",
      mirror: "m",
      requestId: "",
      kind: "sent",
      status: 200,
      latencyMs: 3,
      bodyBytes: 0,
    });
    await Promise.all(pending);
    const read = async (shard: number) =>
      (await env.MIRROR_STATS.get(env.MIRROR_STATS.idFromName(shardName(shard))).read(0)) as unknown as ShardSnapshot;
    const five = await read(5);
    expect(five.routes.map(([, route, requests]) => [route, requests])).toEqual([["r", 1]]);
    expect(five.mirrors[0]?.[3][SLOT.sent]).toBe(1);
    expect((await read(4)).routes).toEqual([]);
  });
});

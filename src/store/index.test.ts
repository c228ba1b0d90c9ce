import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { countingKv } from "../../test/worker/helpers.js";
import { PolicyValidationError, parseRoute } from "../policy/index.js";
import { SNAPSHOT_PATTERN_BUDGET } from "../policy/precedence.js";
import { compileRegex } from "../regex/index.js";
import { loadSnapshot, PolicyCache } from "./index.js";
import { clusterKey, POLICY_SNAPSHOT_KEY, routeKey, SESSION_EPOCH_KEY } from "./keys.js";
import { parseStoredRoute } from "./parse.js";
import { kvPolicyStore } from "./policy-store.js";
import { publishPolicies, reconcilePolicies } from "./publish.js";

const kv = env.MIRROR_CONFIG;
const store = kvPolicyStore(kv);

beforeEach(async () => {
  await reset();
});

function facts(path: string) {
  return { method: "GET", host: "h", path, headers: new Headers(), query: new URLSearchParams() };
}

describe("loadSnapshot", () => {
  it("reads routes and clusters from KV and skips invalid entries with their errors", async () => {
    await kv.put(clusterKey("canary"), JSON.stringify({ origin: "http://127.0.0.1:9002/" }));
    await kv.put(clusterKey("broken"), JSON.stringify({ origin: "ftp://x" }));
    await kv.put(
      routeKey("good"),
      JSON.stringify({ id: "good", match: { path: { type: "PathPrefix", value: "/g" } } }),
    );
    await kv.put(routeKey("bad"), JSON.stringify({ id: "bad", mirrors: [{ cluster: "canary", percent: 300 }] }));
    await kv.put(routeKey("mismatch"), JSON.stringify({ id: "other" }));
    await kv.put(routeKey("junk"), "{not json");
    await kv.put("unrelated", "x");
    await kv.put(SESSION_EPOCH_KEY, JSON.stringify({ epoch: "0".repeat(32), since: "2026-11-25T10:00:00.000Z" }));

    const snap = await loadSnapshot(store, 1);
    expect(snap.available).toBe(true);
    expect(snap.routes.size).toBe(1);
    expect(snap.routes.find(facts("/g/x"))?.id).toBe("good");
    expect([...snap.clusters]).toEqual([["canary", "http://127.0.0.1:9002"]]);
    const invalid = Object.fromEntries(snap.invalid.map((e) => [e.key, e.error]));
    expect(invalid).toEqual({
      [clusterKey("broken")]: "origin: must use http or https, not ftp",
      [routeKey("bad")]: "mirrors[0].percent: must be ≤ 100",
      [routeKey("mismatch")]: 'id: must equal the key suffix "mismatch"',
      [routeKey("junk")]: expect.stringMatching(/^is not valid JSON/),
    });
  });

  it("reads more routes than one bulk get or list page holds", async () => {
    const puts: Promise<void>[] = [];
    for (let i = 0; i < 1100; i++) puts.push(kv.put(routeKey(`r${i}`), JSON.stringify({ id: `r${i}` })));
    await Promise.all(puts);
    const snap = await loadSnapshot(store, 1);
    expect(snap.routes.size).toBe(1100);
    // 1,100 writes to workerd's local KV take seconds on a busy 2-core machine.
  }, 60_000);
});

describe("a broken route never harms the others", () => {
  it("leaves out a route whose header or query pattern cannot be compiled, and serves the rest", async () => {
    // Written around the validator, as a tool or an older version might have stored them.
    await kv.put(routeKey("good"), JSON.stringify({ id: "good", match: { path: { type: "PathPrefix", value: "/" } } }));
    await kv.put(
      routeKey("bad-header"),
      JSON.stringify({
        id: "bad-header",
        priority: 10,
        match: { headers: [{ name: "x-a", type: "RegularExpression", value: "(" }] },
      }),
    );
    await kv.put(
      routeKey("bad-query"),
      JSON.stringify({
        id: "bad-query",
        priority: 10,
        match: { query: [{ name: "q", type: "RegularExpression", value: "[" }] },
      }),
    );
    const snap = await loadSnapshot(store, 1);
    expect(snap.routes.find({ ...facts("/any"), headers: new Headers({ "x-a": "(" }) })?.id).toBe("good");
    expect(snap.invalid.map((e) => e.key).sort()).toEqual([routeKey("bad-header"), routeKey("bad-query")]);
  });

  it("reports a pattern the route table refuses exactly as validation does", async () => {
    const route = { id: "bad", match: { query: [{ name: "q", type: "RegularExpression", value: ".*a.{20}" }] } };
    await kv.put(routeKey("bad"), JSON.stringify(route));
    let validation = "";
    try {
      parseRoute(route);
    } catch (err) {
      expect(err).toBeInstanceOf(PolicyValidationError);
      validation = (err as Error).message;
    }
    expect(validation).toMatch(/^match\.query\[0\]\.value: is too complex/);
    expect((await loadSnapshot(store, 1)).invalid).toEqual([{ key: routeKey("bad"), error: validation }]);
  });
});

describe("the snapshot's compile budget", () => {
  // Five patterns under a route's cap together; four such routes fit the snapshot's budget.
  const values = ["(?:a?){250}", "(?:b?){250}", "(?:a?){100}", "(?:b?){100}", "(?:c?){100}"];
  const routeCost = values.reduce((sum, value) => sum + compileRegex(value).compileCost, 0);
  const costly = (id: string, priority: number) => ({
    id,
    priority,
    match: {
      path: { type: "PathPrefix", value: `/${id}` },
      headers: values.map((value, i) => ({ name: `x-${i}`, type: "RegularExpression", value })),
    },
  });

  it("leaves out the least preferred routes past it, logged with the reason; the others and plain routes are served", async () => {
    expect(Math.floor(SNAPSHOT_PATTERN_BUDGET / routeCost)).toBe(4);
    for (let i = 0; i < 6; i++) await kv.put(routeKey(`r${i}`), JSON.stringify(costly(`r${i}`, 10 - i)));
    await kv.put(
      routeKey("plain"),
      JSON.stringify({ id: "plain", priority: -5, match: { path: { type: "Exact", value: "/p" } } }),
    );
    const lines: string[] = [];
    const cache = new PolicyCache({ ttlMs: 0, log: (line) => lines.push(line) });
    const snap = await cache.get(kv, () => {});
    expect(snap.routes.size).toBe(5);
    expect(snap.routes.find(facts("/p"))?.id).toBe("plain");
    const skipped = `skipped: a policy snapshot's patterns may cost at most ${SNAPSHOT_PATTERN_BUDGET} to compile, and routes of higher precedence spent it (it ran out at route "r4")`;
    expect(lines.map((line) => JSON.parse(line))).toEqual(
      ["r4", "r5"].map((id) => ({
        msg: "edge-mirror.invalid_policy",
        key: routeKey(id),
        error: expect.stringContaining(skipped),
      })),
    );
    const headers = new Headers(values.map((_, i) => [`x-${i}`, ""]));
    expect(snap.routes.find({ ...facts("/r3"), headers })?.id).toBe("r3");
    expect(snap.routes.find({ ...facts("/r4"), headers })).toBeUndefined();
  });
});

describe("parseStoredRoute", () => {
  it("requires the id to equal the key", () => {
    expect(parseStoredRoute("a", '{"id":"a"}').id).toBe("a");
    expect(() => parseStoredRoute("a", '{"id":"b"}')).toThrowError(/must equal the key suffix/);
  });
});

describe("PolicyCache", () => {
  function countingKv(inner: KVNamespace) {
    const counts = { list: 0, get: 0 };
    const wrapped = {
      list: (opts: KVNamespaceListOptions) => {
        counts.list++;
        return inner.list(opts);
      },
      get: (keys: string[], type: "text") => {
        counts.get++;
        return inner.get(keys, type);
      },
    } as unknown as KVNamespace;
    return { kv: wrapped, counts };
  }

  it("serves from memory within the TTL, then serves stale while refreshing in the background", async () => {
    await kv.put(routeKey("a"), JSON.stringify({ id: "a" }));
    const { kv: counted, counts } = countingKv(kv);
    let now = 1000;
    const background: Promise<unknown>[] = [];
    const cache = new PolicyCache({ ttlMs: 5000, now: () => now, log: () => {} });
    const first = await cache.get(counted, (p) => background.push(p));
    expect(first.routes.size).toBe(1);
    const readsAfterFirst = counts.list + counts.get;

    for (let i = 0; i < 100; i++) await cache.get(counted, (p) => background.push(p));
    expect(counts.list + counts.get).toBe(readsAfterFirst);
    expect(cache.loads).toBe(1);

    await kv.put(routeKey("b"), JSON.stringify({ id: "b" }));
    now += 6000;
    const stale = await cache.get(counted, (p) => background.push(p));
    expect(stale.routes.size).toBe(1);
    expect(background).toHaveLength(1);
    await Promise.all(background);
    expect((await cache.get(counted, () => {})).routes.size).toBe(2);
    expect(cache.loads).toBe(2);
  });

  it("reuses the compiled routes when a refresh finds KV unchanged, and rebuilds when it changed", async () => {
    await kv.put(routeKey("a"), JSON.stringify({ id: "a" }));
    let now = 1000;
    const cache = new PolicyCache({ ttlMs: 5000, now: () => now, log: () => {} });
    const refreshNow = async () => {
      now += 6000;
      const background: Promise<unknown>[] = [];
      await cache.get(kv, (p) => background.push(p));
      await Promise.all(background);
      return cache.get(kv, () => {});
    };
    const first = await cache.get(kv, () => {});
    const unchanged = await refreshNow();
    expect(cache.loads).toBe(2);
    expect(unchanged.loadedAt).toBe(now);
    expect(unchanged.routes).toBe(first.routes);

    await kv.put(routeKey("a"), JSON.stringify({ id: "a", match: { path: { type: "Exact", value: "/a" } } }));
    const changed = await refreshNow();
    expect(changed.routes).not.toBe(first.routes);
    expect(changed.routes.size).toBe(1);
  });

  it("falls back to an empty, unavailable snapshot when KV throws, and keeps the last good one later", async () => {
    const failing = {
      list: () => Promise.reject(new Error("KV down")),
      get: () => Promise.reject(new Error("KV down")),
    } as unknown as KVNamespace;
    const lines: string[] = [];
    const cache = new PolicyCache({ ttlMs: 0, log: (l) => lines.push(l) });
    const snap = await cache.get(failing, () => {});
    expect(snap.available).toBe(false);
    expect(snap.routes.size).toBe(0);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ msg: "edge-mirror.policy_store_unavailable" });

    await kv.put(routeKey("kept"), JSON.stringify({ id: "kept" }));
    const good = await cache.get(kv, () => {});
    expect(good.routes.size).toBe(1);
    const afterFailure = await cache.get(failing, () => {});
    expect(afterFailure.routes.find(facts("/"))?.id).toBe("kept");
  });

  it("logs each invalid entry once, not on every refresh", async () => {
    await kv.put(routeKey("bad"), JSON.stringify({ id: "bad", timeoutMs: -1 }));
    const lines: string[] = [];
    const cache = new PolicyCache({ ttlMs: 0, log: (l) => lines.push(l) });
    await cache.get(kv, () => {});
    await cache.get(kv, () => {});
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { msg: "edge-mirror.invalid_policy", key: routeKey("bad"), error: "timeoutMs: must be ≥ 1" },
    ]);
  });

  it("logs a backend whose cluster is not defined once per snapshot, with its route and cluster", async () => {
    await kv.put(clusterKey("live"), JSON.stringify({ origin: "https://live.test" }));
    await kv.put(
      routeKey("split"),
      JSON.stringify({
        id: "split",
        backends: [{ cluster: "live" }, { cluster: "gone" }, { cluster: "idle", weight: 0 }],
      }),
    );
    const lines: string[] = [];
    const cache = new PolicyCache({ ttlMs: 0, log: (l) => lines.push(l) });
    const snapshot = await cache.get(kv, () => {});
    await cache.get(kv, () => {});
    const logged = { msg: "edge-mirror.unknown_backend_cluster", route: "split", cluster: "gone" };
    expect(snapshot.unknownBackends).toEqual([{ route: "split", cluster: "gone" }]);
    expect(lines.map((l) => JSON.parse(l))).toEqual([expect.objectContaining(logged)]);

    // A new snapshot (KV changed) says it again; defining the cluster ends it.
    await kv.put(routeKey("other"), JSON.stringify({ id: "other" }));
    await cache.get(kv, () => {});
    expect(lines).toHaveLength(2);
    await kv.put(clusterKey("gone"), JSON.stringify({ origin: "https://gone.test" }));
    expect((await cache.get(kv, () => {})).unknownBackends).toEqual([]);
    expect(lines).toHaveLength(2);
  });
});

describe("PolicyCache on the published policies", () => {
  const TTL = 5000;

  /** A cache whose clock the test moves, and a refresh that waits for the background load. */
  function clocked(lines: string[] = []) {
    let now = 1000;
    const cache = new PolicyCache({ ttlMs: TTL, now: () => now, log: (line) => lines.push(line) });
    return {
      cache,
      first: (from: KVNamespace) => cache.get(from, () => {}),
      async refresh(from: KVNamespace) {
        now += TTL;
        const background: Promise<unknown>[] = [];
        await cache.get(from, (p) => background.push(p));
        await Promise.all(background);
        return cache.get(from, () => {});
      },
    };
  }

  const route = (i: number, extra: object = {}) =>
    [
      routeKey(`r${i}`),
      JSON.stringify({ id: `r${i}`, match: { path: { type: "PathPrefix", value: `/r/${i}` } }, ...extra }),
    ] as const;

  it("stores 1,000 routes and refreshes 30 times with nothing changed: one key read each, no list", async () => {
    const entries = Array.from({ length: 1000 }, (_, i) => route(i));
    await Promise.all(Array.from({ length: 10 }, (_, c) => store.put(entries.slice(c * 100, c * 100 + 100))));
    expect(await publishPolicies(store, { now: 1 })).toMatchObject({ written: true, routes: 1000 });

    const { kv: counted, counts } = countingKv(kv);
    const { cache, first, refresh } = clocked();
    const served = await first(counted);
    expect(served.routes.size).toBe(1000);
    // A new isolate: the snapshot, one key.
    expect(counts).toEqual({ keysRead: 1, lists: 0, writes: 0 });
    for (let i = 0; i < 30; i++) expect((await refresh(counted)).routes).toBe(served.routes);
    // Thirty refreshes: the marker, one key each.
    expect(counts).toEqual({ keysRead: 31, lists: 0, writes: 0 });
    expect(cache.loads).toBe(31);
  }, 120_000);

  it("follows the marker: a published change is served at the next refresh, for two key reads", async () => {
    await store.put([route(1)]);
    await publishPolicies(store, { now: 1 });
    const { kv: counted, counts } = countingKv(kv);
    const { first, refresh } = clocked();
    expect((await first(counted)).routes.find(facts("/r/1/x"))?.id).toBe("r1");
    await store.put([route(2)]);
    await publishPolicies(store, { changes: new Map([route(2)]), now: 2 });
    const before = counts.keysRead;
    const changed = await refresh(counted);
    expect(changed.routes.find(facts("/r/2/x"))?.id).toBe("r2");
    expect(counts.keysRead - before).toBe(2);
    expect(counts.lists).toBe(0);
  });

  it("reads the snapshot again while it is behind its marker, and serves it once it catches up", async () => {
    await store.put([route(1)]);
    await publishPolicies(store, { now: 1 });
    const stale = (await kv.get(POLICY_SNAPSHOT_KEY)) as string;
    await store.put([route(2)]);
    await publishPolicies(store, { now: 2 });
    const fresh = (await kv.get(POLICY_SNAPSHOT_KEY)) as string;
    // This location still shows the old snapshot beside the new marker (KV propagation).
    await kv.put(POLICY_SNAPSHOT_KEY, stale);
    const { kv: counted, counts } = countingKv(kv);
    const { first, refresh } = clocked();
    expect((await first(counted)).routes.size).toBe(1);
    for (let i = 0; i < 3; i++) {
      const before = counts.keysRead;
      expect((await refresh(counted)).routes.size).toBe(1);
      // Never taken for "nothing changed": the marker and the snapshot, every time.
      expect(counts.keysRead - before).toBe(2);
    }
    await kv.put(POLICY_SNAPSHOT_KEY, fresh);
    expect((await refresh(counted)).routes.size).toBe(2);
    const caughtUp = counts.keysRead;
    await refresh(counted);
    expect(counts.keysRead - caughtUp).toBe(1);
  });

  it("keeps the last good snapshot when a refresh fails, or the snapshot it is sent to cannot be read", async () => {
    await store.put([route(1)]);
    await publishPolicies(store, { now: 1 });
    const lines: string[] = [];
    const { first, refresh } = clocked(lines);
    const good = await first(kv);
    expect(good.routes.size).toBe(1);

    // KV down.
    const down = countingKv(kv, () => true).kv;
    expect((await refresh(down)).routes).toBe(good.routes);
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["edge-mirror.policy_store_unavailable"]);

    // A marker that moved to a snapshot that is not one: served as before, logged once, and no
    // isolate falls back to reading every key.
    await store.put([route(2)]);
    await publishPolicies(store, { now: 2 });
    await kv.put(POLICY_SNAPSHOT_KEY, '{"format":1,"version":"tr');
    const { kv: counted, counts } = countingKv(kv);
    expect((await refresh(counted)).routes).toBe(good.routes);
    expect((await refresh(counted)).routes).toBe(good.routes);
    expect(counts).toEqual({ keysRead: 4, lists: 0, writes: 0 });
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual([
      "edge-mirror.policy_store_unavailable",
      "edge-mirror.policy_snapshot_unreadable",
    ]);

    // A load of every key that fails half-way (one bulk get of two) keeps it too.
    await store.put(Array.from({ length: 150 }, (_, i) => route(100 + i)));
    const { cache } = clocked(lines);
    const before = await cache.get(kv, () => {});
    await store.put([route(999)]);
    let gets = 0;
    const halfWay = countingKv(kv, (method, keys) => method === "get" && Array.isArray(keys) && ++gets === 2).kv;
    cache.invalidate();
    expect((await cache.get(halfWay, () => {})).routes).toBe(before.routes);
  });

  it("does not see an edit made straight in KV until a reconcile publishes it", async () => {
    await store.put([route(1)]);
    await publishPolicies(store, { now: 1 });
    const { first, refresh } = clocked();
    await first(kv);
    // `wrangler kv key put`: a new value, no metadata, no marker moved.
    await kv.put(...route(1, { match: { path: { type: "Exact", value: "/moved" } } }));
    expect((await refresh(kv)).routes.find(facts("/r/1/x"))?.id).toBe("r1");
    await reconcilePolicies(store, 2, () => {});
    const after = await refresh(kv);
    expect(after.routes.find(facts("/moved"))?.id).toBe("r1");
    expect(after.routes.find(facts("/r/1/x"))).toBeUndefined();
  });

  it("reads every key while nothing is published, and after this isolate's own write", async () => {
    await store.put([route(1)]);
    const { kv: counted, counts } = countingKv(kv);
    const { cache, first, refresh } = clocked();
    await first(counted);
    // The snapshot (none), then both prefixes listed and the one key read.
    expect(counts).toEqual({ keysRead: 2, lists: 2, writes: 0 });
    // The marker and the snapshot (none), then every key again.
    await refresh(counted);
    expect(counts).toEqual({ keysRead: 5, lists: 4, writes: 0 });

    await publishPolicies(store, { now: 1 });
    await refresh(counted);
    const published = { ...counts };
    await store.put([route(2)]);
    cache.invalidate();
    expect(cache.fresh(Number.MAX_SAFE_INTEGER)).toBeUndefined();
    // The next request waits for every key: the snapshot does not hold this write yet.
    expect((await cache.get(counted, () => {})).routes.size).toBe(2);
    expect(counts.lists - published.lists).toBe(2);
  });
});

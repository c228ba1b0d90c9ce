import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { PolicyValidationError, parseRoute } from "../policy/index.js";
import { SNAPSHOT_PATTERN_BUDGET } from "../policy/precedence.js";
import { compileRegex } from "../regex/index.js";
import { loadSnapshot, PolicyCache } from "./index.js";
import { clusterKey, routeKey, SESSION_EPOCH_KEY } from "./keys.js";
import { parseStoredRoute } from "./parse.js";
import { kvPolicyStore } from "./policy-store.js";

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

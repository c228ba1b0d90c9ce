import { createExecutionContext, createScheduledController, reset, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createWorker } from "../../src/index.js";
import { clusterKey, routeKey } from "../../src/store/keys.js";
import { kvPolicyStore } from "../../src/store/policy-store.js";
import { publishPolicies } from "../../src/store/publish.js";
import { countingKv, interceptFetch } from "./helpers.js";

/**
 * The worker on published policies, as deployed: a 5 s policy cache, the marker read on each
 * refresh, and the cron's reconcile picking up edits made straight in KV. The clock is the
 * test's, so that refreshes happen when the test says.
 */
const TTL = 5000;
const store = kvPolicyStore(env.MIRROR_CONFIG);
let now = Date.UTC(2026, 10, 25, 12);
const route = (backend: string) =>
  JSON.stringify({ id: "r", match: { path: { type: "PathPrefix", value: "/r" } }, backends: [{ cluster: backend }] });

beforeEach(async () => {
  await reset();
  vi.spyOn(Date, "now").mockImplementation(() => now);
  await store.put([
    [clusterKey("one"), '{"origin":"http://one.test"}'],
    [clusterKey("two"), '{"origin":"http://two.test"}'],
    [routeKey("r"), route("one")],
  ]);
  await publishPolicies(store, { now });
});
afterEach(() => vi.restoreAllMocks());

describe("the worker on published policies", () => {
  it("reads one key per refresh, and picks up an edit made straight in KV once the cron has run", async () => {
    const counted = countingKv(env.MIRROR_CONFIG);
    const environment = { ...env, MIRROR_CONFIG: counted.kv, POLICY_CACHE_TTL_MS: String(TTL) } as Env;
    const worker = createWorker({ policyLog: () => {} });
    const fetches = interceptFetch({
      "http://one.test": () => new Response("one"),
      "http://two.test": () => new Response("two"),
    });
    /** Which backend serves /r/x now, after every background refresh it started. */
    const served = async () => {
      const ctx = createExecutionContext();
      const body = await (await worker.fetch(new Request("https://edge.test/r/x"), environment, ctx)).text();
      await waitOnExecutionContext(ctx);
      return body;
    };
    try {
      expect(await served()).toBe("one");
      // The snapshot and the deployment key.
      expect(counted.counts).toEqual({ keysRead: 2, lists: 0, writes: 1 });

      // `wrangler kv key put`: nothing published, so no isolate sees it, however often it refreshes.
      await env.MIRROR_CONFIG.put(routeKey("r"), route("two"));
      for (let i = 0; i < 3; i++) {
        now += TTL;
        await served();
        expect(await served()).toBe("one");
      }
      // Three refreshes: the marker each.
      expect(counted.counts).toMatchObject({ keysRead: 5, lists: 0 });

      // The cron: the listing shows a key without edge-mirror's metadata; it is read and published.
      const ctx = createExecutionContext();
      worker.scheduled(createScheduledController({ scheduledTime: now, cron: "* * * * *" }), environment, ctx);
      await waitOnExecutionContext(ctx);
      expect(counted.counts).toMatchObject({ keysRead: 5 + 2 + 1, lists: 2, writes: 3 });

      // Within one TTL: the marker moved, and the snapshot is read.
      now += TTL;
      await served();
      expect(await served()).toBe("two");
      expect(counted.counts).toMatchObject({ keysRead: 10, lists: 2 });
      expect(fetches.seen.map((s) => new URL(s.url).host)).toContain("two.test");
    } finally {
      fetches.restore();
    }
  });

  it("runs the cron without a KV binding as a no-op", () => {
    const { MIRROR_CONFIG: _, ...unbound } = env;
    const ctx = createExecutionContext();
    expect(() =>
      createWorker().scheduled(createScheduledController({ cron: "* * * * *" }), unbound as Env, ctx),
    ).not.toThrow();
  });
});

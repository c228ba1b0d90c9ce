import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { clusterKey, DEPLOYMENT_KEY_KEY, parsePolicyKey, policyKey, routeKey, SESSION_EPOCH_KEY } from "./keys.js";
import { parseStoredPolicies } from "./parse.js";
import { kvPolicyStore } from "./policy-store.js";

const kv = env.MIRROR_CONFIG;
const store = kvPolicyStore(kv);

beforeEach(async () => {
  await reset();
});

describe("keys", () => {
  it("names routes and clusters, and tells policy keys from any other key", () => {
    expect(routeKey("api")).toBe(policyKey("route", "api"));
    expect(parsePolicyKey(routeKey("api"))).toEqual({ kind: "route", name: "api" });
    expect(parsePolicyKey(clusterKey("canary"))).toEqual({ kind: "cluster", name: "canary" });
    expect(parsePolicyKey(SESSION_EPOCH_KEY)).toBeUndefined();
    expect(parsePolicyKey("routes:api")).toBeUndefined();
  });
});

describe("kvPolicyStore", () => {
  it("puts, gets, lists, reads all and deletes routes and clusters", async () => {
    const progress: number[] = [];
    await store.put(
      [
        [clusterKey("canary"), '{"origin":"http://canary.test"}'],
        [routeKey("a"), '{"id":"a"}'],
        [routeKey("b"), '{"id":"b"}'],
      ],
      (done) => progress.push(done),
    );
    expect(progress).toEqual([1, 2, 3]);
    expect(await store.get(routeKey("a"))).toBe('{"id":"a"}');
    expect(await store.get(routeKey("zzz"))).toBeNull();
    expect(await store.list("route")).toEqual(["a", "b"]);
    expect(await store.list("cluster")).toEqual(["canary"]);
    expect([...(await store.readAll()).keys()]).toEqual([routeKey("a"), routeKey("b"), clusterKey("canary")]);
    await store.delete([routeKey("a")]);
    expect(await store.list("route")).toEqual(["b"]);
  });

  it.each([
    [SESSION_EPOCH_KEY, JSON.stringify({ epoch: "0".repeat(32), since: "2026-11-25T10:00:00.000Z" })],
    [DEPLOYMENT_KEY_KEY, JSON.stringify({ key: "0".repeat(64), since: "2026-11-25T10:00:00.000Z" })],
  ])("never lists, writes or deletes anything but policies: not %s", async (key, value) => {
    await kv.put(key, value);
    await kv.put(routeKey("a"), '{"id":"a"}');
    expect(parsePolicyKey(key)).toBeUndefined();
    expect([...(await store.readAll()).keys()]).toEqual([routeKey("a")]);
    await expect(store.put([[key, "{}"]])).rejects.toThrow(/not a policy key/);
    await expect(store.delete([key])).rejects.toThrow(/not a policy key/);
    await expect(store.get(key)).rejects.toThrow(/not a policy key/);
    // A refused batch writes nothing, not even its valid entries.
    await expect(
      store.put([
        [routeKey("b"), '{"id":"b"}'],
        ["other", "x"],
      ]),
    ).rejects.toThrow(/not a policy key/);
    expect(await store.list("route")).toEqual(["a"]);
    expect(await kv.get(key)).toBe(value);
  });
});

describe("parseStoredPolicies", () => {
  it("parses by key, skips what is not a policy, and keeps each invalid value with its rule", () => {
    const stored = parseStoredPolicies(
      new Map([
        [routeKey("a"), '{"id":"a"}'],
        [routeKey("b"), '{"id":"not-b"}'],
        [clusterKey("c"), '{"origin":"https://c.test/"}'],
        [clusterKey("d"), "{"],
        [SESSION_EPOCH_KEY, "{}"],
      ]),
    );
    expect([...stored.routes.keys()]).toEqual(["a"]);
    expect(stored.clusters.get("c")?.origin).toBe("https://c.test");
    expect(stored.invalid).toEqual([
      { key: routeKey("b"), error: 'id: must equal the key suffix "b"' },
      { key: clusterKey("d"), error: expect.stringMatching(/^is not valid JSON/) },
    ]);
  });
});

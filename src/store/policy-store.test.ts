import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import {
  clusterKey,
  DEPLOYMENT_KEY_KEY,
  POLICY_MARKER_KEY,
  POLICY_SNAPSHOT_KEY,
  parsePolicyKey,
  policyKey,
  routeKey,
  SESSION_EPOCH_KEY,
} from "./keys.js";
import { parseStoredPolicies } from "./parse.js";
import { kvPolicyStore } from "./policy-store.js";
import { sha256Hex } from "./published.js";

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
    expect([...(await store.readAll()).keys()]).toEqual([clusterKey("canary"), routeKey("a"), routeKey("b")]);
    expect([...(await store.getMany([routeKey("b"), routeKey("zzz")]))]).toEqual([[routeKey("b"), '{"id":"b"}']]);
    await store.delete([routeKey("a")]);
    expect(await store.list("route")).toEqual(["b"]);
  });

  it("stores each text with its SHA-256 as metadata, and lists keys with the hash they carry", async () => {
    await store.put([[routeKey("a"), '{"id":"a"}']]);
    // Written around the store, as `wrangler kv key put` or the dashboard write it: no metadata.
    await kv.put(routeKey("by-hand"), '{"id":"by-hand"}');
    const { metadata } = await kv.getWithMetadata(routeKey("a"));
    expect(metadata).toEqual({ sha256: await sha256Hex('{"id":"a"}') });
    expect([...(await store.listHashes())]).toEqual([
      [routeKey("a"), await sha256Hex('{"id":"a"}')],
      [routeKey("by-hand"), undefined],
    ]);
  });

  it("reads and writes the published snapshot and marker only through their own methods", async () => {
    expect(await store.readPublished()).toEqual({ marker: null, snapshot: null });
    await store.publish("snapshot", "marker");
    expect(await store.readPublished()).toEqual({ marker: "marker", snapshot: "snapshot" });
    await store.publish(undefined, "marker 2");
    expect([await store.readMarker(), await store.readSnapshot()]).toEqual(["marker 2", "snapshot"]);
    expect([...(await store.readAll()).keys()]).toEqual([]);
    await expect(store.put([[POLICY_SNAPSHOT_KEY, "{}"]])).rejects.toThrow(/not a policy key/);
    await expect(store.getMany([POLICY_MARKER_KEY])).rejects.toThrow(/not a policy key/);
  });

  it.each([
    [SESSION_EPOCH_KEY, JSON.stringify({ epoch: "0".repeat(32), since: "2026-11-25T10:00:00.000Z" })],
    [DEPLOYMENT_KEY_KEY, JSON.stringify({ key: "0".repeat(64), since: "2026-11-25T10:00:00.000Z" })],
    [POLICY_MARKER_KEY, JSON.stringify({ version: "0".repeat(64), publishedAt: "2026-11-25T10:00:00.000Z" })],
    [POLICY_SNAPSHOT_KEY, JSON.stringify({ format: 1, version: "0".repeat(64), publishedAt: "", entries: [] })],
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

import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { countingKv } from "../../test/worker/helpers.js";
import { clusterKey, POLICY_MARKER_KEY, POLICY_SNAPSHOT_KEY, routeKey } from "./keys.js";
import { kvPolicyStore } from "./policy-store.js";
import { PolicyPublisher, publishPolicies, reconcilePolicies } from "./publish.js";
import {
  decodeMarker,
  decodeSnapshot,
  encodeSnapshot,
  hashEntries,
  policyVersion,
  publishedPolicies,
  textsOf,
} from "./published.js";

const kv = env.MIRROR_CONFIG;

beforeEach(async () => {
  await reset();
});

const route = (id: string, extra: object = {}) => JSON.stringify({ id, ...extra });

async function published() {
  return {
    snapshot: decodeSnapshot(await kv.get(POLICY_SNAPSHOT_KEY)),
    marker: decodeMarker(await kv.get(POLICY_MARKER_KEY)),
  };
}

describe("the published snapshot", () => {
  it("has one version for one set of texts, whatever their order, and another for any change", async () => {
    const texts = new Map([
      [routeKey("b"), route("b")],
      [clusterKey("c"), '{"origin":"https://c.test"}'],
      [routeKey("a"), route("a")],
    ]);
    const a = await publishedPolicies(await hashEntries(texts), 1);
    const b = await publishedPolicies(await hashEntries(new Map([...texts].reverse())), 2);
    expect(a.version).toBe(b.version);
    expect(a.entries.map((e) => e.key)).toEqual([clusterKey("c"), routeKey("a"), routeKey("b")]);
    texts.set(routeKey("a"), route("a", { priority: 1 }));
    expect((await publishedPolicies(await hashEntries(texts), 1)).version).not.toBe(a.version);
    expect(decodeSnapshot(encodeSnapshot(a))).toEqual(a);
    expect(textsOf(a).get(routeKey("a"))).toBe(route("a"));
  });

  it.each([
    ["not JSON", "{"],
    ["another format", JSON.stringify({ format: 2, version: "0".repeat(64), publishedAt: "", entries: [] })],
    [
      "a key that is no policy's",
      JSON.stringify({
        format: 1,
        version: "0".repeat(64),
        publishedAt: "",
        entries: [["admin:x", "0".repeat(64), "{}"]],
      }),
    ],
    [
      "a key twice",
      JSON.stringify({
        format: 1,
        version: "0".repeat(64),
        publishedAt: "",
        entries: [
          ["route:a", "0".repeat(64), "{}"],
          ["route:a", "0".repeat(64), "{}"],
        ],
      }),
    ],
    [
      "a malformed hash",
      JSON.stringify({ format: 1, version: "0".repeat(64), publishedAt: "", entries: [["route:a", "xyz", "{}"]] }),
    ],
    [
      "a text that is not a string",
      JSON.stringify({
        format: 1,
        version: "0".repeat(64),
        publishedAt: "",
        entries: [["route:a", "0".repeat(64), {}]],
      }),
    ],
  ])("is all or nothing: %s is no snapshot", (_, text) => {
    expect(decodeSnapshot(text)).toBeUndefined();
  });
});

describe("publishPolicies", () => {
  const store = () => kvPolicyStore(kv);

  it("publishes the snapshot and then the marker, and writes nothing when nothing changed", async () => {
    await store().put([
      [clusterKey("c"), '{"origin":"https://c.test"}'],
      [routeKey("a"), route("a")],
    ]);
    const first = await publishPolicies(store(), { now: 1 });
    expect(first).toMatchObject({ written: true, snapshotWritten: true, routes: 1, clusters: 1, keysRead: 2 });
    const { snapshot, marker } = await published();
    expect(snapshot?.version).toBe(first.version);
    expect(marker?.version).toBe(first.version);
    expect(textsOf(snapshot as NonNullable<typeof snapshot>)).toEqual(await store().readAll());

    // The keys carry their hashes: a listing shows nothing new, and no text is read.
    const counted = countingKv(kv);
    const again = await publishPolicies(kvPolicyStore(counted.kv), { now: 2 });
    expect(again).toMatchObject({ written: false, version: first.version, keysRead: 0 });
    expect(counted.counts).toEqual({ keysRead: 2, lists: 2, writes: 0 });
  });

  it("reads only the keys written without edge-mirror's metadata, and drops deleted ones", async () => {
    const keys = Array.from({ length: 50 }, (_, i) => routeKey(`r${i}`));
    await store().put(keys.map((key) => [key, route(key.slice(6))]));
    await publishPolicies(store(), { now: 1 });
    // As `wrangler kv key put` writes: a new text, no metadata.
    await kv.put(routeKey("r7"), route("r7", { priority: 7 }));
    await kv.delete(routeKey("r9"));
    const counted = countingKv(kv);
    const result = await publishPolicies(kvPolicyStore(counted.kv), { now: 2 });
    expect(result).toMatchObject({ written: true, snapshotWritten: true, routes: 49, keysRead: 1 });
    // The marker and the snapshot, then the one key: 3 reads; 2 lists; 2 writes.
    expect(counted.counts).toEqual({ keysRead: 3, lists: 2, writes: 2 });
    const { snapshot } = await published();
    const texts = textsOf(snapshot as NonNullable<typeof snapshot>);
    expect(texts.get(routeKey("r7"))).toBe(route("r7", { priority: 7 }));
    expect(texts.has(routeKey("r9"))).toBe(false);
    expect(texts).toEqual(await store().readAll());
  });

  it("does not trust a published text that no longer hashes to what the key's metadata says", async () => {
    await store().put([[routeKey("a"), route("a")]]);
    const first = await publishPolicies(store(), { now: 1 });
    // A snapshot edited by hand: same hash, another text.
    const edited = (await kv.get(POLICY_SNAPSHOT_KEY)) as string;
    await kv.put(POLICY_SNAPSHOT_KEY, edited.replace('{\\"id\\":\\"a\\"}', '{\\"id\\":\\"a\\",\\"priority\\":9}'));
    const result = await publishPolicies(store(), { now: 2 });
    expect(result).toMatchObject({ written: true, keysRead: 1, version: first.version });
    expect(
      textsOf((await published()).snapshot as NonNullable<Awaited<ReturnType<typeof published>>["snapshot"]>),
    ).toEqual(new Map([[routeKey("a"), route("a")]]));
  });

  it("lays the caller's own writes over a listing that does not show them yet", async () => {
    await store().put([[routeKey("a"), route("a")]]);
    const changes = new Map<string, string | null>([
      [routeKey("new"), route("new")],
      [routeKey("a"), null],
    ]);
    const result = await publishPolicies(store(), { changes, now: 1 });
    expect(result).toMatchObject({ routes: 1, keysRead: 0 });
    expect([...textsOf((await published()).snapshot as never).keys()]).toEqual([routeKey("new")]);
  });

  it("rewrites the marker alone when it is behind the snapshot", async () => {
    await store().put([[routeKey("a"), route("a")]]);
    const first = await publishPolicies(store(), { now: 1 });
    await kv.put(POLICY_MARKER_KEY, JSON.stringify({ version: "f".repeat(64), publishedAt: "" }));
    const result = await publishPolicies(store(), { now: 2 });
    expect(result).toMatchObject({ written: true, snapshotWritten: false, version: first.version });
    expect((await published()).marker?.version).toBe(first.version);
  });
});

describe("PolicyPublisher", () => {
  it("coalesces a burst of writes into few publications, and retries one KV refused", async () => {
    const store = kvPolicyStore(kv);
    let now = 0;
    const slept: number[] = [];
    // Every other write of the snapshot is refused, as KV refuses a second write of a key within a second.
    let snapshotPuts = 0;
    const refusing = countingKv(
      kv,
      (method, key) => method === "put" && key === POLICY_SNAPSHOT_KEY && ++snapshotPuts % 2 === 1,
    );
    const lines: string[] = [];
    const publisher = new PolicyPublisher({
      now: () => now,
      sleep: async (ms) => {
        slept.push(ms);
        now += ms;
      },
      log: (line) => lines.push(line),
    });
    const written = Array.from({ length: 10 }, (_, i) => [routeKey(`r${i}`), route(`r${i}`)] as const);
    await store.put(written);
    // Ten admin writes in a burst, each handing its publication to its own waitUntil.
    const work: Promise<unknown>[] = [];
    for (const [key, text] of written) publisher.changed(kvPolicyStore(refusing.kv), key, text, (p) => work.push(p));
    await Promise.all(work);
    expect(lines).toEqual([]);
    const { snapshot, marker } = await published();
    expect(marker?.version).toBe(snapshot?.version);
    expect(textsOf(snapshot as never)).toEqual(await store.readAll());
    expect(snapshot?.entries).toHaveLength(10);
    // The first publication was refused and retried a second later, with the nine writes that
    // came meanwhile: two snapshot writes in all, the first refused.
    expect(snapshotPuts).toBe(2);
    expect(slept).toEqual([1100]);
  });

  it("logs a publication that keeps failing, and never throws: the write itself stands", async () => {
    const store = kvPolicyStore(countingKv(kv, (method) => method === "put").kv);
    const lines: string[] = [];
    const publisher = new PolicyPublisher({ sleep: async () => {}, log: (line) => lines.push(line) });
    const work: Promise<unknown>[] = [];
    publisher.changed(store, routeKey("a"), route("a"), (p) => work.push(p));
    await Promise.all(work);
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { msg: "edge-mirror.policy_publish_failed", error: expect.stringContaining("429"), changes: [routeKey("a")] },
    ]);
  });
});

describe("reconcilePolicies", () => {
  it("publishes an edit made straight in KV, logs one line, and is silent when nothing changed", async () => {
    const store = kvPolicyStore(kv);
    await store.put([[routeKey("a"), route("a")]]);
    const lines: string[] = [];
    await reconcilePolicies(store, 1, (line) => lines.push(line));
    await reconcilePolicies(store, 2, (line) => lines.push(line));
    expect(lines).toHaveLength(1);
    await kv.put(routeKey("b"), route("b"));
    const result = await reconcilePolicies(store, 3, (line) => lines.push(line));
    expect(result).toMatchObject({ written: true, routes: 2, keysRead: 1 });
    expect(JSON.parse(lines[1] as string)).toEqual({
      msg: "edge-mirror.policies_published",
      by: "reconcile",
      version: await policyVersion(await hashEntries(await store.readAll())),
      routes: 2,
      clusters: 0,
      keysRead: 1,
    });
  });
});

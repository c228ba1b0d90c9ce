import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { copyAddress, EMPTY_BODY_DIGEST, signMarker, verifyMarker } from "../headers/marker.js";
import { DEPLOYMENT_KEY_KEY } from "../store/keys.js";
import { DEPLOYMENT_KEY_REREAD_MS, DEPLOYMENT_KEY_RETRY_MS, DeploymentSecret } from "./index.js";

const kv = env.MIRROR_CONFIG;

beforeEach(async () => {
  await reset();
});

/** An isolate's secret with its own clock, its log lines, and the writes it left for `waitUntil`. */
function isolate(configured?: string) {
  const clock = { now: 1_000_000 };
  const lines: string[] = [];
  const pending: Promise<unknown>[] = [];
  const secret = new DeploymentSecret(configured, { now: () => clock.now, log: (line) => lines.push(line) });
  const load = async (from: KVNamespace = kv) => {
    await secret.load(from, (p) => pending.push(p));
    await Promise.all(pending.splice(0));
  };
  return { secret, clock, lines, load };
}

const copy = { ...copyAddress("POST", new URL("https://edge.example.com/pay/transfer")), route: "pay" };

/** A marker `from` signs for `copy`, and whether `to` takes it. */
async function accepts(from: DeploymentSecret, to: DeploymentSecret): Promise<boolean> {
  const key = await from.signingKey();
  if (!key) throw new Error("no signing key");
  const seconds = Math.floor(Date.now() / 1000);
  const marker = await signMarker(key, { ...copy, bodyDigest: EMPTY_BODY_DIGEST }, seconds);
  return (await verifyMarker(marker, copy, await to.verifyingKeys(), Date.now())) !== undefined;
}

/** A KV namespace that fails every call, and counts them. */
function unreachable() {
  let calls = 0;
  const fail = () => {
    calls++;
    return Promise.reject(new Error("KV unavailable"));
  };
  return { kv: { get: fail, put: fail, list: fail } as unknown as KVNamespace, calls: () => calls };
}

describe("with MIRROR_MARKER_KEY", () => {
  it("derives the keys from it alone: no KV call, and the same keys in every isolate", async () => {
    const broken = unreachable();
    const a = isolate("shared-marker-key-0123456789abcdef");
    const b = isolate("shared-marker-key-0123456789abcdef");
    await a.load(broken.kv);
    await b.load(broken.kv);
    expect(broken.calls()).toBe(0);
    expect(a.secret.stickyKey).toEqual(b.secret.stickyKey);
    expect(await accepts(a.secret, b.secret)).toBe(true);
    expect(await kv.get(DEPLOYMENT_KEY_KEY)).toBeNull();
  });

  it("gives another deployment's key other keys", async () => {
    const a = isolate("shared-marker-key-0123456789abcdef");
    const b = isolate("another-deployments-key-0123456789");
    await a.load();
    await b.load();
    expect(a.secret.stickyKey).not.toEqual(b.secret.stickyKey);
    expect(await accepts(a.secret, b.secret)).toBe(false);
  });
});

describe("without MIRROR_MARKER_KEY", () => {
  it("creates the deployment key in KV on first use, and every later isolate reads and shares it", async () => {
    const first = isolate();
    await first.load();
    const stored = JSON.parse((await kv.get(DEPLOYMENT_KEY_KEY)) as string);
    expect(stored).toEqual({ key: expect.stringMatching(/^[0-9a-f]{64}$/), since: expect.any(String) });

    const second = isolate();
    await second.load();
    expect(JSON.parse((await kv.get(DEPLOYMENT_KEY_KEY)) as string)).toEqual(stored);
    expect(second.secret.stickyKey).toEqual(first.secret.stickyKey);
    expect(await accepts(first.secret, second.secret)).toBe(true);
    expect(await accepts(second.secret, first.secret)).toBe(true);
  });

  it("converges when two isolates created a key at once, and still takes markers under the key it replaced", async () => {
    const a = isolate();
    const b = isolate();
    // Both find none and create one; KV keeps the last write.
    const pending: Promise<unknown>[] = [];
    await Promise.all([a.secret.load(kv, (p) => pending.push(p)), b.secret.load(kv, (p) => pending.push(p))]);
    await Promise.all(pending);
    expect(a.secret.stickyKey).not.toEqual(b.secret.stickyKey);
    const seconds = Math.floor(Date.now() / 1000);
    const early = new Map<DeploymentSecret, string>();
    for (const side of [a, b]) {
      const key = (await side.secret.signingKey()) as CryptoKey;
      early.set(side.secret, await signMarker(key, { ...copy, bodyDigest: EMPTY_BODY_DIGEST }, seconds));
    }

    for (const side of [a, b]) {
      side.clock.now += DEPLOYMENT_KEY_REREAD_MS;
      await side.load();
    }
    expect(a.secret.stickyKey).toEqual(b.secret.stickyKey);
    expect(await accepts(a.secret, b.secret)).toBe(true);
    expect(await accepts(b.secret, a.secret)).toBe(true);
    // Each still takes the markers it made before: a copy signed then may come back now.
    for (const side of [a.secret, b.secret]) {
      const keys = await side.verifyingKeys();
      expect(await verifyMarker(early.get(side) as string, copy, keys, Date.now())).toBe(EMPTY_BODY_DIGEST);
    }
  });

  it("reads KV once, then only every DEPLOYMENT_KEY_REREAD_MS, in the background", async () => {
    let reads = 0;
    const counted = {
      get: (key: string, type: "text") => {
        reads++;
        return kv.get(key, type);
      },
      put: (key: string, value: string) => kv.put(key, value),
    } as unknown as KVNamespace;
    const one = isolate();
    await one.load(counted);
    expect(reads).toBe(1);
    for (let i = 0; i < 50; i++) expect(one.secret.load(counted, () => {})).toBeUndefined();
    expect(reads).toBe(1);
    one.clock.now += DEPLOYMENT_KEY_REREAD_MS;
    const background: Promise<unknown>[] = [];
    // Due: the re-read is handed to waitUntil, and the request does not wait for it.
    expect(one.secret.load(counted, (p) => background.push(p))).toBeUndefined();
    await Promise.all(background);
    expect(reads).toBe(2);
  });

  it("replaces a malformed stored value", async () => {
    await kv.put(DEPLOYMENT_KEY_KEY, '{"key":"short"}');
    const one = isolate();
    await one.load();
    expect(one.secret.stickyKey).toBeDefined();
    expect(JSON.parse((await kv.get(DEPLOYMENT_KEY_KEY)) as string).key).toMatch(/^[0-9a-f]{64}$/);
  });

  it("knows no key while KV cannot be read: logged, no marker trusted, tried again later", async () => {
    const broken = unreachable();
    const one = isolate();
    await one.load(broken.kv);
    expect(one.secret.stickyKey).toBeUndefined();
    expect(await one.secret.signingKey()).toBeUndefined();
    expect(await one.secret.verifyingKeys()).toEqual([]);
    expect(one.lines.map((line) => JSON.parse(line).msg)).toEqual(["edge-mirror.deployment_key_unavailable"]);
    expect(one.secret.load(broken.kv, () => {})).toBeUndefined();
    expect(broken.calls()).toBe(1);
    one.clock.now += DEPLOYMENT_KEY_RETRY_MS;
    await one.load();
    expect(one.secret.stickyKey).toBeDefined();
  });
});

import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { deploymentKey } from "./deployment-key.js";
import { DEPLOYMENT_KEY_KEY, SESSION_EPOCH_KEY } from "./keys.js";
import { sessionEpoch } from "./session-epoch.js";

const kv = env.MIRROR_CONFIG;

beforeEach(async () => {
  await reset();
});

describe("KvRandomValue", () => {
  it("stores the session epoch and the deployment key as docs/storage-schema.md shows them, and reads them back", async () => {
    const epoch = sessionEpoch.create();
    const key = deploymentKey.create();
    expect(epoch).toMatch(/^[0-9a-f]{32}$/);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    expect(sessionEpoch.create()).not.toBe(epoch);

    const now = Date.UTC(2026, 10, 25, 10);
    await sessionEpoch.write(kv, epoch, now);
    await deploymentKey.write(kv, key, now);
    expect(await kv.get(SESSION_EPOCH_KEY)).toBe(`{"epoch":"${epoch}","since":"2026-11-25T10:00:00.000Z"}`);
    expect(await kv.get(DEPLOYMENT_KEY_KEY)).toBe(`{"key":"${key}","since":"2026-11-25T10:00:00.000Z"}`);
    expect(await sessionEpoch.read(kv)).toBe(epoch);
    expect(await deploymentKey.read(kv)).toBe(key);
  });

  it("reads a missing or malformed value as none", async () => {
    expect(await sessionEpoch.read(kv)).toBeUndefined();
    for (const stored of [
      "not json",
      "null",
      "7",
      "{}",
      `{"key":"${"a".repeat(32)}"}`,
      `{"epoch":"${"a".repeat(31)}"}`,
      `{"epoch":"${"a".repeat(64)}"}`,
      `{"epoch":"${"A".repeat(32)}"}`,
      `{"epoch":${"1".repeat(32)}}`,
    ]) {
      await kv.put(SESSION_EPOCH_KEY, stored);
      expect(await sessionEpoch.read(kv), stored).toBeUndefined();
    }
    await kv.put(SESSION_EPOCH_KEY, `{"epoch":"${"a".repeat(32)}","since":"whenever"}`);
    expect(await sessionEpoch.read(kv)).toBe("a".repeat(32));
  });
});

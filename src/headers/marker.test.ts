import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { parseSettings } from "../isolate/index.js";
import { deriveKeys } from "../secret/index.js";
import {
  bodyDigest,
  type CopyAddress,
  copyAddress,
  EMPTY_BODY_DIGEST,
  MARKER_MAX_AGE_S,
  markerKeySetting,
  signMarker,
  verifyMarker,
} from "./marker.js";

const NOW_S = 1_795_598_309;
const NOW_MS = NOW_S * 1000;
const key = (await deriveKeys("deployment-secret-0123456789abcdef")).marker;
const otherKey = (await deriveKeys("another-deployments-secret-0123456789")).marker;
const body = new TextEncoder().encode('{"amount":100}');
const digest = await bodyDigest(body);

/** The copy a mirror received: POST https://canary.internal:8443/c/x?a=1 with `body`. */
const copy = copyAddress("POST", new URL("https://canary.internal:8443/c/x?a=1"));
const marker = await signMarker(key, { ...copy, route: "canary", bodyDigest: digest }, NOW_S);

describe("copyAddress", () => {
  it("takes the host name lower-cased without the port, and path and query as the URL parser writes them", () => {
    expect(copyAddress("GET", new URL("https://Canary.Internal:8443/a/./b/../c%7e?q=%41&x"))).toEqual({
      method: "GET",
      host: "canary.internal",
      pathAndQuery: "/a/c%7e?q=%41&x",
    });
    // The sender builds its URL from a string, the receiver from request.url: the same text.
    const sent = "https://canary.internal/v2/users/a%2Fb/%E2%9C%93/?b=2&a=1&sp=a+b";
    expect(copyAddress("PUT", new URL(sent))).toEqual(copyAddress("PUT", new URL(new Request(sent).url)));
  });
});

describe("bodyDigest", () => {
  it("is the SHA-256 of the bytes, and of no bytes for no body", async () => {
    expect(await bodyDigest(null)).toBe(EMPTY_BODY_DIGEST);
    expect(await bodyDigest(new Uint8Array(0))).toBe(EMPTY_BODY_DIGEST);
    expect(await bodyDigest([new Uint8Array(0)])).toBe(EMPTY_BODY_DIGEST);
    expect(await bodyDigest(new TextEncoder().encode("abc"))).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("hashes a body held in parts as the bytes they make in order, without joining them", async () => {
    const bytes = crypto.getRandomValues(new Uint8Array(50_000));
    const parts = [bytes.subarray(0, 1), bytes.subarray(1, 20_000), new Uint8Array(0), bytes.subarray(20_000)];
    expect(await bodyDigest(parts)).toBe(await bodyDigest(bytes));
    expect(await bodyDigest([bytes.subarray(0, 7)])).toBe(await bodyDigest(bytes.subarray(0, 7)));
  });
});

describe("a marker", () => {
  it("reads <route>;t=<seconds>;b=<body digest>;sig=<HMAC>", () => {
    expect(marker).toMatch(new RegExp(`^canary;t=${NOW_S};b=${digest};sig=[0-9a-f]{64}$`));
  });

  it("verifies on the copy it was made for, and vouches for that copy's body digest", async () => {
    expect(await verifyMarker(marker, copy, [key], NOW_MS)).toBe(digest);
    // Among the keys an isolate has seen, in any order.
    expect(await verifyMarker(marker, copy, [otherKey, key], NOW_MS)).toBe(digest);
  });

  it.each<[string, Partial<CopyAddress>]>([
    ["another method", { method: "PUT" }],
    ["another host", { host: "pay.internal" }],
    ["another path", { pathAndQuery: "/pay/transfer?a=1" }],
    ["another query", { pathAndQuery: "/c/x?a=2" }],
    ["no query", { pathAndQuery: "/c/x" }],
  ])("counts for nothing on %s", async (_, change) => {
    expect(await verifyMarker(marker, { ...copy, ...change }, [key], NOW_MS)).toBeUndefined();
  });

  it("counts for nothing with another body: the digest it vouches for is not that body's, and cannot be changed", async () => {
    const other = await bodyDigest(new TextEncoder().encode('{"amount":100000}'));
    expect(await verifyMarker(marker, copy, [key], NOW_MS)).not.toBe(other);
    const swapped = marker.replace(`b=${digest}`, `b=${other}`);
    expect(await verifyMarker(swapped, copy, [key], NOW_MS)).toBeUndefined();
  });

  it("counts for nothing more than 60 s from its time", async () => {
    expect(MARKER_MAX_AGE_S).toBe(60);
    expect(await verifyMarker(marker, copy, [key], NOW_MS + 60_000)).toBe(digest);
    expect(await verifyMarker(marker, copy, [key], NOW_MS + 61_000)).toBeUndefined();
    expect(await verifyMarker(marker, copy, [key], NOW_MS - 61_000)).toBeUndefined();
    // The old window: a marker an audit sink received five minutes ago.
    expect(await verifyMarker(marker, copy, [key], NOW_MS + 299_000)).toBeUndefined();
  });

  it("counts for nothing under another key, or with no key", async () => {
    expect(await verifyMarker(marker, copy, [otherKey], NOW_MS)).toBeUndefined();
    expect(await verifyMarker(marker, copy, [], NOW_MS)).toBeUndefined();
  });

  it("counts for nothing with its route or time changed", async () => {
    expect(await verifyMarker(marker.replace("canary;", "pay;"), copy, [key], NOW_MS)).toBeUndefined();
    expect(await verifyMarker(marker.replace(`t=${NOW_S}`, `t=${NOW_S + 1}`), copy, [key], NOW_MS)).toBeUndefined();
  });

  it.each([
    ["the route id alone", "canary"],
    ["the old format", `canary;t=${NOW_S};sig=${"a".repeat(64)}`],
    ["upper-case hex", marker.toUpperCase()],
    ["a trailing field", `${marker};x=1`],
    ["an empty value", ""],
  ])("is not read from %s", async (_, value) => {
    expect(await verifyMarker(value, copy, [key], NOW_MS)).toBeUndefined();
  });
});

describe("MIRROR_MARKER_KEY", () => {
  it("is refused under 32 characters: said once, treated as absent", () => {
    const lines: string[] = [];
    expect(markerKeySetting("k", (line) => lines.push(line))).toBeUndefined();
    expect(markerKeySetting("k".repeat(31), (line) => lines.push(line))).toBeUndefined();
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ msg: "edge-mirror.invalid_setting", name: "MIRROR_MARKER_KEY" }),
      expect.objectContaining({ msg: "edge-mirror.invalid_setting", name: "MIRROR_MARKER_KEY" }),
    ]);
    // The key itself is never logged.
    expect(lines.join("")).not.toContain("kkk");
  });

  it("a short one leaves an isolate on the deployment key in KV", () => {
    const stderr = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      expect(parseSettings({ ...env, MIRROR_MARKER_KEY: "k" } as Env).markerKey).toBeUndefined();
      expect(stderr).toHaveBeenCalledWith(expect.stringContaining('"name":"MIRROR_MARKER_KEY"'));
      const long = "k".repeat(32);
      expect(parseSettings({ ...env, MIRROR_MARKER_KEY: long } as Env).markerKey).toBe(long);
    } finally {
      stderr.mockRestore();
    }
  });

  it("is taken at 32 characters or more; absent is absent, without a word", () => {
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    expect(markerKeySetting("k".repeat(32), log)).toBe("k".repeat(32));
    expect(markerKeySetting(undefined, log)).toBeUndefined();
    expect(markerKeySetting("", log)).toBeUndefined();
    expect(lines).toEqual([]);
  });
});

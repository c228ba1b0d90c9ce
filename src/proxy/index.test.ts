import { describe, expect, it, vi } from "vitest";
import { UpstreamError } from "../errors/index.js";
import { parseRoute } from "../policy/index.js";
import {
  forwardToPrimary,
  pickBackend,
  primaryOrigin,
  RUNTIME_DRAINS_BYTES,
  rawPathAndQuery,
  relayBody,
} from "./index.js";

describe("rawPathAndQuery", () => {
  it.each([
    ["https://h.test/a%2Fb/%7Euser?x=1&x=2&y=%20#frag", "/a%2Fb/%7Euser?x=1&x=2&y=%20"],
    ["https://h.test:8443/", "/"],
    ["https://h.test?q=1", "/?q=1"],
    ["http://[::1]:8787/api/v1/push", "/api/v1/push"],
    ["https://h.test/p?redirect=https://other.test/x", "/p?redirect=https://other.test/x"],
  ])("%s → %s", (url, expected) => {
    expect(rawPathAndQuery(url)).toBe(expected);
  });
});

describe("pickBackend", () => {
  const backends = [
    { cluster: "a", weight: 1 },
    { cluster: "b", weight: 3 },
    { cluster: "z", weight: 0 },
  ];
  it("splits by weight and never picks weight 0", () => {
    expect(pickBackend(backends, () => 0)?.cluster).toBe("a");
    expect(pickBackend(backends, () => 0.24)?.cluster).toBe("a");
    expect(pickBackend(backends, () => 0.26)?.cluster).toBe("b");
    expect(pickBackend(backends, () => 0.999999)?.cluster).toBe("b");
  });
  it("returns nothing when every weight is 0", () => {
    expect(pickBackend([{ cluster: "z", weight: 0 }], () => 0.5)).toBeUndefined();
  });
});

describe("primaryOrigin", () => {
  const clusters = new Map([["svc", "http://127.0.0.1:9001"]]);
  const url = new URL("https://edge.example.com/x");
  it("prefers route backends, then PRIMARY_ORIGIN, then the request URL", () => {
    const route = parseRoute({ id: "r", backends: [{ cluster: "svc" }] });
    expect(primaryOrigin(route, clusters, "http://fallback.test", url, Math.random)).toBe("http://127.0.0.1:9001");
    expect(primaryOrigin(parseRoute({ id: "r" }), clusters, "http://fallback.test:81", url, Math.random)).toBe(
      "http://fallback.test:81",
    );
    expect(primaryOrigin(undefined, clusters, "", url, Math.random)).toBe("https://edge.example.com");
  });
  it("throws typed errors for an undefined cluster and for all-zero weights", () => {
    const unknown = parseRoute({ id: "r", backends: [{ cluster: "nope" }] });
    expect(() => primaryOrigin(unknown, clusters, "", url, Math.random)).toThrowError(UpstreamError);
    const zero = parseRoute({ id: "r", backends: [{ cluster: "svc", weight: 0 }] });
    expect(() => primaryOrigin(zero, clusters, "", url, Math.random)).toThrowError(/no backend with weight > 0/);
    expect(new UpstreamError("no_backend", "x").status).toBe(500);
  });
});

/** A pull source of `chunks` chunks of `size` bytes that counts how often it was pulled. */
function countingSource(chunks: number, size = 1024) {
  let pulls = 0;
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        pulls++;
        if (sent === chunks) return controller.close();
        controller.enqueue(new Uint8Array(size).fill(sent++ % 256));
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, pulls: () => pulls, sent: () => sent };
}

describe("relayBody", () => {
  it("forwards every byte, with the declared length", async () => {
    const source = countingSource(8, 64 * 1024);
    const relayed = relayBody(source.stream, String(8 * 64 * 1024));
    expect(relayed.stream).not.toBe(source.stream);
    const got = new Uint8Array(await new Response(relayed.stream).arrayBuffer());
    await relayed.done;
    expect(got.byteLength).toBe(8 * 64 * 1024);
    expect(got[7 * 64 * 1024]).toBe(7);
  });

  it("leaves a body the runtime drains by itself as it is", () => {
    const source = countingSource(1);
    expect(relayBody(source.stream, String(RUNTIME_DRAINS_BYTES)).stream).toBe(source.stream);
    expect(relayBody(countingSource(1).stream, String(RUNTIME_DRAINS_BYTES + 1)).stream).not.toBe(source.stream);
  });

  it("reads no further ahead than the primary does", async () => {
    const source = countingSource(1000);
    relayBody(source.stream, null);
    await new Promise((r) => setTimeout(r, 20));
    expect(source.sent()).toBeLessThanOrEqual(2);
  });

  it("after a failure, reads the rest of the upload and drops it", async () => {
    const source = countingSource(1000);
    const relayed = relayBody(source.stream, String(1000 * 1024));
    await relayed.discardRest(1000);
    expect(source.sent()).toBe(1000);
  });

  it("gives up on an upload that does not finish in time", async () => {
    const stalled = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) });
    const relayed = relayBody(stalled, null);
    const started = Date.now();
    await relayed.discardRest(50);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("forwardToPrimary drains the client's body before answering a refused connection", async () => {
    const source = countingSource(300);
    const spy = vi.spyOn(globalThis, "fetch").mockRejectedValue(new TypeError("Network connection lost."));
    try {
      const relayed = relayBody(source.stream, String(300 * 1024));
      await expect(
        forwardToPrimary({
          url: "http://p.test/",
          method: "POST",
          headers: new Headers(),
          body: relayed,
          timeoutMs: 1000,
        }),
      ).rejects.toMatchObject({ code: "primary_unreachable" });
      expect(source.sent()).toBe(300);
    } finally {
      spy.mockRestore();
    }
  });
});

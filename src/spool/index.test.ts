import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { recordingSpool } from "../../test/worker/helpers.js";
import { MemoryBudget } from "../body/budget.js";
import {
  copyId,
  INLINE_MESSAGE_BYTES,
  isRetryableStatus,
  MAX_BATCH_BYTES,
  MAX_BATCH_MESSAGES,
  messageBytes,
  parseSpooledCopy,
  retryDelaySeconds,
  SPOOL_MESSAGE_VERSION,
  Spool,
  type SpooledCopy,
} from "./index.js";

const copy: Omit<SpooledCopy, "body"> = {
  v: SPOOL_MESSAGE_VERSION,
  route: "rw",
  mirror: "mimir-secondary",
  requestId: "8f00-LHR",
  method: "POST",
  url: "http://mimir.test/api/v1/push",
  headers: [
    ["content-type", "application/x-protobuf"],
    ["x-edge-mirror-id", copyId("8f00-LHR", "mimir-secondary")],
  ],
  bodyDigest: "0".repeat(64),
  firstSeen: 1_700_000_000_000,
  sentInline: true,
  timeoutMs: 5000,
  retry: { maxAttempts: 10, firstDelaySeconds: 5 },
};

/** An hour before the first attempt: nothing these tests spool is consumed during the run. */
const LATER = 3600;

describe("the schedule", () => {
  it("retries no answer's stand-ins (408, 425, 429) and every 5xx; any other answer is final", () => {
    const retried = [408, 425, 429, 500, 502, 503, 504, 599].filter(isRetryableStatus);
    expect(retried).toEqual([408, 425, 429, 500, 502, 503, 504, 599]);
    expect([200, 204, 301, 400, 401, 403, 404, 409, 413, 422].filter(isRetryableStatus)).toEqual([]);
  });

  it("waits firstDelaySeconds, then twice as long at each attempt, never more than an hour", () => {
    const retry = { maxAttempts: 100, firstDelaySeconds: 5 };
    expect(Array.from({ length: 12 }, (_, i) => retryDelaySeconds(retry, i))).toEqual([
      5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600,
    ]);
    // The defaults' ten attempts come within 85 minutes of the failure: an hour's outage is covered.
    const waits = Array.from({ length: 10 }, (_, i) => retryDelaySeconds({ maxAttempts: 10, firstDelaySeconds: 5 }, i));
    expect(waits.reduce((a, b) => a + b, 0)).toBe(5115);
    expect(retryDelaySeconds(retry, 1000)).toBe(3600);
  });

  it("honours a longer Retry-After in seconds, up to the hour, and ignores dates and junk", () => {
    const retry = { maxAttempts: 10, firstDelaySeconds: 5 };
    expect(retryDelaySeconds(retry, 0, "120")).toBe(120);
    expect(retryDelaySeconds(retry, 0, "2")).toBe(5);
    expect(retryDelaySeconds(retry, 0, "86400")).toBe(3600);
    expect(retryDelaySeconds(retry, 0, "Wed, 21 Oct 2026 07:28:00 GMT")).toBe(5);
    expect(retryDelaySeconds(retry, 0, "-30")).toBe(5);
    expect(retryDelaySeconds(retry, 0, null)).toBe(5);
  });
});

describe("parseSpooledCopy", () => {
  it("takes a spooled copy of this version", () => {
    const message = { ...copy, body: { kind: "inline", bytes: new Uint8Array([1, 2]) } };
    expect(parseSpooledCopy(message)).toBe(message);
  });

  it.each([
    [null, "not an object"],
    [{ ...copy, v: 2, body: { kind: "none" } }, "message version 2, not 1"],
    [{ ...copy, route: 7, body: { kind: "none" } }, "route is not a string"],
    [{ ...copy, url: "file:///etc/passwd", body: { kind: "none" } }, "url is not http(s)"],
    [{ ...copy, url: "/relative", body: { kind: "none" } }, "url is not absolute"],
    [{ ...copy, headers: [["a"]], body: { kind: "none" } }, "headers are not name and value pairs"],
    [{ ...copy, body: { kind: "inline", bytes: "AAEC" } }, "inline body is not bytes"],
    [{ ...copy, body: { kind: "r2", key: "../other", size: 3 } }, "r2 body needs a spool key and a size"],
    [{ ...copy, body: { kind: "s3" } }, 'unknown body kind "s3"'],
    [{ ...copy, retry: { maxAttempts: 0, firstDelaySeconds: 5 }, body: { kind: "none" } }, "retry is not a schedule"],
  ])("refuses %j: %s", (message, problem) => {
    expect(parseSpooledCopy(message)).toBe(problem);
  });
});

describe("Spool", () => {
  it("puts a body in the message while the whole message stays under the limit, else in R2", async () => {
    const spool = recordingSpool(env);
    const s = new Spool({ queue: spool.env.MIRROR_SPOOL, bodies: spool.env.MIRROR_SPOOL_BODIES });
    const fits = INLINE_MESSAGE_BYTES - messageBytes(copy, 0);
    const small = { parts: [new Uint8Array(fits).fill(1)], size: fits };
    const large = { parts: [new Uint8Array(fits + 1).fill(2)], size: fits + 1 };
    expect(await s.put({ copy, body: small, delaySeconds: LATER })).toEqual({ ok: true, bodyIn: "message" });
    expect(await s.put({ copy, body: large, delaySeconds: LATER })).toEqual({ ok: true, bodyIn: "r2" });
    expect(await s.put({ copy, body: null, delaySeconds: LATER })).toEqual({ ok: true, bodyIn: "none" });
    expect(spool.calls.put).toBe(1);
    const [inline, stored, none] = spool.spooled.map((m) => m.body as SpooledCopy);
    expect(inline?.body).toMatchObject({ kind: "inline" });
    expect(stored?.body).toMatchObject({ kind: "r2", size: fits + 1 });
    expect(none?.body).toEqual({ kind: "none" });
  });

  it("sends the copies spooled together in one sendBatch, and no batch past 100 messages or 256 KB", async () => {
    const spool = recordingSpool(env);
    const s = new Spool({ queue: spool.env.MIRROR_SPOOL, bodies: spool.env.MIRROR_SPOOL_BODIES });
    const tiny = { parts: [new Uint8Array(100)], size: 100 };
    const results = await Promise.all(
      Array.from({ length: MAX_BATCH_MESSAGES + 20 }, () => s.put({ copy, body: tiny, delaySeconds: LATER })),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(spool.calls.sendBatch).toBe(2);
    expect(spool.spooled).toHaveLength(MAX_BATCH_MESSAGES + 20);

    const big = { parts: [new Uint8Array(100_000)], size: 100_000 };
    const before = spool.calls.sendBatch;
    await Promise.all(Array.from({ length: 5 }, () => s.put({ copy, body: big, delaySeconds: LATER })));
    // Two fit under 256 KB at a time.
    expect(spool.calls.sendBatch - before).toBe(
      Math.ceil(5 / Math.floor(MAX_BATCH_BYTES / messageBytes(copy, 100_000))),
    );
  });

  it("joins a body held in parts only when the budget has room for the joined copy; else writes it to R2 part by part", async () => {
    const spool = recordingSpool(env);
    const s = new Spool({ queue: spool.env.MIRROR_SPOOL, bodies: spool.env.MIRROR_SPOOL_BODIES });
    const parts = { parts: [new Uint8Array(30_000).fill(3), new Uint8Array(30_000).fill(4)], size: 60_000 };
    const roomy = new MemoryBudget(200_000).hold();
    expect(await s.put({ copy, body: parts, hold: roomy, delaySeconds: LATER })).toEqual({
      ok: true,
      bodyIn: "message",
    });
    expect(roomy.bytes).toBe(60_000);
    const tight = new MemoryBudget(10_000).hold();
    expect(await s.put({ copy, body: parts, hold: tight, delaySeconds: LATER })).toEqual({ ok: true, bodyIn: "r2" });
    expect(tight.bytes).toBe(0);
    const [, stored] = spool.spooled.map((m) => m.body as SpooledCopy);
    const key = stored?.body.kind === "r2" ? stored.body.key : "";
    const object = await spool.bucket.get(key);
    const bytes = new Uint8Array(await (object as R2ObjectBody).arrayBuffer());
    expect([bytes.byteLength, bytes[0], bytes[59_999]]).toEqual([60_000, 3, 4]);
  });

  it("says why it cannot spool: no queue, no bucket for a large body, a queue that refuses (its R2 body deleted)", async () => {
    const large = { parts: [new Uint8Array(200_000)], size: 200_000 };
    expect(await new Spool({}).put({ copy, body: null, delaySeconds: LATER })).toEqual({
      ok: false,
      detail: "no MIRROR_SPOOL queue binding",
    });
    const spool = recordingSpool(env);
    expect(await new Spool({ queue: spool.env.MIRROR_SPOOL }).put({ copy, body: large, delaySeconds: LATER })).toEqual({
      ok: false,
      detail: "a body of 200000 bytes does not fit a queue message and no MIRROR_SPOOL_BODIES bucket is bound",
    });
    spool.state.failQueue = true;
    const s = new Spool({ queue: spool.env.MIRROR_SPOOL, bodies: spool.env.MIRROR_SPOOL_BODIES });
    const result = await s.put({ copy, body: large, delaySeconds: LATER });
    expect(result).toEqual({ ok: false, detail: expect.stringMatching(/^the queue refused the copy: /) });
    expect([spool.calls.put, spool.calls.delete]).toEqual([1, 1]);
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { forwardToPrimary } from "../proxy/index.js";
import { MemoryBudget } from "./budget.js";
import {
  BODY_BLOCK_BYTES,
  COPIED_BODY_BYTES,
  type CopyBody,
  captureResponse,
  copyRequestBody,
  DRAIN_READ_BYTES,
  declaredLength,
  discardAnswer,
  REUSABLE_ANSWER_BYTES,
  RUNTIME_DRAINS_BYTES,
  readCapped,
  readDeclared,
  readMirrorBody,
  relayBody,
  splitUpload,
  teeForComparison,
} from "./index.js";

function streamOf(...chunks: number[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const [i, size] of chunks.entries()) controller.enqueue(new Uint8Array(size).fill(i + 1));
      controller.close();
    },
  });
}

describe("readDeclared", () => {
  it("stops once the declared bytes are in, without waiting for the end of the stream", async () => {
    let cancelled = false;
    const open = new ReadableStream<Uint8Array>({
      start: (c) => {
        c.enqueue(new Uint8Array([1, 2]));
        c.enqueue(new Uint8Array([3]));
      },
      cancel: () => {
        cancelled = true;
      },
    });
    expect(await readDeclared(open, 3)).toEqual({ ok: true, bytes: new Uint8Array([1, 2, 3]) });
    expect(cancelled).toBe(true);
  });

  it("refuses a body shorter or longer than declared", async () => {
    expect(await readDeclared(streamOf(2), 3)).toMatchObject({ ok: false, detail: "body ended after 2 of 3 bytes" });
    expect(await readDeclared(streamOf(4), 3)).toMatchObject({ ok: false, detail: "body longer than its 3 bytes" });
  });
});

describe("readCapped", () => {
  it("joins chunks up to the cap", async () => {
    const read = await readCapped(streamOf(3, 2), 5);
    expect(read).toEqual({ ok: true, bytes: new Uint8Array([1, 1, 1, 2, 2]) });
  });

  it("stops and cancels past the cap", async () => {
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(new Uint8Array(4));
      },
      cancel() {
        cancelled = true;
      },
    });
    const read = await readCapped(stream, 10);
    expect(read).toMatchObject({ ok: false, reason: "body_too_large" });
    expect(cancelled).toBe(true);
  });

  it("takes each chunk from its hold, and stops and cancels once the budget is spent", async () => {
    let cancelled = false;
    let pulled = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(400));
      },
      cancel() {
        cancelled = true;
      },
    });
    const budget = new MemoryBudget(1000);
    const hold = budget.hold();
    const read = await readCapped(stream, 10_000, hold);
    expect(read).toMatchObject({
      ok: false,
      reason: "memory_budget",
      detail: "body at 1200 bytes does not fit the isolate's memory budget (200 of 1000 bytes free)",
    });
    expect(cancelled).toBe(true);
    expect(pulled).toBeLessThanOrEqual(4);
    expect(hold.bytes).toBe(800);
    hold.release();
    expect(budget.held).toBe(0);
  });

  it("reports a failing stream instead of throwing", async () => {
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.error(new Error("client went away"));
      },
    });
    expect(await readCapped(stream, 10)).toMatchObject({ ok: false, reason: "body_read_failed" });
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

  it("keeps dropping an upload that never pauses for the idle limit, however long it takes in all", async () => {
    let sent = 0;
    const steady = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          if (sent === 20) return controller.close();
          await new Promise((r) => setTimeout(r, 15));
          sent++;
          controller.enqueue(new Uint8Array(1024));
        },
      },
      { highWaterMark: 0 },
    );
    const relayed = relayBody(steady, null);
    // 20 chunks, 15 ms apart: 300 ms in all, never 60 ms without one.
    await relayed.discardRest(60);
    expect(sent).toBe(20);
  });

  it("hands on an answer given after the upload as it is", async () => {
    const source = countingSource(4, 64 * 1024);
    const relayed = relayBody(source.stream, null);
    await new Response(relayed.stream).arrayBuffer();
    await relayed.done;
    const answer = new Response("ok");
    expect(relayed.answered(answer, 1000)).toBe(answer);
  });

  it("reads a small answer at its declared length, not until a primary connection that may be reset ends", async () => {
    const source = countingSource(4, 64 * 1024);
    const relayed = relayBody(source.stream, null);
    await new Response(relayed.stream).arrayBuffer();
    await relayed.done;
    // The bytes are all in, but the stream ends only when the connection does (here: never).
    const open = new ReadableStream<Uint8Array>({
      start: (c) => c.enqueue(new TextEncoder().encode("denied")),
    });
    const answer = await relayed.answered(
      new Response(open, { status: 401, headers: { "content-length": "6", "x-from": "primary" } }),
      1000,
    );
    expect(answer.status).toBe(401);
    expect(answer.headers.get("x-from")).toBe("primary");
    expect(await answer.text()).toBe("denied");
  });

  it("turns an answer to a whole upload whose body is lost with the connection into primary_unreachable", async () => {
    const source = countingSource(4, 64 * 1024);
    const relayed = relayBody(source.stream, null);
    await new Response(relayed.stream).arrayBuffer();
    await relayed.done;
    // The runtime's last write still waited for a primary that had stopped reading; it reset the
    // connection before handing on the answer's body. The client gets a 502, not headers and a reset.
    const lost = new ReadableStream<Uint8Array>({ pull: (c) => c.error(new Error("Network connection lost.")) });
    await expect(
      Promise.resolve(relayed.answered(new Response(lost, { status: 401, headers: { "content-length": "12" } }), 1000)),
    ).rejects.toMatchObject({ code: "primary_unreachable" });
  });

  it("holds an early answer until the primary has read the rest of the upload", async () => {
    const source = countingSource(200);
    const relayed = relayBody(source.stream, String(200 * 1024));
    const early = relayed.answered(new Response("denied", { status: 401, headers: { "content-length": "6" } }), 1000);
    // The primary goes on reading after answering, as Node's server does.
    const received = new Response(relayed.stream).arrayBuffer();
    const answer = await early;
    expect(source.sent()).toBe(200);
    expect((await received).byteLength).toBe(200 * 1024);
    expect(answer.status).toBe(401);
    expect(await answer.text()).toBe("denied");
  });

  it("drops the rest of the upload for a primary that answered and stopped reading", async () => {
    const source = countingSource(300);
    const relayed = relayBody(source.stream, null);
    // Nobody reads relayed.stream: the relay's writes wait until the limit, then it drops.
    const answer = await relayed.answered(new Response("too large", { status: 413 }), 50);
    expect(source.sent()).toBe(300);
    expect(answer.status).toBe(413);
  });

  it("turns an early answer lost with the connection into primary_unreachable", async () => {
    const source = countingSource(100);
    const relayed = relayBody(source.stream, null);
    const lost = new ReadableStream<Uint8Array>({ pull: (c) => c.error(new Error("Network connection lost.")) });
    const consumed = new Response(relayed.stream).arrayBuffer();
    await expect(
      relayed.answered(new Response(lost, { status: 401, headers: { "content-length": "12" } }), 1000),
    ).rejects.toMatchObject({ code: "primary_unreachable" });
    await consumed;
    expect(source.sent()).toBe(100);
  });

  it("forwardToPrimary drains the client's body before answering a refused connection", async () => {
    const source = countingSource(300);
    const spy = vi.spyOn(globalThis, "fetch").mockRejectedValue(new TypeError("Network connection lost."));
    try {
      const relayed = relayBody(source.stream, String(300 * 1024));
      await expect(
        forwardToPrimary({
          request: new Request("http://p.test/", { method: "POST", body: relayed.stream }),
          body: relayed,
          deadline: { ms: 1000, abort: new AbortController() },
        }),
      ).rejects.toMatchObject({ code: "primary_unreachable" });
      expect(source.sent()).toBe(300);
    } finally {
      spy.mockRestore();
    }
  });
});

describe("discardAnswer", () => {
  afterEach(() => vi.restoreAllMocks());

  /** A body of `chunks` chunks of `size` bytes that counts what was read and whether it was cancelled. */
  function watched(chunks: number, size: number) {
    const seen = { read: 0, cancelled: false };
    let left = chunks;
    const stream = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (left-- === 0) return controller.close();
          seen.read += size;
          controller.enqueue(new Uint8Array(size));
        },
        cancel() {
          seen.cancelled = true;
        },
      },
      { highWaterMark: 0 },
    );
    return { stream, seen };
  }

  it("reads a small answer to its end, so that its connection is handed back", async () => {
    const { stream, seen } = watched(4, 1024);
    await discardAnswer(new Response(stream));
    expect(seen).toEqual({ read: 4096, cancelled: false });
  });

  it("cancels an answer declared longer than the limit without reading it", async () => {
    const { stream, seen } = watched(4, 1024);
    const headers = { "content-length": String(REUSABLE_ANSWER_BYTES + 1) };
    await discardAnswer(new Response(stream, { headers }));
    expect(seen).toEqual({ read: 0, cancelled: true });
  });

  it("cancels an unframed answer once it is found longer than the limit", async () => {
    const { stream, seen } = watched(100, 16 * 1024);
    await discardAnswer(new Response(stream));
    expect(seen.cancelled).toBe(true);
    expect(seen.read).toBeLessThanOrEqual(REUSABLE_ANSWER_BYTES + 2 * 16 * 1024);
  });

  it("reads an answer declared short whole, in one step of the runtime's", async () => {
    const whole = vi.spyOn(Response.prototype, "arrayBuffer");
    const reads = vi.spyOn(ReadableStreamBYOBReader.prototype, "readAtLeast");
    const headers = { "content-length": String(DRAIN_READ_BYTES * 2) };
    await discardAnswer(new Response(new Uint8Array(DRAIN_READ_BYTES * 2), { headers }));
    expect(whole).toHaveBeenCalledTimes(1);
    expect(reads).not.toHaveBeenCalled();
  });

  it("ends a short answer from the runtime in one read, its end included", async () => {
    const reads = vi.spyOn(ReadableStreamBYOBReader.prototype, "readAtLeast");
    await discardAnswer(new Response(new Uint8Array(DRAIN_READ_BYTES - 1)));
    expect(reads).toHaveBeenCalledTimes(1);
  });

  it("reads a runtime answer in full buffers, and cancels it once it passes the limit", async () => {
    const reads = vi.spyOn(ReadableStreamBYOBReader.prototype, "readAtLeast");
    await discardAnswer(new Response(new Uint8Array(3 * DRAIN_READ_BYTES + 1)));
    expect(reads).toHaveBeenCalledTimes(4);
    reads.mockClear();
    const cancel = vi.spyOn(ReadableStreamBYOBReader.prototype, "cancel");
    await discardAnswer(new Response(new Uint8Array(REUSABLE_ANSWER_BYTES * 4)));
    expect(reads).toHaveBeenCalledTimes(REUSABLE_ANSWER_BYTES / DRAIN_READ_BYTES + 1);
    expect(cancel).toHaveBeenCalledTimes(1);
  });

  it("never throws for an answer lost with its connection", async () => {
    const lost = new ReadableStream<Uint8Array>({ pull: (c) => c.error(new Error("Network connection lost.")) });
    await expect(discardAnswer(new Response(lost))).resolves.toBeUndefined();
  });
});

describe("declaredLength", () => {
  it.each([
    ["1024", 1024],
    ["0", 0],
    [null, undefined],
    ["", undefined],
    ["-1", undefined],
    ["1.5", undefined],
    ["12abc", undefined],
    ["99999999999999999999", undefined],
  ])("%s → %s", (value, expected) => {
    expect(declaredLength(value)).toBe(expected);
  });
});

/** `size` bytes that differ from one offset to the next. */
function bytesOf(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + 3) % 256;
  return bytes;
}

/** Compared here: `toEqual` on megabytes takes longer than a test may. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A byte stream of unknown length, as the runtime hands a chunked upload: `chunks` writes of `size` bytes. */
function unframedUpload(chunks: number, size: number): { stream: ReadableStream<Uint8Array>; sent: Uint8Array } {
  const sent = bytesOf(chunks * size);
  const { readable, writable } = new IdentityTransformStream();
  const writer = writable.getWriter();
  (async () => {
    for (let at = 0; at < sent.length; at += size) await writer.write(sent.slice(at, at + size));
    await writer.close();
  })().catch(() => {});
  return { stream: readable as ReadableStream<Uint8Array>, sent };
}

function upload(body: BodyInit, headers: Record<string, string> = {}): Request {
  return new Request("https://edge.example.com/upload", { method: "POST", body, headers });
}

describe("splitUpload and readMirrorBody under the memory budget", () => {
  it("does not tee a body declared larger than the budget has left: the primary gets the untouched stream, the copy a memory_budget skip", async () => {
    const budget = new MemoryBudget(1500);
    budget.hold().take(600);
    const request = upload(bytesOf(1000), { "content-length": "1000" });
    const split = splitUpload(request, 2000, budget);
    // Not tee'd: the request's own stream, which a tee would have locked.
    expect(request.body?.locked).toBe(false);
    expect(split.mirrors).toEqual({
      kind: "over_budget",
      detail: "content-length 1000 does not fit the isolate's memory budget (900 of 1500 bytes free)",
    });
    expect(budget.held).toBe(600);
    expect(await readMirrorBody(split.mirrors)).toMatchObject({ ok: false, reason: "memory_budget" });
    expect(new Uint8Array(await new Response(split.primary).arrayBuffer())).toEqual(bytesOf(1000));
  });

  it("takes a declared length before the tee and reads it into one buffer of its own", async () => {
    const budget = new MemoryBudget(1500);
    const request = upload(bytesOf(1000), { "content-length": "1000" });
    const split = splitUpload(request, 2000, budget);
    expect(request.body?.locked).toBe(true);
    expect(split.mirrors).toMatchObject({ kind: "stream" });
    expect(budget.held).toBe(1000);
    const [primary, read] = await Promise.all([
      new Response(split.primary).arrayBuffer(),
      readMirrorBody(split.mirrors),
    ]);
    expect(new Uint8Array(primary)).toEqual(bytesOf(1000));
    if (!read.ok || !read.body) throw new Error("no copy");
    expect(read.body.size).toBe(1000);
    expect(read.body.parts).toEqual([bytesOf(1000)]);
    // Read straight into a buffer of the declared length, not gathered from the runtime's chunks.
    expect(read.body.parts[0]?.buffer.byteLength).toBe(1000);
    expect(budget.held).toBe(1000);
    if (split.mirrors.kind === "stream") split.mirrors.hold.release();
    expect(budget.held).toBe(0);
  });

  it("takes a body of unknown length as it arrives, and cancels the copy's branch once the budget is spent; the primary still gets every byte", async () => {
    const budget = new MemoryBudget(40_000);
    const { stream, sent } = unframedUpload(10, 10_000);
    const split = splitUpload(upload(stream), 200_000, budget);
    const [primary, read] = await Promise.all([
      new Response(split.primary).arrayBuffer(),
      readMirrorBody(split.mirrors),
    ]);
    expect(new Uint8Array(primary)).toEqual(sent);
    // Buffers of 16 KiB and 16 KiB are taken; the next, of 32 KiB, does not fit.
    expect(read).toEqual({
      ok: false,
      reason: "memory_budget",
      detail: "body past 32768 bytes does not fit the isolate's memory budget (7232 of 40000 bytes free)",
    });
    expect(budget.held).toBe(32768);
    if (split.mirrors.kind === "stream") split.mirrors.hold.release();
    expect(budget.held).toBe(0);
  });

  it("reads a body of unknown length into buffers of its own that grow with it, each taken before it is allocated", async () => {
    const budget = new MemoryBudget(4 * BODY_BLOCK_BYTES);
    const { stream, sent } = unframedUpload(10, BODY_BLOCK_BYTES / 4 + 1);
    const split = splitUpload(upload(stream), 4 * BODY_BLOCK_BYTES, budget);
    const [, read] = await Promise.all([new Response(split.primary).arrayBuffer(), readMirrorBody(split.mirrors)]);
    if (!read.ok || !read.body) throw new Error("no copy");
    const KiB = 1024;
    expect(read.body.parts.map((p) => p.byteLength / KiB)).toEqual([
      16,
      16,
      32,
      64,
      128,
      256,
      512,
      1024,
      512 + 10 / KiB,
    ]);
    expect(sameBytes(new Uint8Array(await new Blob(read.body.parts as Uint8Array[]).arrayBuffer()), sent)).toBe(true);
    // What is held is the buffers' whole size: the last one is half full.
    expect(budget.held).toBe(3 * BODY_BLOCK_BYTES);
  });
});

describe("comparison captures under the memory budget", () => {
  /** An answer whose body counts how often it was read, and whether it was cancelled. */
  function answer(size: number, headers: Record<string, string> = {}) {
    const seen = { pulls: 0, cancelled: false };
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        seen.pulls++;
        if (sent >= size) return controller.close();
        const chunk = Math.min(500, size - sent);
        controller.enqueue(new Uint8Array(chunk).fill(1));
        sent += chunk;
      },
      cancel() {
        seen.cancelled = true;
      },
    });
    return { response: new Response(body, { headers }), seen };
  }

  it("refuses an answer declared larger than the budget has left without reading it", async () => {
    const budget = new MemoryBudget(1000);
    const { response, seen } = answer(2000, { "content-length": "2000" });
    const pullsBefore = seen.pulls;
    const captured = await captureResponse(response, 4096, budget.hold());
    expect(captured).toEqual({
      ok: false,
      error: "content-length 2000 does not fit the isolate's memory budget (1000 of 1000 bytes free)",
    });
    expect(seen.pulls).toBe(pullsBefore);
    expect(seen.cancelled).toBe(true);
    expect(budget.held).toBe(0);
  });

  it("stops reading an answer of unknown length once the budget is spent", async () => {
    const budget = new MemoryBudget(1200);
    const hold = budget.hold();
    const { response, seen } = answer(5000);
    const captured = await captureResponse(response, 10_000, hold);
    expect(captured).toMatchObject({ ok: false, error: expect.stringContaining("memory budget") });
    expect(seen.cancelled).toBe(true);
    hold.release();
    expect(budget.held).toBe(0);
  });

  it("leaves the primary's answer untouched, not tee'd, when its declared length does not fit", async () => {
    const budget = new MemoryBudget(1000);
    const { response } = answer(2000, { "content-length": "2000" });
    const split = teeForComparison(response, 4096, budget.hold());
    expect(split.response).toBe(response);
    expect(await split.capture).toMatchObject({ ok: false, error: expect.stringContaining("memory budget") });
    expect((await split.response.arrayBuffer()).byteLength).toBe(2000);
  });

  it("tees a primary answer that fits, its declared length taken until the hold is released", async () => {
    const budget = new MemoryBudget(3000);
    const hold = budget.hold();
    const { response } = answer(2000, { "content-length": "2000" });
    const split = teeForComparison(response, 4096, hold);
    expect(split.response).not.toBe(response);
    expect(budget.held).toBe(2000);
    const [client, captured] = await Promise.all([split.response.arrayBuffer(), split.capture]);
    expect(client.byteLength).toBe(2000);
    expect(captured).toMatchObject({ ok: true });
    hold.release();
    expect(budget.held).toBe(0);
  });

  it("streams a primary answer of unknown length to the client whole after its capture ran out of budget", async () => {
    const budget = new MemoryBudget(1200);
    const { response } = answer(5000);
    const split = teeForComparison(response, 10_000, budget.hold());
    const [client, captured] = await Promise.all([split.response.arrayBuffer(), split.capture]);
    expect(client.byteLength).toBe(5000);
    expect(captured).toMatchObject({ ok: false, error: expect.stringContaining("memory budget") });
  });
});

describe("copyRequestBody", () => {
  const body = (parts: Uint8Array[]): CopyBody => ({
    parts,
    size: parts.reduce((n, p) => n + p.byteLength, 0),
  });

  it("hands a small body to fetch as one array", () => {
    const small = bytesOf(COPIED_BODY_BYTES);
    expect(copyRequestBody(body([small])).init).toBe(small);
    expect(copyRequestBody(body([small.subarray(0, 10), small.subarray(10, 20)])).init).toEqual(small.subarray(0, 20));
  });

  it("streams a larger body from the shared parts, each copy its own stream of the same bytes", async () => {
    const parts = [bytesOf(300 * 1024), bytesOf(200 * 1024)];
    const shared = body(parts);
    const [a, b] = [copyRequestBody(shared), copyRequestBody(shared)];
    expect(a.init).toBeInstanceOf(ReadableStream);
    const expected = new Uint8Array(await new Blob(parts).arrayBuffer());
    expect(sameBytes(new Uint8Array(await new Response(a.init).arrayBuffer()), expected)).toBe(true);
    expect(sameBytes(new Uint8Array(await new Response(b.init).arrayBuffer()), expected)).toBe(true);
  });

  it("ends a stream the copy no longer reads once stopped", async () => {
    const sent = copyRequestBody(body([bytesOf(COPIED_BODY_BYTES + 1)]));
    const reader = (sent.init as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    sent.stop();
    await expect(
      (async () => {
        for (;;) if ((await reader.read()).done) return "ended";
      })(),
    ).rejects.toBeDefined();
  });
});

import { afterEach, describe, expect, it, vi } from "vitest";
import { forwardToPrimary } from "../proxy/index.js";
import {
  DRAIN_READ_BYTES,
  declaredLength,
  discardAnswer,
  REUSABLE_ANSWER_BYTES,
  RUNTIME_DRAINS_BYTES,
  readCapped,
  readDeclared,
  relayBody,
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

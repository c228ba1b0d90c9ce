import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { COPY_ID_HEADER, MIRROR_MARKER } from "../../src/headers/index.js";
import { bodyDigest, copyAddress, verifyMarker } from "../../src/headers/marker.js";
import type { MirrorOutcome } from "../../src/record/index.js";
import type { SpooledCopy } from "../../src/spool/index.js";
import { interceptFetch, putPolicies, randomBytes, recordingSpool, testWorker } from "./helpers.js";

/**
 * Durable delivery through the whole worker, with the spool's real local queue and bucket
 * wrapped to count what is sent and written: what a healthy mirror costs (nothing more), which
 * answers are final, what a spooled copy holds, and the queue consumer redelivering it.
 */
const PRIMARY = "http://primary.test";
const MIRROR = "http://mirror.test";
const BEST = "http://best.test";

/** An hour before the first attempt: the pool's own consumer never sees these messages. */
const RETRY = { maxAttempts: 3, firstDelaySeconds: 3600 };

beforeAll(async () => {
  await putPolicies({
    routes: [
      {
        id: "rw-durable",
        match: { path: { type: "Exact", value: "/durable/push" }, methods: ["POST", "GET"] },
        backends: [{ origin: PRIMARY }],
        mirrors: [
          {
            origin: MIRROR,
            delivery: "durable",
            retry: RETRY,
            requestHeaders: { set: { "x-scope-orgid": "shadow" } },
            urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/api/v1/push" } },
          },
        ],
        maxMirrorBodyBytes: 1024 * 1024,
      },
      {
        id: "rw-best",
        match: { path: { type: "Exact", value: "/best/push" }, methods: ["POST", "GET"] },
        backends: [{ origin: PRIMARY }],
        mirrors: [
          {
            origin: BEST,
            requestHeaders: { set: { "x-scope-orgid": "shadow" } },
            urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/api/v1/push" } },
          },
        ],
        maxMirrorBodyBytes: 1024 * 1024,
      },
    ],
  });
});

let fetches: ReturnType<typeof interceptFetch> | undefined;
afterEach(() => fetches?.restore());

function push(path: string, body: Uint8Array): Request {
  return new Request(`https://edge.example.com${path}`, {
    method: "POST",
    body,
    headers: {
      "content-type": "application/x-protobuf",
      "content-encoding": "snappy",
      "x-prometheus-remote-write-version": "0.1.0",
      "content-length": String(body.byteLength),
    },
  });
}

/** Answers the primary with 204 and the mirrors with what `mirror` says. */
function origins(mirror: (req: Request) => Response | Promise<Response>) {
  fetches = interceptFetch({
    [PRIMARY]: () => new Response(null, { status: 204, headers: { "x-served-by": "primary" } }),
    [MIRROR]: mirror,
    [BEST]: mirror,
  });
  return fetches;
}

/** The spooled copy a recorded message carries. */
const spooledCopy = (request: MessageSendRequest | undefined): SpooledCopy => request?.body as SpooledCopy;

describe("a durable mirror", () => {
  it("costs a healthy mirror no queue message and no R2 write, and answers as best-effort does", async () => {
    const seen = origins(() => new Response(null, { status: 204 }));
    const spool = recordingSpool(env);
    const worker = testWorker();
    const body = randomBytes(200 * 1024);
    const durable = await worker.send(push("/durable/push", body), spool.env);
    const best = await worker.send(push("/best/push", body), spool.env);
    expect([durable.response.status, best.response.status]).toEqual([204, 204]);
    expect(durable.response.headers.get("x-served-by")).toBe(best.response.headers.get("x-served-by"));
    expect(spool.calls).toEqual({ send: 0, sendBatch: 0, put: 0, get: 0, delete: 0 });
    expect(worker.outcomes.map((o) => [o.route, o.kind, "status" in o ? o.status : undefined])).toEqual([
      ["rw-durable", "sent", 204],
      ["rw-best", "sent", 204],
    ]);
    // The two copies are alike but for the durable one's id.
    const [toDurable, toBest] = [seen.to(MIRROR), seen.to(BEST)];
    expect(toDurable).toHaveLength(1);
    expect(toBest).toHaveLength(1);
    expect(toDurable[0]?.body).toEqual(body);
    expect(toBest[0]?.body).toEqual(body);
    expect(toDurable[0]?.headers[COPY_ID_HEADER]).toMatch(/;mirror=http:\/\/mirror\.test$/);
    expect(toBest[0]?.headers[COPY_ID_HEADER]).toBeUndefined();
    const strip = (h: Record<string, string> | undefined) => {
      const { [COPY_ID_HEADER]: _id, [MIRROR_MARKER]: _marker, ...rest } = h ?? {};
      return rest;
    };
    expect(strip(toDurable[0]?.headers)).toEqual(strip(toBest[0]?.headers));
  });

  it("takes a 400 as final: counted at once, never spooled nor sent again", async () => {
    const seen = origins(() => new Response("bad batch", { status: 400 }));
    const spool = recordingSpool(env);
    const worker = testWorker();
    const { response } = await worker.send(push("/durable/push", randomBytes(1000)), spool.env);
    expect(response.status).toBe(204);
    expect(seen.to(MIRROR)).toHaveLength(1);
    expect(spool.calls.sendBatch).toBe(0);
    expect(worker.outcomes).toEqual([expect.objectContaining({ kind: "sent", status: 400 })]);
  });

  it.each([
    [503, "status"],
    [429, "status"],
    [408, "status"],
    [425, "status"],
  ])("spools a copy the mirror answered %i, as it was sent, and the consumer redelivers it", async (status) => {
    let answer = status;
    const seen = origins(() => new Response(null, { status: answer, headers: { "retry-after": "7" } }));
    const spool = recordingSpool(env);
    const worker = testWorker();
    const body = randomBytes(50 * 1024);
    await worker.send(push("/durable/push", body), spool.env);
    expect(spool.calls.sendBatch).toBe(1);
    expect(spool.calls.put).toBe(0);
    expect(worker.outcomes).toEqual([
      expect.objectContaining({
        kind: "spooled",
        error: "status",
        status,
        bodyIn: "message",
        bodyBytes: body.byteLength,
      }),
    ]);
    const message = spool.spooled[0];
    // Retry-After (7 s) is shorter than the first delay: the schedule wins.
    expect(message).toMatchObject({ contentType: "v8", delaySeconds: 3600 });
    const copy = spooledCopy(message);
    const sent = seen.to(MIRROR)[0];
    expect(copy).toMatchObject({
      route: "rw-durable",
      mirror: MIRROR,
      method: "POST",
      url: `${MIRROR}/api/v1/push`,
      sentInline: true,
      retry: RETRY,
      timeoutMs: 5000,
      bodyDigest: await bodyDigest(body),
    });
    expect(copy.body).toEqual({ kind: "inline", bytes: body });
    // The headers as they were sent, the marker excepted: it is signed again at each delivery.
    const { [MIRROR_MARKER]: _marker, ...sentHeaders } = sent?.headers ?? {};
    expect(Object.fromEntries(copy.headers)).toEqual(sentHeaders);
    expect(Object.fromEntries(copy.headers)["x-scope-orgid"]).toBe("shadow");

    // The mirror is back: the consumer delivers the copy, with a fresh marker made for it.
    answer = 204;
    seen.seen.length = 0;
    const batch = createMessageBatch("edge-mirror-spool", [
      { id: "m1", timestamp: new Date(), attempts: 1, body: copy },
    ]);
    const ctx = createExecutionContext();
    await worker.worker.queue(batch, spool.env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual(["m1"]);
    expect(result.retryMessages).toEqual([]);
    const again = seen.to(MIRROR)[0];
    expect(again?.body).toEqual(body);
    expect(again?.headers[COPY_ID_HEADER]).toBe(sent?.headers[COPY_ID_HEADER]);
    const keys = await worker.worker.isolate(spool.env).secret.verifyingKeys();
    const digest = await verifyMarker(
      again?.headers[MIRROR_MARKER] ?? "",
      copyAddress("POST", new URL(`${MIRROR}/api/v1/push`)),
      keys,
      Date.now(),
    );
    expect(digest).toBe(copy.bodyDigest);
    expect(worker.outcomes[1]).toMatchObject({
      kind: "redelivered",
      attempt: 1,
      status: 204,
      bodyBytes: body.byteLength,
    });
  });

  it("spools a copy whose mirror does not answer, and retries it on the schedule until it is dead", async () => {
    const seen = origins(() => {
      throw new TypeError("Network connection lost.");
    });
    const spool = recordingSpool(env);
    const worker = testWorker();
    await worker.send(push("/durable/push", randomBytes(3000)), spool.env);
    expect(worker.outcomes).toEqual([expect.objectContaining({ kind: "spooled", error: "network" })]);
    const copy = spooledCopy(spool.spooled[0]);

    const attempt = async (attempts: number) => {
      const batch = createMessageBatch("edge-mirror-spool", [
        { id: `a${attempts}`, timestamp: new Date(), attempts, body: copy },
      ]);
      const ctx = createExecutionContext();
      await worker.worker.queue(batch, spool.env, ctx);
      return getQueueResult(batch, ctx);
    };
    // Attempts 1 and 2 of 3: retried after the schedule's wait, its doubling capped at an hour
    // (the pool's queue result does not keep the delay; the outcome says it).
    expect((await attempt(1)).retryMessages).toEqual([{ msgId: "a1" }]);
    expect((await attempt(2)).retryMessages).toEqual([{ msgId: "a2" }]);
    expect(worker.outcomes.slice(1)).toEqual([
      expect.objectContaining({ kind: "retrying", attempt: 1, delaySeconds: 3600, error: "network" }),
      expect.objectContaining({ kind: "retrying", attempt: 2, delaySeconds: 3600, error: "network" }),
    ]);
    // Attempt 3 of 3: dead, to the dead-letter queue, with its body and its cause.
    const last = await attempt(3);
    expect(last.explicitAcks).toEqual(["a3"]);
    expect(last.retryMessages).toEqual([]);
    expect(spool.deadLetters).toHaveLength(1);
    const dead = spooledCopy(spool.deadLetters[0]);
    expect(dead.body).toEqual(copy.body);
    expect(dead.dead).toMatchObject({ attempts: 3, cause: expect.stringContaining("attempt 3 of 3") });
    expect(seen.to(MIRROR)).toHaveLength(4);
    expect(worker.outcomes.slice(1).map((o) => o.kind)).toEqual(["retrying", "retrying", "dead"]);
  });

  it("keeps a body over the message limit in R2, streams it on redelivery, and deletes it once delivered", async () => {
    let answer = 502;
    const seen = origins(() => new Response(null, { status: answer }));
    const spool = recordingSpool(env);
    const worker = testWorker();
    const body = randomBytes(300 * 1024);
    await worker.send(push("/durable/push", body), spool.env);
    expect(spool.calls.put).toBe(1);
    expect(worker.outcomes).toEqual([expect.objectContaining({ kind: "spooled", bodyIn: "r2" })]);
    const copy = spooledCopy(spool.spooled[0]);
    expect(copy.body).toMatchObject({ kind: "r2", size: body.byteLength, key: expect.stringMatching(/^spool\//) });
    const key = (copy.body as { key: string }).key;
    const stored = await spool.bucket.get(key);
    expect(new Uint8Array(await (stored as R2ObjectBody).arrayBuffer())).toEqual(body);

    answer = 200;
    seen.seen.length = 0;
    const batch = createMessageBatch("edge-mirror-spool", [
      { id: "r1", timestamp: new Date(), attempts: 1, body: copy },
    ]);
    const ctx = createExecutionContext();
    await worker.worker.queue(batch, spool.env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["r1"]);
    expect(seen.to(MIRROR)[0]?.body).toEqual(body);
    expect(await spool.bucket.head(key)).toBeNull();
  });

  it("counts a redelivery the mirror refuses (a 4xx) as rejected, final, and deletes its body", async () => {
    let answer = 500;
    origins(() => new Response(null, { status: answer }));
    const spool = recordingSpool(env);
    const worker = testWorker();
    await worker.send(push("/durable/push", randomBytes(200 * 1024)), spool.env);
    const copy = spooledCopy(spool.spooled[0]);
    answer = 413;
    const batch = createMessageBatch("edge-mirror-spool", [
      { id: "x", timestamp: new Date(), attempts: 2, body: copy },
    ]);
    const ctx = createExecutionContext();
    await worker.worker.queue(batch, spool.env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["x"]);
    expect(worker.outcomes[1]).toMatchObject({ kind: "rejected", status: 413, attempt: 2 });
    expect(await spool.bucket.head((copy.body as { key: string }).key)).toBeNull();
  });

  it("falls back to best-effort, counted spool_unavailable, when the queue refuses; leaves no body in R2", async () => {
    origins(() => new Response(null, { status: 503 }));
    const spool = recordingSpool(env);
    spool.state.failQueue = true;
    const worker = testWorker();
    const listed = async () => (await spool.bucket.list({ prefix: "spool/" })).objects.length;
    const before = await listed();
    const { response } = await worker.send(push("/durable/push", randomBytes(200 * 1024)), spool.env);
    expect(response.status).toBe(204);
    expect(worker.outcomes).toEqual([
      expect.objectContaining({
        kind: "skipped",
        reason: "spool_unavailable",
        detail: expect.stringMatching(/^answered 503; not spooled: the queue refused the copy: .*Too Many Requests/),
      }),
    ]);
    expect(spool.calls.put).toBe(1);
    expect(await listed()).toBe(before);
  });

  it("is sent once, as a best-effort copy, by a deployment without the spool's bindings", async () => {
    origins(() => new Response(null, { status: 503 }));
    const { MIRROR_SPOOL: _q, MIRROR_DEAD_LETTERS: _d, MIRROR_SPOOL_BODIES: _b, ...rest } = env;
    const worker = testWorker();
    await worker.send(push("/durable/push", randomBytes(100)), rest as Env);
    expect(worker.outcomes).toEqual([
      expect.objectContaining({
        kind: "skipped",
        reason: "spool_unavailable",
        detail: "answered 503; not spooled: no MIRROR_SPOOL queue binding",
      }),
    ]);
  });

  it("spools at once, without trying, a copy whose mirror the breaker ejected", async () => {
    const seen = origins(() => new Response(null, { status: 503 }));
    const spool = recordingSpool(env);
    const worker = testWorker({ breaker: { threshold: 1, baseEjectionMs: 60_000, maxEjectionMs: 60_000 } });
    await worker.send(push("/durable/push", randomBytes(100)), spool.env);
    await worker.send(push("/durable/push", randomBytes(100)), spool.env);
    expect(seen.to(MIRROR)).toHaveLength(1);
    expect(worker.outcomes.map((o) => (o.kind === "spooled" ? o.error : o.kind))).toEqual(["status", "circuit_open"]);
    expect(spooledCopy(spool.spooled[1]).sentInline).toBe(false);
  });

  it("sends dead copies read back from the dead-letter queue to the spool again, from their first attempt", async () => {
    origins(() => new Response(null, { status: 503 }));
    const spool = recordingSpool(env);
    const worker = testWorker();
    await worker.send(push("/durable/push", randomBytes(100)), spool.env);
    const copy = spooledCopy(spool.spooled[0]);
    const dead: SpooledCopy = {
      ...copy,
      dead: { at: Date.now(), attempts: 3, cause: "answered 503 (attempt 3 of 3)" },
    };
    const gone: SpooledCopy = { ...dead, body: { kind: "dropped", size: 400_000 } };
    const batch = createMessageBatch("edge-mirror-spool-dead", [
      { id: "d1", timestamp: new Date(), attempts: 1, body: dead },
      { id: "d2", timestamp: new Date(), attempts: 1, body: gone },
    ]);
    const ctx = createExecutionContext();
    await worker.worker.queue(batch, spool.env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks.sort()).toEqual(["d1", "d2"]);
    expect(spool.spooled).toHaveLength(2);
    const again = spooledCopy(spool.spooled[1]);
    expect(again.dead).toBeUndefined();
    expect(again.redriven).toBe(1);
    expect(again.body).toEqual(copy.body);
    expect(worker.outcomes.slice(1)).toEqual([expect.objectContaining({ kind: "redriven" })]);
  });

  it("drops, logged, a message that is not a spooled copy", async () => {
    const spool = recordingSpool(env);
    const worker = testWorker();
    const batch = createMessageBatch("edge-mirror-spool", [
      { id: "junk", timestamp: new Date(), attempts: 1, body: { v: 1, url: "file:///etc/passwd" } },
    ]);
    const ctx = createExecutionContext();
    await worker.worker.queue(batch, spool.env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks).toEqual(["junk"]);
    expect(worker.outcomes as MirrorOutcome[]).toEqual([]);
  });
});

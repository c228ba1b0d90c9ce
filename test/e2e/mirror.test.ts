import { hkdfSync, randomBytes } from "node:crypto";
import { request } from "node:http";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { stickyPoint } from "../../src/mirror/plan.js";
import { sipKey } from "../../src/siphash/index.js";
import { clusterKey, DEPLOYMENT_KEY_KEY, routeKey } from "../../src/store/keys.js";
import { logged, sha256, until } from "./helpers.ts";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

let primary: Origin;
let mirror1: Origin;
let mirror2: Origin;
let slow: Origin;
let worker: Worker;
const logs: string[] = [];

/** Repeats `attempt` (at most 40 times, 100 ms apart) until it reports success. */
async function retry(attempt: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 40; i++) {
    if (await attempt()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function putRoute(route: { id: string; [field: string]: unknown }): Promise<void> {
  return worker.kv.put(routeKey(route.id), JSON.stringify(route));
}

/**
 * One request as a client that sends its own `Upgrade` and `Connection` fields makes it (`fetch`
 * in Node refuses them): the status and body of the answer.
 */
function sendRaw(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    // A connection of its own: one that asked to upgrade is not one to reuse.
    const sent = request(url, {
      method,
      agent: false,
      headers: body ? { ...headers, "content-length": String(body.length) } : headers,
    });
    sent.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    sent.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: Buffer.alloc(0) });
    });
    sent.on("error", reject);
    sent.end(body);
  });
}

/** Policies for the worker under test, and for the second worker of the sticky-sampling test. */
function policies() {
  return policyEntries({
    clusters: {
      "service1-mirror": { origin: mirror1.url },
      "service2-mirror": { origin: mirror2.url },
      "cortex-secondary": { origin: mirror2.url },
      slow: { origin: slow.url },
    },
    routes: [
      {
        id: "service-1",
        match: { path: { type: "PathPrefix", value: "/service/1" } },
        mirrors: [{ cluster: "service1-mirror" }],
      },
      {
        id: "service-2",
        match: { path: { type: "PathPrefix", value: "/service/2" } },
        mirrorFromHeader: { header: "x-mirror-cluster", allow: ["service2-mirror"] },
      },
      {
        id: "remote-write",
        match: { path: { type: "Exact", value: "/api/v1/push" } },
        mirrors: [{ cluster: "cortex-secondary" }],
      },
      { id: "slow", match: { path: { type: "PathPrefix", value: "/slow" } }, mirrors: [{ cluster: "slow" }] },
      {
        id: "strict-primary",
        match: { path: { type: "PathPrefix", value: "/strict" } },
        backends: [{ cluster: "slow" }],
        timeoutMs: 300,
      },
      {
        id: "v1",
        match: { path: { type: "PathPrefix", value: "/api/v1" } },
        mirrors: [
          {
            cluster: "service1-mirror",
            urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } },
          },
          {
            cluster: "service2-mirror",
            urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/shadow/sink" } },
          },
        ],
      },
      {
        id: "sticky",
        match: { path: { type: "PathPrefix", value: "/sticky" } },
        mirrors: [{ cluster: "service1-mirror", percent: 30, sampleBy: { header: "x-user-id" } }],
      },
    ],
  });
}

function startTestWorker(
  onLog: (line: string) => void = () => {},
  more: Record<string, unknown> = {},
): Promise<Worker> {
  return startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, POLICY_CACHE_TTL_MS: "200" },
    onLog,
    direct: true,
    policies: { ...policies(), ...more },
  });
}

/** The route a copy's marker (`<route>;t=…;b=…;sig=…`) names. */
function markedRoute(marker: string | string[] | undefined): string | undefined {
  return typeof marker === "string" ? marker.split(";")[0] : undefined;
}

beforeAll(async () => {
  primary = await startOrigin({ name: "primary" });
  mirror1 = await startOrigin({ name: "service1-mirror" });
  mirror2 = await startOrigin({ name: "service2-mirror" });
  slow = await startOrigin({ name: "slow-mirror" });
  worker = await startTestWorker((line) => logs.push(line));
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary, mirror1, mirror2, slow].map((o) => o?.close()));
});

beforeEach(() => {
  for (const o of [primary, mirror1, mirror2, slow]) o.reset();
  slow.setDelay(0);
});

describe("edge-mirror in workerd with real origins", () => {
  it("answers from the primary and mirrors a binary POST byte for byte, with the -shadow host", async () => {
    const body = randomBytes(300 * 1024);
    const res = await fetch(`${worker.url}/service/1/upload?b=2&a=1&enc=%2Fx`, {
      method: "POST",
      body,
      headers: {
        "content-type": "application/octet-stream",
        "x-custom": "kept",
        authorization: "Bearer t",
        // Cloudflare Access's assertion passes; the edge's own fields do not.
        "cf-access-jwt-assertion": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "cf-ipcountry": "NZ",
      },
    });
    const answer = (await res.json()) as { servedBy: string; sha256: string; bytes: number };
    expect(res.status).toBe(200);
    expect(answer).toMatchObject({ servedBy: "primary", bytes: body.length, sha256: sha256(body) });

    await mirror1.waitForCount(1);
    const [p] = primary.requests;
    const [m] = mirror1.requests;
    expect(m?.method).toBe("POST");
    expect(m?.url).toBe("/service/1/upload?b=2&a=1&enc=%2Fx");
    expect(p?.url).toBe(m?.url);
    // The tee keeps the known length: origins that insist on Content-Length still get it.
    expect(p?.headers["content-length"]).toBe(String(body.length));
    expect(p?.headers["transfer-encoding"]).toBeUndefined();
    expect(m?.sha256).toBe(sha256(body));
    expect(m?.headers["content-type"]).toBe("application/octet-stream");
    expect(m?.headers["x-custom"]).toBe("kept");
    expect(m?.headers.authorization).toBe("Bearer t");
    for (const seen of [p, m]) {
      expect(seen?.headers["cf-access-jwt-assertion"]).toBe("eyJhbGciOiJSUzI1NiJ9.e30.sig");
      expect(seen?.headers["cf-ipcountry"]).toBeUndefined();
    }
    const host = new URL(worker.url).host;
    expect(p?.headers["x-forwarded-host"]).toBe(host);
    expect(m?.headers["x-forwarded-host"]).toBe(host.replace(/:(\d+)$/, "-shadow:$1"));
    expect(m?.headers["x-edge-mirror"]).toMatch(new RegExp(`^service-1;t=\\d+;b=${sha256(body)};sig=[0-9a-f]{64}$`));
    expect(p?.headers["x-edge-mirror"]).toBeUndefined();
  });

  it("copies a request whose path spells the route's with escapes; the primary gets it byte for byte", async () => {
    const body = randomBytes(16 * 1024);
    const res = await fetch(`${worker.url}/%73ervice/%31/upload?to=%41b&enc=%2f`, { method: "POST", body });
    expect(((await res.json()) as { servedBy: string }).servedBy).toBe("primary");
    // And a rewritten copy: from the path the route matched, /api/v1.
    await fetch(`${worker.url}/api/%76%31/users/a%2fb?q=%76`);
    await mirror1.waitForCount(2);
    // The route's other mirror replaces the whole path; waited for, so that no copy outlives this test.
    await mirror2.waitForCount(1);
    expect(mirror2.requests.map((r) => r.url)).toEqual(["/shadow/sink?q=%76"]);
    expect(primary.requests.map((r) => [r.method, r.url])).toEqual([
      ["POST", "/%73ervice/%31/upload?to=%41b&enc=%2f"],
      ["GET", "/api/%76%31/users/a%2fb?q=%76"],
    ]);
    expect(primary.requests[0]?.sha256).toBe(sha256(body));
    expect(mirror1.requests.map((r) => [r.method, r.url, markedRoute(r.headers["x-edge-mirror"])])).toEqual([
      ["POST", "/%73ervice/%31/upload?to=%41b&enc=%2f", "service-1"],
      ["GET", "/v2/users/a%2Fb?q=%76", "v1"],
    ]);
    expect(mirror1.requests[0]?.sha256).toBe(sha256(body));
  });

  it("mirrors to the cluster named by x-mirror-cluster, and not to unknown or unlisted ones (seed 002)", async () => {
    for (const name of [undefined, "service2-mirror-non-existent", "service1-mirror", "service2-mirror"]) {
      const res = await fetch(`${worker.url}/service/2`, { headers: name ? { "x-mirror-cluster": name } : {} });
      expect(((await res.json()) as { servedBy: string }).servedBy).toBe("primary");
    }
    await mirror2.waitForCount(1);
    expect(primary.count).toBe(4);
    expect(mirror2.requests.map((r) => markedRoute(r.headers["x-edge-mirror"]))).toEqual(["service-2"]);
    expect(mirror1.count).toBe(0);
  });

  it("shadows Prometheus remote-write to a second cluster (seed 000)", async () => {
    const snappy = randomBytes(8 * 1024);
    const res = await fetch(`${worker.url}/api/v1/push`, {
      method: "POST",
      body: snappy,
      headers: {
        "content-type": "application/x-protobuf",
        "content-encoding": "snappy",
        "x-prometheus-remote-write-version": "0.1.0",
      },
    });
    expect(res.status).toBe(200);
    await mirror2.waitForCount(1);
    expect(mirror2.requests[0]?.sha256).toBe(sha256(snappy));
    expect(mirror2.requests[0]?.headers["content-encoding"]).toBe("snappy");
  });

  it("reuses its connections to a mirror: small answers are read to their end, not cancelled", async () => {
    const copies = 20;
    const before = mirror2.connections;
    for (let i = 1; i <= copies; i++) {
      const res = await fetch(`${worker.url}/api/v1/push`, { method: "POST", body: randomBytes(1024) });
      await res.arrayBuffer();
      await mirror2.waitForAnswered(i);
    }
    // Cancelling each answer closed its connection: one per copy. Read to the end, the pool keeps them.
    const opened = mirror2.connections - before;
    expect(opened, `${opened} connections for ${copies} copies`).toBeLessThanOrEqual(copies / 4);
  });

  it("answers the client while a slow mirror still holds its copy", async () => {
    const release = slow.hold();
    try {
      const res = await fetch(`${worker.url}/slow/x`, { method: "POST", body: "payload" });
      expect(((await res.json()) as { servedBy: string }).servedBy).toBe("primary");
      // The copy was dispatched and is still unanswered, yet the client already has its response.
      await slow.waitForCount(1);
      expect(slow.answered).toBe(0);
    } finally {
      release();
    }
    await slow.waitForAnswered(1);
    expect(slow.requests[0]?.body.toString()).toBe("payload");
  });

  it("turns a primary that does not answer in time into 504, and an unreachable one into 502", async () => {
    slow.setDelay(2000);
    const timedOut = await fetch(`${worker.url}/strict`);
    expect(timedOut.status).toBe(504);
    expect(await timedOut.json()).toEqual({ error: "primary_timeout", message: "the primary did not answer in time" });
    // The detail is the log's, never the client's.
    const failed = () => logged(logs, "edge-mirror.primary_failed");
    await until(() => failed().length > 0, 5_000);
    expect(failed()).toEqual([
      {
        msg: "edge-mirror.primary_failed",
        route: "strict-primary",
        code: "primary_timeout",
        status: 504,
        detail: "primary did not answer within 300 ms",
      },
    ]);

    await worker.kv.put(clusterKey("dead"), JSON.stringify({ origin: "http://127.0.0.1:9" }));
    await putRoute({
      id: "dead",
      match: { path: { type: "PathPrefix", value: "/dead" } },
      backends: [{ cluster: "dead" }],
    });
    let status = 0;
    await retry(async () => {
      status = (await fetch(`${worker.url}/dead`)).status;
      return status === 502;
    });
    expect(status).toBe(502);
  });

  it("rewrites the mirrors' paths, keeping escapes and the query byte for byte, and never the primary's", async () => {
    const res = await fetch(`${worker.url}/api/v1/users/a%2Fb/%E2%9C%93?b=2&a=1&enc=%2F&sp=a+b`, {
      method: "PUT",
      body: "v1 body",
    });
    expect(((await res.json()) as { servedBy: string }).servedBy).toBe("primary");
    await Promise.all([mirror1.waitForCount(1), mirror2.waitForCount(1)]);
    expect(primary.requests.map((r) => r.url)).toEqual(["/api/v1/users/a%2Fb/%E2%9C%93?b=2&a=1&enc=%2F&sp=a+b"]);
    expect(mirror1.requests.map((r) => [r.method, r.url, r.body.toString()])).toEqual([
      ["PUT", "/v2/users/a%2Fb/%E2%9C%93?b=2&a=1&enc=%2F&sp=a+b", "v1 body"],
    ]);
    expect(mirror2.requests.map((r) => r.url)).toEqual(["/shadow/sink?b=2&a=1&enc=%2F&sp=a+b"]);
  });

  it("samples by a user id the same way in two workers of a deployment, and as the documented hash predicts", async () => {
    // The deployment's key, which the worker created in KV on its first request; clients never see it.
    await (await fetch(`${worker.url}/unmatched`)).arrayBuffer();
    let stored: string | null = null;
    await retry(async () => {
      stored = await worker.kv.get(DEPLOYMENT_KEY_KEY);
      return stored !== null;
    });
    const deploymentKey = JSON.parse(stored as unknown as string) as { key: string };
    // As the README documents it: HKDF-SHA-256 of the secret, no salt, its own info, 128 bits.
    const sticky = sipKey(
      new Uint8Array(hkdfSync("sha256", deploymentKey.key, "", "edge-mirror sticky sampling v1", 16)),
    );
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    const expected = users.filter((user) => stickyPoint(user, "service1-mirror", sticky) < 0.3);
    expect(expected.length).toBeGreaterThan(5);
    expect(expected.length).toBeLessThan(30);
    const mirroredBy = async (target: Worker): Promise<string[]> => {
      mirror1.reset();
      for (const user of users) {
        await (await fetch(`${target.url}/sticky/${user}`, { headers: { "x-user-id": user } })).arrayBuffer();
      }
      await mirror1.waitForCount(expected.length);
      // A copy that is always sent, last: copies of the earlier requests have arrived by then.
      await (await fetch(`${target.url}/service/1/end`)).arrayBuffer();
      await mirror1.waitForCount(expected.length + 1);
      return mirror1.requests
        .filter((r) => r.url.startsWith("/sticky/"))
        .map((r) => r.url.slice("/sticky/".length))
        .sort();
    };

    expect(await mirroredBy(worker)).toEqual([...expected].sort());
    // A second worker of the same deployment: its own isolate, the same KV.
    const second = await startTestWorker(() => {}, { [DEPLOYMENT_KEY_KEY]: deploymentKey });
    try {
      expect(await mirroredBy(second)).toEqual([...expected].sort());
    } finally {
      await second.dispose();
    }
  });

  it("picks up a policy edited in KV without a restart", async () => {
    await putRoute({
      id: "late",
      match: { path: { type: "PathPrefix", value: "/late" } },
      mirrors: [{ cluster: "service1-mirror" }],
    });
    await retry(async () => {
      await (await fetch(`${worker.url}/late`)).arrayBuffer();
      return mirror1.count > 0;
    });
    expect(markedRoute(mirror1.requests[0]?.headers["x-edge-mirror"])).toBe("late");
  });

  it("logs each mirror outcome as one structured line", async () => {
    await (await fetch(`${worker.url}/service/1/logged`)).arrayBuffer();
    await mirror1.waitForCount(1);
    const isOutcome = (l: string) => l.includes("edge-mirror.mirror") && l.includes('"route":"service-1"');
    await retry(async () => logs.some(isOutcome));
    const line = logs.find(isOutcome);
    expect(line).toBeDefined();
    expect(JSON.parse((line as string).slice((line as string).indexOf("{")))).toMatchObject({
      kind: "sent",
      mirror: "service1-mirror",
      status: 200,
    });
  });
});

/**
 * `Upgrade: websocket` makes workerd's `fetch` open a WebSocket, with a GET and no body, so a
 * request that is no WebSocket handshake must reach the origins without it, as what it is. The
 * requests go to the worker's own socket: Miniflare's entry worker, a `fetch` of its own, would
 * turn them into GETs before the worker saw them (a deployed worker has nothing in front).
 */
describe("Upgrade on a request that is no WebSocket handshake", () => {
  const direct = () => worker.directUrl as string;

  it("a POST with Upgrade: websocket reaches the primary and the mirror as that POST, its body byte for byte", async () => {
    const body = randomBytes(200 * 1024);
    const answer = await sendRaw(
      `${direct()}/service/1/upgrade?b=2&a=1`,
      "POST",
      { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==" },
      body,
    );
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body.toString())).toMatchObject({
      servedBy: "primary",
      method: "POST",
      bytes: body.length,
      sha256: sha256(body),
    });
    await mirror1.waitForCount(1);
    for (const seen of [primary.requests[0], mirror1.requests[0]]) {
      expect(seen?.method).toBe("POST");
      expect(seen?.url).toBe("/service/1/upgrade?b=2&a=1");
      expect(seen?.sha256).toBe(sha256(body));
      expect(seen?.headers.upgrade).toBeUndefined();
    }
  });

  it("a GET with Upgrade: websocket but no Sec-WebSocket-Key is a plain GET, answered and mirrored", async () => {
    const answer = await sendRaw(`${direct()}/service/1/plain`, "GET", {
      upgrade: "websocket",
      connection: "Upgrade",
    });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body.toString())).toMatchObject({ servedBy: "primary", method: "GET", bytes: 0 });
    await mirror1.waitForCount(1);
    expect(mirror1.requests.map((r) => [r.method, r.url, r.headers.upgrade])).toEqual([
      ["GET", "/service/1/plain", undefined],
    ]);
  });
});

import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import WebSocket from "ws";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { startWebSocketOrigin } from "../../scripts/lib/websocket-origin.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { adminStats, mirrorOutcomes, until } from "./helpers.ts";

/**
 * edge-mirror sits in front of everything a zone serves, WebSockets included: a real `ws` client
 * talks through the bundled worker in workerd to a real `ws` server. The handshake must reach
 * the primary with its path and query byte-exact and the route's header changes, frames and
 * close codes must pass both ways, and an upgrade is never mirrored: each mirror of the route
 * gets a logged, counted `upgrade` skip and no copy.
 */
const PATH = "/chat/%7Eroom?x=1&x=2&y=%20";
const TOKEN = "websocket-test-admin-token-0123456789";
const SUBPROTOCOL = "graphql-transport-ws";

type Worker = Awaited<ReturnType<typeof startWorker>>;
let origin: Awaited<ReturnType<typeof startWebSocketOrigin>>;
let mirror: Awaited<ReturnType<typeof startOrigin>>;
/** PRIMARY_ORIGIN is the WebSocket origin. */
let viaPrimaryOrigin: Worker;
/** No PRIMARY_ORIGIN: the primary is a route's backend, or the request URL. */
let viaBackends: Worker;
const logs: string[] = [];

interface Frame {
  data: Buffer;
  binary: boolean;
}

/** A connected client whose frames queue up until the test asks for them. */
interface Client {
  socket: WebSocket;
  /** The status line the client saw for its handshake. */
  status: number;
  next(): Promise<Frame>;
  closed: Promise<{ code: number; reason: string }>;
}

function wsUrl(worker: Worker, path: string): string {
  return `${worker.url.replace(/^http/, "ws")}${path}`;
}

/** Opens a WebSocket through the worker; rejects with the status when the handshake is refused. */
function connect(url: string, headers: Record<string, string> = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    // A subprotocol (as GraphQL over WebSocket asks for) must be negotiated end to end.
    const socket = new WebSocket(url, [SUBPROTOCOL], { headers });
    const frames: Frame[] = [];
    const waiting: Array<(frame: Frame) => void> = [];
    let status = 0;
    socket.on("upgrade", (res) => {
      status = res.statusCode ?? 0;
    });
    socket.on("message", (data, binary) => {
      const frame = { data: Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), binary };
      const waiter = waiting.shift();
      if (waiter) waiter(frame);
      else frames.push(frame);
    });
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      socket.on("close", (code, reason) => done({ code, reason: reason.toString() })),
    );
    socket.on("unexpected-response", (_req, res) => {
      socket.terminate();
      reject(Object.assign(new Error(`handshake answered ${res.statusCode}`), { status: res.statusCode }));
    });
    socket.on("error", reject);
    socket.on("open", () =>
      resolve({
        socket,
        status,
        closed,
        next: () => {
          const frame = frames.shift();
          return frame ? Promise.resolve(frame) : new Promise((r) => waiting.push(r));
        },
      }),
    );
  });
}

/**
 * One full conversation on `path`: the handshake as the origin saw it, text and binary echoed
 * both ways, and close codes passed on in both directions (client 4001, then origin 4002 on a
 * second connection). Returns the handshakes the origin recorded.
 */
async function converse(worker: Worker, path: string, headers: Record<string, string> = {}) {
  origin.reset();
  const client = await connect(wsUrl(worker, path), headers);
  expect(client.status).toBe(101);
  expect(client.socket.protocol).toBe(SUBPROTOCOL);

  client.socket.send("hello, primary");
  expect(await client.next()).toEqual({ data: Buffer.from("hello, primary"), binary: false });
  const bytes = randomBytes(70_000);
  client.socket.send(bytes);
  const echoed = await client.next();
  expect(echoed.binary).toBe(true);
  expect(echoed.data.equals(bytes)).toBe(true);

  client.socket.close(4001, "client leaves");
  expect((await client.closed).code).toBe(4001);
  await origin.waitForCloses(1);
  expect(origin.closes).toEqual([4001]);

  const second = await connect(wsUrl(worker, path), headers);
  second.socket.send("close 4002");
  expect((await second.closed).code).toBe(4002);
  await origin.waitForCloses(2);
  expect(origin.handshakes).toHaveLength(2);
  return origin.handshakes;
}

/**
 * A plain request on the route is mirrored (`copies` copies): what the mirror receives first.
 * Copies of the upgrades would have left before it, so the mirror must see only this one.
 */
async function onlyPlainCopies(worker: Worker, copies: number) {
  expect((await fetch(`${worker.url}/chat/plain`)).status).toBe(426);
  await mirror.waitForCount(copies);
  expect(mirror.requests.map((r) => [r.url, r.headers.upgrade])).toEqual(
    Array.from({ length: copies }, () => ["/chat/plain", undefined]),
  );
}

async function stats(worker: Worker) {
  const { status, stats } = await adminStats<{
    routes: Array<{
      route: string;
      requests: number;
      mirrors: Array<{ mirror: string; sent: number; skipped: object }>;
    }>;
  }>(worker.url, TOKEN);
  expect(status).toBe(200);
  return stats;
}

/** The route's counters once `requests` requests have been counted (they reach the Durable Object in the background). */
async function routeStats(worker: Worker, route: string, requests: number) {
  let row: Awaited<ReturnType<typeof stats>>["routes"][number] | undefined;
  await until(async () => {
    row = (await stats(worker)).routes.find((r) => r.route === route);
    return (row?.requests ?? 0) >= requests;
  }, 10_000);
  return row;
}

beforeAll(async () => {
  origin = await startWebSocketOrigin();
  mirror = await startOrigin({ name: "mirror" });
  const common = { scriptPath: inject("workerScript"), onLog: (line: string) => logs.push(line) };
  viaPrimaryOrigin = await startWorker({
    ...common,
    vars: { PRIMARY_ORIGIN: origin.url, ADMIN_TOKEN: TOKEN },
    policies: policyEntries({
      clusters: { mirror: { origin: mirror.url } },
      routes: [
        {
          id: "chat",
          match: { path: { type: "PathPrefix", value: "/chat" } },
          requestHeaders: { set: { "x-route": "chat" }, add: { "x-trace": "edge" }, remove: ["x-drop-me"] },
          mirrors: [{ cluster: "mirror" }],
        },
      ],
    }),
  });
  viaBackends = await startWorker({
    ...common,
    vars: { PRIMARY_ORIGIN: "", ADMIN_TOKEN: TOKEN },
    policies: policyEntries({
      clusters: { mirror: { origin: mirror.url }, sockets: { origin: origin.url } },
      routes: [
        {
          id: "chat-backends",
          match: { path: { type: "PathPrefix", value: "/chat" } },
          backends: [{ cluster: "sockets" }],
          mirrors: [{ cluster: "mirror" }, { origin: mirror.url }],
        },
      ],
    }),
  });
});

afterAll(async () => {
  await Promise.all([viaPrimaryOrigin?.dispose(), viaBackends?.dispose()]);
  await Promise.all([origin?.close(), mirror?.close()]);
});

describe("WebSockets pass through edge-mirror", () => {
  it("a matched route: handshake byte-exact with the route's header changes, frames and close codes both ways, never mirrored", async () => {
    mirror.reset();
    const [handshake] = await converse(viaPrimaryOrigin, PATH, { "x-trace": "client", "x-drop-me": "secret" });
    expect(handshake?.url).toBe(PATH);
    expect(handshake?.headers).toMatchObject({
      upgrade: "websocket",
      "x-route": "chat",
      "x-trace": "client,edge",
      "x-forwarded-host": new URL(viaPrimaryOrigin.url).host,
    });
    expect(handshake?.headers["x-drop-me"]).toBeUndefined();

    // Both upgrades were skipped for the mirror, in the log and in the counters.
    const skips = () =>
      mirrorOutcomes(logs).filter((o) => o.route === "chat" && o.kind === "skipped" && o.reason === "upgrade");
    await until(() => skips().length >= 2, 10_000);
    expect(skips().map((o) => o.mirror)).toEqual(["mirror", "mirror"]);
    const row = await routeStats(viaPrimaryOrigin, "chat", 2);
    expect(row).toMatchObject({ requests: 2, mirrored: 0 });
    expect(row?.mirrors).toEqual([expect.objectContaining({ mirror: "mirror", sent: 0, skipped: { upgrade: 2 } })]);

    await onlyPlainCopies(viaPrimaryOrigin, 1);
  });

  it("an unmatched path goes to PRIMARY_ORIGIN with no route's header changes", async () => {
    const [handshake] = await converse(viaPrimaryOrigin, `/lobby${PATH}`);
    expect(handshake?.url).toBe(`/lobby${PATH}`);
    expect(handshake?.headers).toMatchObject({
      upgrade: "websocket",
      "sec-websocket-protocol": SUBPROTOCOL,
      "x-forwarded-host": new URL(viaPrimaryOrigin.url).host,
    });
    expect(handshake?.headers["x-route"]).toBeUndefined();
  });

  it("a route's backend is the primary when PRIMARY_ORIGIN is empty; every mirror is skipped", async () => {
    mirror.reset();
    const [handshake] = await converse(viaBackends, PATH);
    expect(handshake?.url).toBe(PATH);
    const skips = () =>
      mirrorOutcomes(logs).filter((o) => o.route === "chat-backends" && o.kind === "skipped" && o.reason === "upgrade");
    await until(() => skips().length >= 4, 10_000);
    expect(
      skips()
        .map((o) => o.mirror)
        .sort(),
    ).toEqual(["mirror", "mirror", mirror.url, mirror.url].sort());
    const row = await routeStats(viaBackends, "chat-backends", 2);
    expect(row?.mirrors.map((m) => [m.mirror, m.sent, m.skipped])).toEqual([
      [mirror.url, 0, { upgrade: 2 }],
      ["mirror", 0, { upgrade: 2 }],
    ]);
    await onlyPlainCopies(viaBackends, 2);
  });

  it("an unmatched path without PRIMARY_ORIGIN goes to the request URL: here the worker itself, so 508", async () => {
    const refused = await connect(wsUrl(viaBackends, `/lobby${PATH}`)).then(
      () => 0,
      (err: { status?: number }) => err.status,
    );
    expect(refused).toBe(508);
  });
});

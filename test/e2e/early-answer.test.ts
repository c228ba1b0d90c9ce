import { randomBytes } from "node:crypto";
import { Agent } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startEarlyAnswerOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { exchange } from "./helpers.ts";

/**
 * A primary that answers before reading the upload (an auth check's 401, a 413) must cost the
 * client neither a reset nor its keep-alive connection: each upload below goes through the
 * bundled worker in workerd, and a second request follows on the same connection. The fault
 * suite does the same with many uploads at once.
 */
type EarlyOrigin = Awaited<ReturnType<typeof startEarlyAnswerOrigin>>;
const STYLES = ["node", "linger", "go"] as const;
const upload = randomBytes(20 * 1024 * 1024);
const origins = new Map<string, EarlyOrigin>();
let worker: Awaited<ReturnType<typeof startWorker>>;

beforeAll(async () => {
  for (const style of STYLES) origins.set(style, await startEarlyAnswerOrigin({ style, status: 401 }));
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    policies: policyEntries({
      routes: STYLES.map((style) => ({
        id: style,
        match: { path: { type: "PathPrefix", value: `/${style}` } },
        backends: [{ origin: origins.get(style)?.url }],
      })),
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([...origins.values()].map((o) => o.close()));
});

describe("a primary that answers before reading the upload", () => {
  it.each([
    ["node", "Node's server reads the rest itself"],
    ["linger", "nginx's lingering close"],
  ] as const)("%s (%s): the client gets the 401 with its body and keeps its connection", async (style, _how) => {
    const origin = origins.get(style) as EarlyOrigin;
    for (const chunked of [false, true]) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await exchange(agent, `${worker.url}/${style}/upload`, "POST", upload, chunked);
        expect(first.error).toBeUndefined();
        expect(first.status).toBe(401);
        expect(first.body?.toString()).toBe(origin.body);
        const next = await exchange(agent, `${worker.url}/${style}/next`, "GET");
        expect(next).toMatchObject({ status: 401 });
        expect(next.socket).toBe(first.socket);
      } finally {
        agent.destroy();
      }
    }
  });

  it("go (Go's server closes 500 ms later): the 401 if it arrived, else a clean 502; never a reset", async () => {
    for (const chunked of [false, true]) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await exchange(agent, `${worker.url}/go/upload`, "POST", upload, chunked);
        expect(first.error).toBeUndefined();
        if (first.status === 401) expect(first.body?.toString()).toBe(origins.get("go")?.body);
        else expect([first.status, JSON.parse(String(first.body)).error]).toEqual([502, "primary_unreachable"]);
        const next = await exchange(agent, `${worker.url}/go/next`, "GET");
        expect(next).toMatchObject({ status: 401 });
        expect(next.socket).toBe(first.socket);
      } finally {
        agent.destroy();
      }
    }
  });
});

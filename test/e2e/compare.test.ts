/**
 * Compare mode against real origins in workerd: the client's answer keeps its status, headers
 * (content-length included) and bytes, and does not wait for the compared mirror.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

const payload = randomBytes(1_500_000);
let primary: Origin;
let canary: Origin;
let worker: Worker;
const logs: string[] = [];

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

beforeAll(async () => {
  primary = await startOrigin({
    name: "primary",
    respond: (_seen, res) => {
      res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": payload.length,
        etag: '"v1"',
      });
      res.end(payload);
    },
  });
  canary = await startOrigin({
    name: "canary",
    respond: (_seen, res) =>
      void res.writeHead(200, { "content-type": "application/octet-stream" }).end(payload.subarray(1)),
  });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url },
    onLog: (line) => logs.push(line),
    policies: policyEntries({
      clusters: { canary: { origin: canary.url } },
      routes: [{ id: "blobs", mirrors: [{ cluster: "canary", compare: { maxBodyBytes: 2_000_000 } }] }],
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary?.close(), canary?.close()]);
});

describe("compare mode end to end", () => {
  it("answers with the primary's headers and bytes before the compared mirror answers", async () => {
    const release = canary.hold();
    try {
      const res = await fetch(`${worker.url}/blob/1`);
      const body = new Uint8Array(await res.arrayBuffer());
      expect(res.status).toBe(200);
      expect(res.headers.get("content-length")).toBe(String(payload.length));
      expect(res.headers.get("etag")).toBe('"v1"');
      expect(sha256(body)).toBe(sha256(payload));
      await canary.waitForCount(1);
      expect(canary.answered, "the canary is still held when the client has its answer").toBe(0);
    } finally {
      release();
    }
    const deadline = Date.now() + 15_000;
    while (!logs.some((l) => l.includes('"verdict"')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    const line = logs.find((l) => l.includes('"verdict"')) ?? "";
    const outcome = JSON.parse(line.slice(line.indexOf("{"))) as { compare: { verdict: string; fields: string[] } };
    expect(outcome.compare).toEqual({ verdict: "differ", fields: ["body"], noise: [] });
  });
});

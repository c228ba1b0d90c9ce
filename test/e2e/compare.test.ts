/**
 * Compare mode against real origins in workerd: the client's answer keeps its status, headers
 * (content-length included) and bytes, and does not wait for the compared mirror.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { adminStats, sha256 } from "./helpers.ts";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

const payload = randomBytes(1_500_000);
const TOKEN = "e2e-admin-token-0123456789abcdefghij";
let primary: Origin;
let canary: Origin;
let branch: Origin;
let worker: Worker;
const logs: string[] = [];

beforeAll(async () => {
  const catalog = (version: string) => JSON.stringify({ items: [{ id: 1, price: 25 }], version });
  primary = await startOrigin({
    name: "primary",
    respond: (seen, res) => {
      if (seen.url.startsWith("/catalog")) {
        res.writeHead(200, { "content-type": "application/json" }).end(catalog("2026.11"));
        return;
      }
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
  branch = await startOrigin({
    name: "my-branch",
    respond: (_seen, res) =>
      void res.writeHead(200, { "content-type": "application/json" }).end(catalog("2026.12-rc1")),
  });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN },
    onLog: (line) => logs.push(line),
    policies: policyEntries({
      clusters: { canary: { origin: canary.url }, "my-branch": { origin: branch.url } },
      routes: [
        { id: "blobs", mirrors: [{ cluster: "canary", compare: { maxBodyBytes: 2_000_000 } }] },
        {
          id: "catalog",
          match: { path: { type: "PathPrefix", value: "/catalog" } },
          mirrorFromHeader: { header: "x-mirror-cluster", allow: ["my-branch"], compare: true },
        },
      ],
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary?.close(), canary?.close(), branch?.close()]);
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

describe("compare on a header-chosen mirror end to end", () => {
  it("a developer sending their own requests to their branch sees a differ verdict and a sample", async () => {
    const res = await fetch(`${worker.url}/catalog/7?lang=en`, {
      headers: { "x-mirror-cluster": "my-branch", "cf-ray": "dev-ray-1" },
    });
    expect(await res.json()).toEqual({ items: [{ id: 1, price: 25 }], version: "2026.11" });
    await branch.waitForCount(1);
    expect(branch.requests[0]?.url).toBe("/catalog/7?lang=en");

    type Stats = {
      routes: Array<{ route: string; mirrors: Array<{ mirror: string; compare?: Record<string, number> }> }>;
      samples: Array<{ route: string; mirror: string; requestId: string; path: string; fields: string[] }>;
    };
    let stats: Stats = { routes: [], samples: [] };
    const deadline = Date.now() + 15_000;
    while (!stats.samples.some((s) => s.requestId === "dev-ray-1") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      ({ stats } = await adminStats<Stats>(worker.url, TOKEN));
    }
    expect(stats.routes.find((r) => r.route === "catalog")?.mirrors).toEqual([
      expect.objectContaining({ mirror: "my-branch", compare: expect.objectContaining({ differ: 1, match: 0 }) }),
    ]);
    expect(stats.samples.find((s) => s.requestId === "dev-ray-1")).toMatchObject({
      route: "catalog",
      mirror: "my-branch",
      path: "/catalog/7",
      fields: ["$.version"],
    });
  });

  it("does not mirror, or compare, a request that names no allowed cluster", async () => {
    const before = branch.count;
    await (await fetch(`${worker.url}/catalog/8`, { headers: { "x-mirror-cluster": "canary" } })).arrayBuffer();
    await (await fetch(`${worker.url}/catalog/8`)).arrayBuffer();
    await (await fetch(`${worker.url}/catalog/7`, { headers: { "x-mirror-cluster": "my-branch" } })).arrayBuffer();
    await branch.waitForCount(before + 1);
    expect(branch.requests.slice(before).map((r) => r.url)).toEqual(["/catalog/7"]);
    expect(canary.requests.map((r) => r.url)).not.toContain("/catalog/8");
  });
});

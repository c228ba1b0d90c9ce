/**
 * What may eject a mirror (Envoy-style outlier detection): no answer, a timeout, or a 5xx —
 * never a request the worker could not copy as it came. Real origins, the bundled worker.
 */
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { mirrorOutcomes, until } from "./helpers.ts";

type Origin = Awaited<ReturnType<typeof startOrigin>>;

let primary: Origin;
let failing: Origin;
let healthy: Origin;
let worker: Awaited<ReturnType<typeof startWorker>>;
const logs: string[] = [];

beforeAll(async () => {
  primary = await startOrigin({ name: "primary" });
  failing = await startOrigin({ name: "failing", respond: (_s, res) => void res.writeHead(503).end("busy") });
  healthy = await startOrigin({ name: "healthy" });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url },
    onLog: (line) => logs.push(line),
    policies: policyEntries({
      clusters: { failing: { origin: failing.url }, healthy: { origin: healthy.url } },
      routes: [
        {
          id: "five-hundreds",
          match: { path: { type: "PathPrefix", value: "/5xx" } },
          mirrors: [{ cluster: "failing" }],
        },
        { id: "get-body", match: { path: { type: "PathPrefix", value: "/get" } }, mirrors: [{ cluster: "healthy" }] },
      ],
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary, failing, healthy].map((o) => o?.close()));
});

function outcomesOf(route: string) {
  return mirrorOutcomes(logs).filter((o) => o.route === route);
}

async function settle(route: string, n: number) {
  await until(() => outcomesOf(route).length >= n, 10_000);
}

it("ejects a mirror that keeps answering 5xx, as one that does not answer", async () => {
  for (let i = 0; i < 12; i++) {
    const res = await fetch(`${worker.url}/5xx/${i}`);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    await settle("five-hundreds", i + 1);
  }
  const kinds = outcomesOf("five-hundreds").map((o) =>
    o.kind === "sent" ? `sent ${o.status}` : `${o.kind} ${o.error}`,
  );
  // Five consecutive 5xx eject it; the copies after that are not sent.
  expect(kinds.slice(0, 5)).toEqual(Array(5).fill("sent 503"));
  expect(kinds.slice(5)).toEqual(Array(7).fill("failed circuit_open"));
  expect(failing.count).toBe(5);
});

/** A GET with a body, as some clients send: fetch() cannot build such a request, so use node:http. */
function getWithBody(path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${worker.url}${path}`,
      { method: "GET", headers: { "content-length": body.length } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

it("passes a GET's body to the primary, copies the GET without it, and never holds it against the mirror", async () => {
  const body = "a body some clients send with GET";
  for (let i = 0; i < 8; i++) expect(await getWithBody(`/get/${i}`, body)).toBe(200);
  const atPrimary = primary.requests.filter((r) => r.url.startsWith("/get/"));
  expect(atPrimary.map((r) => [r.method, r.body.toString()])).toEqual(Array(8).fill(["GET", body]));
  await healthy.waitForCount(8);
  await settle("get-body", 8);
  expect(outcomesOf("get-body").map((o) => `${o.kind} ${o.status}`)).toEqual(Array(8).fill("sent 200"));
  expect(healthy.requests.map((r) => [r.method, r.body.length])).toEqual(Array(8).fill(["GET", 0]));
});

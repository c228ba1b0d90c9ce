/**
 * Per-field difference counts against real origins, in workerd: a canary that changes the
 * price on exactly every 3rd request it receives and one item id on all of them, a reference
 * replica whose timestamps differ (noise), and secrets in every answer. `api/stats` must count
 * each field as the origins imply, fold array indexes, cancel the noise, keep secrets out of
 * samples and examples, and serve a field's own samples.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

const TOKEN = "fields-e2e-admin-token-0123456789";
const REQUESTS = 30;

interface Field {
  field: string;
  differ: number;
  noise: number;
  examples: Array<{ path: string; primary: string; candidate: string }>;
}
interface Stats {
  routes: Array<{
    route: string;
    requests: number;
    mirrors: Array<{
      mirror: string;
      compare: { match: number; differ: number; fields: Field[]; noise: Array<{ field: string; noise: number }> };
    }>;
  }>;
}

let primary: Origin;
let replica: Origin;
let canary: Origin;
let worker: Worker;
let canaryCalls = 0;

function answer(res: import("node:http").ServerResponse, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

const doc = (price: number, secondId: number, apiKey: string) => ({
  items: [
    { id: 1, price },
    { id: secondId, price: 20 },
  ],
  api_key: apiKey,
  servedAt: Date.now() + Math.random(),
});

beforeAll(async () => {
  primary = await startOrigin({ name: "primary", respond: (_req, res) => answer(res, doc(10, 2, "primary-api-key")) });
  replica = await startOrigin({ name: "replica", respond: (_req, res) => answer(res, doc(10, 2, "primary-api-key")) });
  canary = await startOrigin({
    name: "canary",
    respond: (_req, res) => {
      canaryCalls++;
      answer(res, doc(canaryCalls % 3 === 0 ? 11 : 10, 22, "canary-api-key"));
    },
  });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off" },
    policies: policyEntries({
      clusters: { canary: { origin: canary.url }, replica: { origin: replica.url } },
      routes: [
        {
          id: "catalog",
          match: { path: { type: "PathPrefix", value: "/catalog" } },
          mirrors: [{ cluster: "canary", compare: { reference: { cluster: "replica" } } }],
        },
      ],
    }),
  });
  for (let i = 0; i < REQUESTS; i++) await fetch(`${worker.url}/catalog/${i}`).then((r) => r.text());
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary?.close(), replica?.close(), canary?.close()]);
});

const get = async (path: string) => {
  const res = await fetch(`${worker.url}/__mirror/api/${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  return res.json();
};

describe("field counts end to end", () => {
  it("count every field as the origins imply, indexes folded and noise apart", async () => {
    let compare: Stats["routes"][number]["mirrors"][number]["compare"] | undefined;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const data = (await get("stats?minutes=5")) as Stats;
      compare = data.routes.find((r) => r.route === "catalog")?.mirrors[0]?.compare;
      if ((compare?.differ ?? 0) + (compare?.match ?? 0) >= REQUESTS) break;
      if (Date.now() > deadline) throw new Error(`comparisons never arrived: ${JSON.stringify(data)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(canaryCalls).toBe(REQUESTS);
    const priceDiffers = Math.floor(canaryCalls / 3);
    expect(compare?.differ).toBe(REQUESTS);
    expect(compare?.fields.map((f) => [f.field, f.differ, f.noise])).toEqual([
      ["$.api_key", REQUESTS, 0],
      ["$.items[*].id", REQUESTS, 0],
      ["$.items[*].price", priceDiffers, 0],
    ]);
    expect(compare?.noise).toEqual([{ field: "$.servedAt", noise: REQUESTS }]);
    const price = compare?.fields.find((f) => f.field === "$.items[*].price");
    expect(price?.examples[0]).toMatchObject({ path: "$.items[0].price", primary: "10", candidate: "11" });
    const key = compare?.fields.find((f) => f.field === "$.api_key");
    expect(key?.examples.map((e) => [e.primary, e.candidate])).toEqual([
      ['"[redacted]"', '"[redacted]"'],
      ['"[redacted]"', '"[redacted]"'],
    ]);
  });

  it("serves a field's own newest samples, with no secret in them", async () => {
    const query = new URLSearchParams({ route: "catalog", mirror: "canary", field: "$.items[*].price" });
    const { samples } = (await get(`stats/samples?${query}`)) as {
      samples: Array<{ path: string; differences: Array<{ field: string; candidate: string }> }>;
    };
    expect(samples).toHaveLength(3);
    for (const s of samples) {
      expect(s.differences.find((d) => d.field === "$.items[*].price")?.candidate).toBe("11");
    }
    expect(samples.map((s) => s.path)).toEqual(["/catalog/29", "/catalog/26", "/catalog/23"]);
    const everything = JSON.stringify([samples, await get("stats?minutes=5")]);
    expect(everything).not.toMatch(/primary-api-key|canary-api-key/);
  });
});

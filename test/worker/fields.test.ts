/**
 * Field counts on the request path, in workerd: requests go through the exported worker to
 * intercepted origins, their outcomes are counted per field (array indexes folded), the stats
 * API and its samples endpoint read them back from the shards, secrets stay out of samples and
 * examples unless a route opts out, and names that plain objects would confuse with their
 * prototype's are counted like any other.
 */
import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DiffSample } from "../../src/compare/index.js";
import type { RouteSummary } from "../../src/stats/summary.js";
import { adminStats, callWorker, interceptFetch, putPolicies, testWorker } from "./helpers.js";

const PRIMARY = "http://primary.test:8080";
const CANARY = "http://canary.test:9002";
const testEnv = { ...env, PRIMARY_ORIGIN: PRIMARY, ADMIN_TOKEN: "fields-test-admin-token-0123456789" } as Env;

let fetches: ReturnType<typeof interceptFetch>;
let canaryCalls = 0;

const json = (body: unknown) => new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });

/** The canary changes every 3rd price and one item's id, and never sends the primary's token. */
function catalog(token: string, canary: boolean, n: number) {
  return {
    items: [
      { id: 1, price: canary && n % 3 === 0 ? 11 : 10 },
      { id: canary ? 20 : 2, price: canary && n % 3 === 0 ? 21 : 20 },
    ],
    token,
    session: { id: `${token}-session` },
  };
}

beforeEach(async () => {
  await reset();
  canaryCalls = 0;
  fetches = interceptFetch({
    [PRIMARY]: () => json(catalog("primary-token-value", false, 0)),
    [CANARY]: () => json(catalog("canary-token-value", true, ++canaryCalls)),
  });
  await putPolicies({
    clusters: { canary: CANARY },
    routes: [
      {
        id: "catalog",
        match: { path: { type: "PathPrefix", value: "/catalog" } },
        mirrors: [{ cluster: "canary", compare: true }],
      },
      {
        id: "open",
        match: { path: { type: "PathPrefix", value: "/open" } },
        mirrors: [{ cluster: "canary", compare: { redactSecrets: false } }],
      },
      {
        id: "constructor",
        match: { path: { type: "PathPrefix", value: "/ctor" } },
        // "constructor" may be asked for (no such cluster exists); "__proto__" is not even a valid name.
        mirrorFromHeader: { header: "x-mirror-cluster", allow: ["constructor"] },
      },
    ],
  });
});

afterEach(() => fetches.restore());

function viaWorker(path: string, init: RequestInit = {}): Promise<Response> {
  return callWorker(new Request(`https://edge.example.com${path}`, init), testEnv, { readFirst: true });
}

const admin = { authorization: "Bearer fields-test-admin-token-0123456789" };

describe("field counts on the request path", () => {
  it("reports each differing field once per request, indexes folded, secrets redacted", async () => {
    const { outcomes, send } = testWorker();
    for (let i = 0; i < 3; i++) await send(new Request("https://edge.example.com/catalog"), testEnv);
    expect(outcomes.map((o) => (o.kind === "sent" ? o.compare?.fields : undefined))).toEqual([
      ["$.items[*].id", "$.session.id", "$.token"],
      ["$.items[*].id", "$.session.id", "$.token"],
      ["$.items[*].price", "$.items[*].id", "$.session.id", "$.token"],
    ]);
    const sample = outcomes[2]?.kind === "sent" ? outcomes[2].sample : undefined;
    expect(sample?.differences).toContainEqual({
      field: "$.items[*].price",
      path: "$.items[0].price",
      primary: "10",
      candidate: "11",
    });
    expect(sample?.differences.find((d) => d.field === "$.token")).toMatchObject({
      primary: '"[redacted]"',
      candidate: '"[redacted]"',
    });
    const text = JSON.stringify(sample);
    expect(text).not.toMatch(/primary-token-value|canary-token-value/);
  });

  it("counts them exactly in the stats API, with examples and per-field samples", async () => {
    const N = 12;
    for (let i = 0; i < N; i++) await viaWorker("/catalog/x", { headers: { "cf-ray": `ray-${i}` } });
    const res = await adminStats(testEnv, "?minutes=5");
    const data = (await res.json()) as { routes: RouteSummary[]; samples: DiffSample[] };
    const mirror = data.routes.find((r) => r.route === "catalog")?.mirrors[0];
    expect(mirror?.compare).toMatchObject({ match: 0, differ: N, error: 0 });
    expect(mirror?.compare.fields.map((f) => [f.field, f.differ, f.noise])).toEqual([
      ["$.items[*].id", N, 0],
      ["$.session.id", N, 0],
      ["$.token", N, 0],
      ["$.items[*].price", N / 3, 0],
    ]);
    const price = mirror?.compare.fields.find((f) => f.field === "$.items[*].price");
    expect(price?.examples).toHaveLength(2);
    expect(price?.examples[0]).toMatchObject({ path: "$.items[0].price", primary: "10", candidate: "11" });
    expect(JSON.stringify(data)).not.toMatch(/primary-token-value|canary-token-value/);

    const query = new URLSearchParams({ route: "catalog", mirror: "canary", field: "$.items[*].price", minutes: "5" });
    const samples = await viaWorker(`/__mirror/api/stats/samples?${query}`, { headers: admin });
    expect(samples.status).toBe(200);
    const body = (await samples.json()) as { samples: DiffSample[] };
    // Only the requests where the price differed (every 3rd), newest first.
    expect(body.samples.map((s) => s.requestId)).toEqual(["ray-11", "ray-8", "ray-5"]);
    const missing = await viaWorker("/__mirror/api/stats/samples?route=catalog", { headers: admin });
    expect(missing.status).toBe(400);
  });

  it("shows secrets when the route opts out with redactSecrets: false", async () => {
    const { outcomes, send } = testWorker();
    await send(new Request("https://edge.example.com/open"), testEnv);
    const sample = outcomes[0]?.kind === "sent" ? outcomes[0].sample : undefined;
    expect(sample?.differences.find((d) => d.field === "$.token")).toMatchObject({
      primary: '"primary-token-value"',
      candidate: '"canary-token-value"',
    });
    expect(sample?.candidate.excerpt).toContain("canary-token-value-session");
  });

  it("counts and reads back a route named constructor and mirrors named like prototype members", async () => {
    for (const name of ["__proto__", "constructor", "__proto__"]) {
      await viaWorker("/ctor", { headers: { "x-mirror-cluster": name } });
    }
    const res = await adminStats(testEnv, "?minutes=5");
    const data = (await res.json()) as { routes: RouteSummary[] };
    const route = data.routes.find((r) => r.route === "constructor");
    expect(route).toMatchObject({ requests: 3, mirrored: 0 });
    // "__proto__" is outside allow (not even a valid cluster name): counted under the one fixed label.
    expect(route?.mirrors.map((m) => [m.mirror, { ...m.skipped }])).toEqual([
      ["(not allowed)", { cluster_not_allowed: 2 }],
      ["constructor", { unknown_cluster: 1 }],
    ]);
    expect(({} as Record<string, unknown>).unknown_cluster).toBeUndefined();
  });
});

/**
 * The release verdict end to end through the worker: requests through the exported worker, their
 * copies answered by origins that agree with the primary, differ from it, fail or are slower, the
 * counters flushed to the real stats shards, and `GET <prefix>/api/verdict` judging them. Latency
 * is made by origins that wait before answering; the tests assert the verdict, never a time.
 */
import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RouteSummary } from "../../src/stats/summary.js";
import type { VerdictReport } from "../../src/verdict/index.js";
import { adminStats, callWorker, countingKv, interceptFetch, putPolicies } from "./helpers.js";

const PRIMARY = "http://primary.test:8080";
const CANARY = "http://canary.test:9002";
const SLOW = "http://slow.test:9003";
const TOKEN = "verdict-test-admin-token-0123456789";
const testEnv = { ...env, PRIMARY_ORIGIN: PRIMARY, ADMIN_TOKEN: TOKEN } as Env;

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

/** What the canary does with the n-th request it gets: answer as the primary, differ, or fail. */
let canary: (n: number) => Response | Promise<Response>;
let fetches: ReturnType<typeof interceptFetch>;
let primaryDelayMs = 0;

beforeEach(async () => {
  await reset();
  primaryDelayMs = 0;
  let seen = 0;
  let slowSeen = 0;
  canary = () => json({ price: 10, items: [1, 2] });
  fetches = interceptFetch({
    [PRIMARY]: async () => {
      if (primaryDelayMs > 0) await wait(primaryDelayMs);
      return json({ price: 10, items: [1, 2] });
    },
    [CANARY]: () => canary(seen++),
    // As fast as the primary but for one request in 20, 25 times slower: its p99 past 3× the
    // primary's even when a busy machine fires the primary's 20 ms timers 100 ms late.
    [SLOW]: async () => {
      await wait(slowSeen++ % 20 === 0 ? 500 : 20);
      return json({ price: 10, items: [1, 2] });
    },
  });
  await putPolicies({
    clusters: { canary: CANARY, slow: SLOW },
    routes: [
      {
        id: "compared",
        match: { path: { type: "PathPrefix", value: "/compared" } },
        mirrors: [{ cluster: "canary", compare: true }],
      },
      { id: "copied", match: { path: { type: "PathPrefix", value: "/copied" } }, mirrors: [{ cluster: "canary" }] },
      {
        id: "generous",
        match: { path: { type: "PathPrefix", value: "/generous" } },
        // Equal origins on a shared machine: the test is that equal passes, not how noisy a clock is.
        mirrors: [{ cluster: "canary", compare: true, verdict: { maxLatencyRatio: { p50: 2, p99: 2 } } }],
      },
      { id: "slower", match: { path: { type: "PathPrefix", value: "/slower" } }, mirrors: [{ cluster: "slow" }] },
      {
        id: "two",
        match: { path: { type: "PathPrefix", value: "/two" } },
        mirrors: [{ cluster: "canary" }, { cluster: "slow" }],
      },
    ],
  });
});

afterEach(() => fetches.restore());

/** `count` requests to `path` through the worker, `concurrency` at a time, each with its own cf-ray. */
async function traffic(path: string, count: number, concurrency = 25): Promise<void> {
  for (let at = 0; at < count; at += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, count - at) }, (_, i) =>
      callWorker(new Request(`https://edge.example.com${path}`, { headers: { "cf-ray": `ray-${at + i}` } }), testEnv, {
        readFirst: true,
      }),
    );
    for (const response of await Promise.all(batch)) expect(response.status).toBe(200);
  }
}

function adminGet(path: string, token = TOKEN): Promise<Response> {
  return callWorker(
    new Request(`https://edge.example.com/__mirror${path}`, { headers: { authorization: `Bearer ${token}` } }),
    testEnv,
  );
}

async function verdictOf(query: string): Promise<VerdictReport> {
  const response = await adminGet(`/api/verdict?${query}`);
  expect(response.status).toBe(200);
  expect(response.headers.get("cache-control")).toBe("no-store");
  return (await response.json()) as VerdictReport;
}

const reason = (report: VerdictReport, check: string) => report.reasons.find((r) => r.check === check);

describe("GET /api/verdict through the worker", () => {
  it("passes a candidate equal to the primary", { timeout: 120_000 }, async () => {
    primaryDelayMs = 20;
    canary = async () => {
      await wait(20);
      return json({ price: 10, items: [1, 2] });
    };
    await traffic("/generous", 420);
    const report = await verdictOf("route=generous&window=5m");
    expect(report).toMatchObject({ route: "generous", mirror: "canary", samples: 420, diffRate: 0, noiseRate: 0 });
    expect(report.reasons.map((r) => [r.check, r.outcome])).toEqual([
      ["diffRate", "pass"],
      ["errorRateIncrease", "pass"],
      ["latencyP50Ratio", "pass"],
      ["latencyP99Ratio", "pass"],
    ]);
    expect(report.verdict).toBe("pass");
    expect(report.status.primary["2xx"]).toBe(420);
    expect(report.status.mirror["2xx"]).toBe(420);
    expect(report.latencyMs.primary?.count).toBe(420);
    expect(report.shards.answered).toBe(report.shards.asked);
  });

  it("fails a candidate that differs in 30 % of requests, with the diffRate reason", async () => {
    canary = (n) => json(n % 10 < 3 ? { price: 11, items: [1, 2] } : { price: 10, items: [1, 2] });
    await traffic("/compared", 100);
    const report = await verdictOf("route=compared&mirror=canary&window=15m");
    expect(report.verdict).toBe("fail");
    expect(report.diffRate).toBeCloseTo(0.3, 6);
    expect(reason(report, "diffRate")).toMatchObject({ outcome: "fail", passed: false, observed: 0.3, samples: 100 });
    expect(report.diffRateCI95?.[0]).toBeGreaterThan(0.01);
  });

  it("leaves five samples inconclusive under minSamples 100", async () => {
    await traffic("/compared", 5);
    const report = await verdictOf("route=compared");
    expect(report.verdict).toBe("inconclusive");
    expect(report.samples).toBe(5);
    for (const check of report.reasons) {
      expect(check.outcome).toBe("inconclusive");
      expect(check.reason).toContain("fewer than minSamples 100");
    }
  });

  it("fails a candidate answering 5xx to 10 % of requests, with the error-rate reason", async () => {
    canary = (n) => (n % 10 === 0 ? json({ error: "boom" }, 503) : json({ price: 10, items: [1, 2] }));
    await traffic("/copied", 200);
    const report = await verdictOf("route=copied");
    expect(report.verdict).toBe("fail");
    expect(report.reasons.map((r) => r.check)).not.toContain("diffRate");
    expect(report.status.mirror["5xx"]).toBe(20);
    expect(report.status.primary["5xx"]).toBe(0);
    expect(reason(report, "errorRateIncrease")).toMatchObject({ outcome: "fail", passed: false, observed: 0.1 });
    expect(report.errorRate).toMatchObject({ primary: 0, mirror: 0.1 });
  });

  it("fails a candidate 3× slower at p99, with the latency reason", { timeout: 120_000 }, async () => {
    // Few at a time: many timers at once in one isolate would give both sides the same long tail.
    primaryDelayMs = 20;
    await traffic("/slower", 450, 10);
    const report = await verdictOf("route=slower&mirror=slow&window=5m");
    expect(report.verdict).toBe("fail");
    expect(reason(report, "latencyP99Ratio")).toMatchObject({ outcome: "fail", passed: false });
    expect(reason(report, "latencyP99Ratio")?.observed).toBeGreaterThan(3);
    expect(reason(report, "latencyP99Ratio")?.reason).toMatch(/wholly above the threshold 1\.50×/);
    expect(reason(report, "errorRateIncrease")?.outcome).toBe("pass");
    expect(report.latencyMs.mirror?.count).toBe(450);
  });

  it("refuses a query it cannot answer, naming what is wrong", async () => {
    // Stored straight in KV, around the validator: the worker serves it not, and says why.
    await env.MIRROR_CONFIG.put(
      "route:broken",
      JSON.stringify({ id: "broken", match: { path: { type: "Nope", value: "/" } } }),
    );
    const cases: Array<[string, number, string, RegExp]> = [
      ["route=broken", 409, "route_invalid", /route "broken" as stored is not valid: .*match/],
      ["", 400, "invalid_query", /route is required/],
      ["route=compared&window=2h", 400, "invalid_query", /from 1m to 60m/],
      ["route=compared&window=15", 400, "invalid_query", /window "15"/],
      ["route=nowhere", 404, "not_found", /no route "nowhere"/],
      ["route=two", 400, "mirror_required", /2 mirrors: name one with mirror= \(canary, slow\)/],
      ["route=two&mirror=other", 404, "not_found", /no mirror "other" \(its mirrors: canary, slow\)/],
    ];
    for (const [query, status, error, message] of cases) {
      const response = await adminGet(`/api/verdict?${query}`);
      expect(response.status, query).toBe(status);
      const body = (await response.json()) as { error: string; message: string };
      expect(body.error, query).toBe(error);
      expect(body.message, query).toMatch(message);
    }
    expect((await adminGet("/api/verdict?route=compared", "not-the-token-0123456789")).status).toBe(403);
    const anonymous = await callWorker(
      new Request("https://edge.example.com/__mirror/api/verdict?route=compared"),
      testEnv,
    );
    expect(anonymous.status).toBe(401);
  });
});

describe("api/stats beside the verdict", () => {
  it("takes the policies from the isolate's snapshot: the dashboard's polls and a pipeline's verdicts read no KV", async () => {
    const counted = countingKv(env.MIRROR_CONFIG);
    const polled = { ...testEnv, MIRROR_CONFIG: counted.kv, POLICY_CACHE_TTL_MS: "60000" } as Env;
    for (let i = 0; i < 5; i++) {
      const response = await callWorker(new Request("https://edge.example.com/compared"), polled, { readFirst: true });
      expect(response.status).toBe(200);
    }
    const before = { ...counted.counts };
    let stats: { routes: RouteSummary[] } = { routes: [] };
    for (let poll = 0; poll < 3; poll++) {
      const response = await adminStats(polled, "?minutes=15");
      expect(response.status).toBe(200);
      stats = (await response.json()) as { routes: RouteSummary[] };
    }
    const verdict = await callWorker(
      new Request("https://edge.example.com/__mirror/api/verdict?route=compared&window=15m", {
        headers: { authorization: `Bearer ${TOKEN}` },
      }),
      polled,
    );
    expect(verdict.status).toBe(200);
    expect(counted.counts).toEqual(before);
    // Every configured route is listed, traffic or not, and the verdict is judged by its policy.
    expect(stats.routes.map((r) => r.route)).toEqual(["compared", "copied", "generous", "slower", "two"]);
    const report = (await verdict.json()) as VerdictReport;
    expect(stats.routes[0]?.mirrors[0]?.verdict).toEqual({
      verdict: report.verdict,
      reasons: report.reasons,
      samples: report.samples,
    });
  });

  it("shows per mirror the primary beside the mirror, the signatures and the verdict the endpoint gives", async () => {
    // Every third request differs in the price, every fifth in the items too.
    canary = (n) => json({ price: n % 3 === 0 ? 11 : 10, items: n % 5 === 0 ? [1, 3] : [1, 2] });
    await traffic("/compared", 60);
    const stats = (await (await adminStats(testEnv, "?minutes=15")).json()) as { routes: RouteSummary[] };
    const mirror = stats.routes.find((r) => r.route === "compared")?.mirrors[0];
    expect(mirror?.sideBySide.primary.status["2xx"]).toBe(60);
    expect(mirror?.sideBySide.mirror.status["2xx"]).toBe(60);
    expect(mirror?.sideBySide.primary.latencyMs?.count).toBe(60);
    // Signatures: exactly the requests that differ in exactly that set of fields.
    const expected = new Map<string, number>();
    for (let n = 0; n < 60; n++) {
      const fields = [...(n % 5 === 0 ? ["$.items[*]"] : []), ...(n % 3 === 0 ? ["$.price"] : [])];
      if (fields.length > 0) expected.set(fields.join("\n"), (expected.get(fields.join("\n")) ?? 0) + 1);
    }
    expect(mirror?.signatures?.total).toBe(mirror?.compare.differ);
    expect(new Map(mirror?.signatures?.signatures.map((s) => [s.signature, s.count]))).toEqual(expected);
    for (const row of mirror?.signatures?.signatures ?? []) {
      expect(row.exampleRequestId).toMatch(/^ray-\d+$/);
      expect(row.share).toBeCloseTo(row.count / (mirror?.compare.differ ?? 1), 6);
    }
    const report = await verdictOf("route=compared&window=15m");
    expect(mirror?.verdict).toEqual({ verdict: report.verdict, reasons: report.reasons, samples: report.samples });
  });
});

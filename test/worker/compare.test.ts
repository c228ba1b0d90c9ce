import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_FIELD_CHARS, MAX_SAMPLE_BYTES } from "../../src/compare/index.js";
import type { MirrorOutcome } from "../../src/record/index.js";
import { decodeTally, type EncodedBatch } from "../../src/stats/flush-log.js";
import {
  adminStats,
  callWorker,
  interceptFetch,
  putPolicies,
  randomBytes,
  type TestWorker,
  testWorker,
} from "./helpers.js";

const PRIMARY = "http://primary.test:8080";
const CANARY = "http://canary.test:9002";
const REPLICA = "http://replica.test:9005";
const testEnv = { ...env, PRIMARY_ORIGIN: PRIMARY, ADMIN_TOKEN: "compare-test-admin-token-0123456789" } as Env;

let canaryBody: unknown;
let through: TestWorker;
let outcomes: MirrorOutcome[];
let fetches: ReturnType<typeof interceptFetch>;
let primaryBytes: Uint8Array | undefined;

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

function send(path: string, init: RequestInit = {}) {
  return through.send(new Request(`https://edge.example.com${path}`, init), testEnv);
}

beforeEach(async () => {
  await reset();
  through = testWorker();
  outcomes = through.outcomes;
  primaryBytes = undefined;
  canaryBody = { user: { id: 7, token: "c-token" }, version: "v2", ts: 2 };
  fetches = interceptFetch({
    [PRIMARY]: () =>
      primaryBytes
        ? new Response(primaryBytes, { headers: { "content-type": "application/octet-stream" } })
        : json({ user: { id: 7, token: "p-token" }, version: "v1", ts: 1 }),
    [REPLICA]: () => json({ user: { id: 7, token: "p-token" }, version: "v1", ts: 99 }),
    [CANARY]: (req) =>
      new URL(req.url).pathname === "/down" ? Promise.reject(new TypeError("connect refused")) : json(canaryBody),
  });
  await putPolicies({
    clusters: { canary: CANARY, replica: REPLICA },
    routes: [
      {
        id: "compared",
        mirrors: [
          {
            cluster: "canary",
            compare: { reference: { cluster: "replica" }, redactPaths: ["$.user.token"], maxBodyBytes: 4096 },
          },
        ],
      },
    ],
  });
});

afterEach(() => fetches.restore());

/** A developer's own requests, routed to their branch's cluster by a header, compared with the primary. */
const myBranch = {
  id: "my-branch",
  match: { path: { type: "PathPrefix", value: "/branch" } },
  mirrorFromHeader: {
    header: "x-mirror-cluster",
    allow: ["canary"],
    compare: { reference: { cluster: "replica" }, redactPaths: ["$.user.token"] },
  },
};

describe("compare mode", () => {
  it("reports the fields that differ, cancels reference noise, and leaves the client's answer alone", async () => {
    const { response, body } = await send("/users/7?session=abc");
    expect(response.status).toBe(200);
    expect(JSON.parse(new TextDecoder().decode(body))).toEqual({
      user: { id: 7, token: "p-token" },
      version: "v1",
      ts: 1,
    });
    expect(fetches.to(REPLICA)).toHaveLength(1);
    const [outcome] = outcomes;
    expect(outcome).toMatchObject({
      kind: "sent",
      mirror: "canary",
      compare: { verdict: "differ", fields: ["$.user.token", "$.version"], noise: ["$.ts"] },
    });
    const sample = outcome?.kind === "sent" ? outcome.sample : undefined;
    expect(sample).toMatchObject({ route: "compared", path: "/users/7", fields: ["$.user.token", "$.version"] });
    expect(JSON.stringify(sample)).not.toMatch(/p-token|c-token|session=abc/);
  });

  it("matches when the mirror answers the same, and keeps no sample", async () => {
    canaryBody = { user: { id: 7, token: "p-token" }, version: "v1", ts: 5 };
    await send("/users/7");
    expect(outcomes).toEqual([
      expect.objectContaining({ kind: "sent", compare: { verdict: "match", fields: [], noise: ["$.ts"] } }),
    ]);
    expect(outcomes[0]).not.toHaveProperty("sample");
  });

  it("compares a cluster chosen by the request header, labelled with its name", async () => {
    await putPolicies({ routes: [myBranch] });
    const { body } = await send("/branch/users/7?session=abc", { headers: { "x-mirror-cluster": "canary" } });
    expect(JSON.parse(new TextDecoder().decode(body))).toMatchObject({ version: "v1" });
    expect(fetches.to(REPLICA)).toHaveLength(1);
    expect(outcomes).toEqual([
      expect.objectContaining({
        kind: "sent",
        route: "my-branch",
        mirror: "canary",
        compare: { verdict: "differ", fields: ["$.user.token", "$.version"], noise: ["$.ts"] },
        sample: expect.objectContaining({ route: "my-branch", mirror: "canary", path: "/branch/users/7" }),
      }),
    ]);
    expect(JSON.stringify(outcomes)).not.toMatch(/p-token|c-token|session=abc/);
  });

  it("sends the reference the client's path when the mirror's path is rewritten", async () => {
    await putPolicies({
      routes: [
        {
          id: "v1-to-v2",
          match: { path: { type: "PathPrefix", value: "/v1" } },
          mirrors: [
            {
              cluster: "canary",
              urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } },
              compare: { reference: { cluster: "replica" } },
            },
          ],
        },
      ],
    });
    await send("/v1/users/7?x=1");
    expect(fetches.to(CANARY).map((s) => s.url)).toEqual([`${CANARY}/v2/users/7?x=1`]);
    expect(fetches.to(REPLICA).map((s) => s.url)).toEqual([`${REPLICA}/v1/users/7?x=1`]);
    expect(outcomes[0]).toMatchObject({ compare: { verdict: "differ", noise: ["$.ts"] } });
  });

  it("sends the reference the mirror's own header changes, so that only the versions differ", async () => {
    await putPolicies({
      routes: [
        {
          id: "with-headers",
          match: { path: { type: "PathPrefix", value: "/h" } },
          mirrors: [
            {
              cluster: "canary",
              requestHeaders: { set: { "x-shadow": "1" }, remove: ["authorization"] },
              compare: { reference: { cluster: "replica" } },
            },
          ],
        },
      ],
    });
    await send("/h/users/7", { headers: { authorization: "Bearer client-secret", "x-client": "c" } });
    for (const seen of [...fetches.to(CANARY), ...fetches.to(REPLICA)]) {
      expect(seen.headers).toMatchObject({ "x-shadow": "1", "x-client": "c" });
      expect(seen.headers).not.toHaveProperty("authorization");
    }
    expect(fetches.to(REPLICA)).toHaveLength(1);
    expect(fetches.to(PRIMARY)[0]?.headers).toMatchObject({ authorization: "Bearer client-secret" });
  });

  it("counts a reference of another status class as an error, and learns no noise from it", async () => {
    // The review's case: one 503 "overloaded" from the reference taught `status` and `$` as noise,
    // and from then on a mirror's 500 against the primary's 200 counted as a match.
    let referenceCalls = 0;
    let canaryFails = false;
    fetches.restore();
    fetches = interceptFetch({
      [PRIMARY]: (req) => (req.method === "POST" ? json({ id: 7 }, 201) : json({ items: [{ id: 1 }], total: 1 })),
      [REPLICA]: (req) => {
        if (req.method === "POST") return json({ error: "already exists" }, 409);
        return ++referenceCalls === 1 ? json("overloaded", 503) : json({ items: [{ id: 1 }], total: 1 });
      },
      [CANARY]: (req) =>
        req.method === "POST"
          ? json({ id: 8 }, 201)
          : canaryFails
            ? json({ error: "boom" }, 500)
            : json({ items: [{ id: 1 }], total: 1 }),
    });
    await putPolicies({
      routes: [
        {
          id: "poisoned",
          match: { path: { type: "PathPrefix", value: "/orders" } },
          mirrors: [{ cluster: "canary", compare: { reference: { cluster: "replica" } } }],
        },
      ],
    });
    await send("/orders");
    expect(outcomes.at(-1)).toMatchObject({
      compare: {
        verdict: "error",
        fields: [],
        noise: [],
        error: "reference: answered 5xx where the primary answered 2xx",
      },
    });
    canaryFails = true;
    for (let i = 0; i < 3; i++) await send("/orders");
    for (const outcome of outcomes.slice(1)) {
      expect(outcome).toMatchObject({
        compare: { verdict: "differ", fields: ["status", "$.error", "$.items", "$.total"], noise: [] },
      });
    }
    // A create endpoint whose reference shares the primary's database: 201 against 409.
    await send("/orders", { method: "POST", body: "{}" });
    expect(outcomes.at(-1)).toMatchObject({
      compare: { verdict: "error", error: "reference: answered 4xx where the primary answered 2xx" },
    });
  });

  it("counts an error, not a difference, when the primary cannot be read", async () => {
    fetches.restore();
    fetches = interceptFetch({ [CANARY]: () => json(canaryBody), [REPLICA]: () => json({}) });
    const { response } = await send("/users/7");
    expect(response.status).toBe(502);
    expect(outcomes[0]).toMatchObject({
      kind: "sent",
      compare: { verdict: "error", error: "primary: primary_unreachable" },
    });
  });

  it("counts an error when the mirror fails", async () => {
    await send("/down");
    expect(outcomes[0]).toMatchObject({ kind: "failed", compare: { verdict: "error", error: "mirror failed" } });
  });

  it("streams a primary body beyond the compare cap to the client byte for byte and counts an error", async () => {
    primaryBytes = randomBytes(300_000);
    const { body } = await send("/blob");
    expect(body).toEqual(primaryBytes);
    expect(outcomes[0]).toMatchObject({ compare: { verdict: "error" } });
    expect((outcomes[0] as { compare: { error: string } }).compare.error).toMatch(/^primary: .*4096/);
  });
});

describe("live counters through the exported worker", () => {
  // The body is read before waiting, and still readable by the test.
  const viaWorker = (request: Request, environment: Env = testEnv) =>
    callWorker(request, environment, { readFirst: true });

  const stats = async () => {
    const res = await adminStats(testEnv, "?minutes=5");
    expect(res.status).toBe(200);
    return (await res.json()) as {
      routes: Array<{ route: string; requests: number; mirrors: Array<Record<string, unknown>> }>;
      samples: Array<{ requestId: string; fields: string[] }>;
    };
  };

  it("counts every request and outcome the worker saw, with the latest diff samples", async () => {
    for (let i = 0; i < 5; i++) {
      await viaWorker(new Request(`https://edge.example.com/users/${i}`, { headers: { "cf-ray": `ray-${i}` } }));
    }
    const data = await stats();
    expect(data.routes).toEqual([
      expect.objectContaining({
        route: "compared",
        requests: 5,
        mirrored: 5,
        mirrors: [
          expect.objectContaining({
            mirror: "canary",
            sent: 5,
            status: { "2xx": 5 },
            compare: expect.objectContaining({ match: 0, differ: 5, error: 0, diffRate: 1 }),
          }),
        ],
      }),
    ]);
    const compare = data.routes[0]?.mirrors[0]?.compare as { fields: Array<{ field: string; differ: number }> };
    const fields = compare?.fields ?? [];
    expect(fields.map((f) => [f.field, f.differ])).toEqual([
      ["$.user.token", 5],
      ["$.version", 5],
    ]);
    expect(data.samples.map((s) => s.requestId)).toEqual(["ray-4", "ray-3", "ray-2", "ray-1", "ray-0"]);

    const cleared = await viaWorker(
      new Request("https://edge.example.com/__mirror/api/stats", {
        method: "DELETE",
        headers: { authorization: "Bearer compare-test-admin-token-0123456789" },
      }),
    );
    expect(cleared.status).toBe(204);
    expect((await stats()).routes[0]).toMatchObject({ requests: 0, mirrors: [] });
  });

  it("counts a header-chosen comparison as a listed one, on the same dashboard", async () => {
    await putPolicies({ routes: [myBranch] });
    for (let i = 0; i < 3; i++) {
      await viaWorker(
        new Request(`https://edge.example.com/branch/users/${i}`, {
          headers: { "x-mirror-cluster": "canary", "cf-ray": `branch-${i}` },
        }),
      );
    }
    const data = await stats();
    expect(data.routes.find((r) => r.route === "my-branch")).toEqual(
      expect.objectContaining({
        route: "my-branch",
        requests: 3,
        mirrored: 3,
        mirrors: [
          expect.objectContaining({
            mirror: "canary",
            sent: 3,
            compare: expect.objectContaining({ match: 0, differ: 3, error: 0, diffRate: 1 }),
          }),
        ],
      }),
    );
    expect(data.samples.map((s) => s.requestId)).toEqual(["branch-2", "branch-1", "branch-0"]);
  });

  it("writes one Analytics Engine data point per outcome when the binding exists", async () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const withAnalytics = {
      ...testEnv,
      MIRROR_ANALYTICS: { writeDataPoint: (p?: AnalyticsEngineDataPoint) => p && points.push(p) },
    } as Env;
    await viaWorker(new Request("https://edge.example.com/users/1", { headers: { "cf-ray": "ray-x" } }), withAnalytics);
    expect(points).toEqual([
      {
        indexes: ["compared"],
        blobs: ["compared", "canary", "sent", "2xx", "differ", "ray-x"],
        doubles: [expect.any(Number), 200, 0],
      },
    ]);
  });

  it("counts another route's requests flushed beside a 2.5 MiB JSON key, and clips the key everywhere", async () => {
    // The review's case: a compared route whose primary echoes the body, and a client's key of 2.5 MiB.
    fetches.restore();
    fetches = interceptFetch({
      [PRIMARY]: (req) => new Response(req.body, { headers: { "content-type": "application/json" } }),
      [CANARY]: () => json({ ok: true }),
    });
    await putPolicies({
      routes: [
        {
          id: "echo",
          match: { path: { type: "PathPrefix", value: "/echo" } },
          maxMirrorBodyBytes: 4 * 1024 * 1024,
          mirrors: [{ cluster: "canary", compare: { maxBodyBytes: 4 * 1024 * 1024 } }],
        },
        { id: "plain", match: { path: { type: "PathPrefix", value: "/plain" } }, mirrors: [{ cluster: "canary" }] },
      ],
    });
    // One batch for all six requests: the flush waits a second, and every shard write is seen here.
    const flushed: EncodedBatch[] = [];
    const namespace = {
      idFromName: (name: string) => env.MIRROR_STATS.idFromName(name),
      get: (id: DurableObjectId) => ({
        add: (batch: EncodedBatch) => {
          flushed.push(batch);
          return env.MIRROR_STATS.get(id).add(batch);
        },
      }),
    };
    const batched = {
      ...testEnv,
      STATS_FLUSH_MS: "1000",
      LOG_LEVEL: "info",
      MIRROR_STATS: namespace,
    } as unknown as Env;
    const lines: string[] = [];
    const errors: string[] = [];
    const log = vi.spyOn(console, "log").mockImplementation((line: unknown) => {
      lines.push(String(line));
    });
    const error = vi.spyOn(console, "error").mockImplementation((line: unknown) => {
      errors.push(String(line));
    });
    const key = "k".repeat(2.5 * 1024 * 1024);
    try {
      await Promise.all([
        viaWorker(
          new Request("https://edge.example.com/echo", { method: "POST", body: JSON.stringify({ [key]: 1 }) }),
          batched,
        ),
        ...Array.from({ length: 5 }, (_, i) => viaWorker(new Request(`https://edge.example.com/plain/${i}`), batched)),
      ]);
    } finally {
      log.mockRestore();
      error.mockRestore();
    }
    expect(flushed).toHaveLength(1);
    expect([...decodeTally(flushed[0]?.encoded ?? "[]").keys()].sort()).toEqual(["echo", "plain"]);
    expect(errors).toEqual([]);

    const data = await stats();
    expect(data.routes.find((r) => r.route === "plain")).toMatchObject({ requests: 5, mirrored: 5 });
    const echo = data.routes.find((r) => r.route === "echo");
    expect(echo).toMatchObject({ requests: 1, mirrored: 1 });
    const compared = echo?.mirrors[0]?.compare as { fields: Array<{ field: string }> } | undefined;
    const fields = (compared?.fields ?? []).map((f) => f.field);
    const long = fields.find((f) => f.startsWith("$.kkk")) ?? expect.fail(`no clipped key among ${fields}`);
    expect(long.length).toBeLessThanOrEqual(MAX_FIELD_CHARS);
    expect(data.samples).toHaveLength(1);
    expect(JSON.stringify(data.samples[0]).length).toBeLessThanOrEqual(MAX_SAMPLE_BYTES);
    // The log line names the same clipped field.
    const line = lines.map((l) => JSON.parse(l)).find((l) => l.route === "echo");
    expect(line?.compare.fields).toContain(long);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(64 * 1024);
  });

  it("keeps a failing audit mirror's own row beside junk x-mirror-cluster names sent at once", async () => {
    // The review's case: 31 junk names sent concurrently, then the audit mirror's copies (all
    // 503) showed only under (other).
    const AUDIT = "http://audit.test:9010";
    fetches.restore();
    fetches = interceptFetch({
      [PRIMARY]: () => json({ ok: true }),
      [AUDIT]: () => json({ error: "unavailable" }, 503),
    });
    await putPolicies({
      routes: [
        {
          id: "audited",
          match: { path: { type: "PathPrefix", value: "/pay" } },
          mirrors: [{ origin: AUDIT }],
          mirrorFromHeader: { header: "x-mirror-cluster", allow: ["canary"] },
        },
      ],
    });
    const pay = (headers: Record<string, string> = {}) =>
      viaWorker(new Request("https://edge.example.com/pay/transfer", { method: "POST", body: "{}", headers }));
    await Promise.all(Array.from({ length: 31 }, (_, i) => pay({ "x-mirror-cluster": `junk-${i}` })));
    for (let i = 0; i < 3; i++) await pay();
    const route = (await stats()).routes.find((r) => r.route === "audited");
    expect(route).toMatchObject({ requests: 34, mirrored: 34 });
    const rows = new Map(route?.mirrors.map((m) => [m.mirror, m]));
    expect([...rows.keys()].sort()).toEqual(["(not allowed)", AUDIT].sort());
    const audit = rows.get(AUDIT) as { sent: number; failed: number; status: Record<string, number> };
    // A breaker may eject the failing mirror part-way: its copies are failures then, still its own.
    expect(audit.sent + audit.failed).toBe(34);
    expect(audit.status).toEqual(audit.sent > 0 ? { "5xx": audit.sent } : {});
    expect(rows.get("(not allowed)")).toMatchObject({ skipped: { cluster_not_allowed: 31 } });
  });

  it("rejects a window outside 1–60 minutes", async () => {
    const res = await viaWorker(
      new Request("https://edge.example.com/__mirror/api/stats?minutes=0", {
        headers: { authorization: "Bearer compare-test-admin-token-0123456789" },
      }),
    );
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      error: "invalid_query",
      message: "minutes must be an integer from 1 to 60",
    });
  });
});

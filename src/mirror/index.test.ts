import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { interceptFetch, recordingSpool } from "../../test/worker/helpers.js";
import { seeded } from "../../test/worker/seeded.js";
import { MemoryBudget } from "../body/budget.js";
import { splitUpload, teeForComparison } from "../body/index.js";
import { type Capture, NoiseMemory } from "../compare/index.js";
import { parseRoute } from "../policy/index.js";
import type { MirrorOutcome } from "../record/index.js";
import { Spool, type SpooledCopy } from "../spool/index.js";
import { MirrorBreaker } from "./breaker.js";
import { inlineTimeoutMs, MIN_INLINE_MS, SPOOL_RESERVE_MS, WAIT_UNTIL_MS } from "./durable.js";
import { type CopyJob, classifyMirrorError, isSampled, planMirrors, runMirrors } from "./index.js";
import { NOT_ALLOWED } from "./plan.js";

const clusters = new Map([
  ["canary", "http://canary.test:9002"],
  ["service2-mirror", "http://mirror.test:9003"],
  ["other", "http://other.test:9004"],
]);

describe("isSampled", () => {
  it("honours the edges: absent and 100 always, 0 never", () => {
    expect(isSampled({}, () => 0.999999)).toBe(true);
    expect(isSampled({ percent: 100 }, () => 0.999999)).toBe(true);
    expect(isSampled({ percent: 0 }, () => 0)).toBe(false);
    expect(isSampled({ fraction: { numerator: 0, denominator: 10 } }, () => 0)).toBe(false);
  });

  it("samples a 20 % mirror within binomial bounds over 500 requests (Gateway API conformance)", () => {
    const random = seeded(42);
    let hits = 0;
    for (let i = 0; i < 500; i++) if (isSampled({ percent: 20 }, random)) hits++;
    expect(hits).toBeGreaterThanOrEqual(73);
    expect(hits).toBeLessThanOrEqual(127);
  });

  it("samples fractions: 1/1000 over 100,000 requests", () => {
    const random = seeded(7);
    let hits = 0;
    for (let i = 0; i < 100_000; i++) if (isSampled({ fraction: { numerator: 1, denominator: 1000 } }, random)) hits++;
    expect(hits).toBeGreaterThan(60);
    expect(hits).toBeLessThan(140);
  });
});

describe("planMirrors", () => {
  const route = parseRoute({
    id: "svc",
    mirrors: [
      { cluster: "canary", percent: 50 },
      { origin: "https://audit.example.net", percent: 50 },
    ],
    mirrorFromHeader: { header: "x-mirror-cluster", allow: ["service2-mirror"] },
  });

  it("samples each mirror independently", () => {
    const random = seeded(1);
    const counts = { both: 0, one: 0, none: 0 };
    for (let i = 0; i < 4000; i++) {
      const n = planMirrors(route, new Headers(), clusters, random).targets.length;
      if (n === 2) counts.both++;
      else if (n === 1) counts.one++;
      else counts.none++;
    }
    // Independent 50 % draws: about 1/4 both, 1/2 exactly one, 1/4 none. One shared draw gives no "one".
    expect(counts.one).toBeGreaterThan(1800);
    expect(counts.both).toBeGreaterThan(850);
    expect(counts.none).toBeGreaterThan(850);
  });

  it("adds the header-named cluster only when allowed and defined", () => {
    const always = () => 0;
    const known = planMirrors(route, new Headers({ "x-mirror-cluster": "service2-mirror" }), clusters, always);
    expect(known.targets.map((t) => [t.label, t.origin])).toEqual([
      ["canary", "http://canary.test:9002"],
      ["https://audit.example.net", "https://audit.example.net"],
      ["service2-mirror", "http://mirror.test:9003"],
    ]);

    const notAllowed = planMirrors(route, new Headers({ "x-mirror-cluster": "other" }), clusters, always);
    expect(notAllowed.targets).toHaveLength(2);
    expect(notAllowed.skipped).toEqual([
      {
        mirror: NOT_ALLOWED,
        reason: "cluster_not_allowed",
        detail: 'x-mirror-cluster names "other", a cluster outside mirrorFromHeader.allow',
      },
    ]);

    const url = planMirrors(route, new Headers({ "x-mirror-cluster": "http://evil.test" }), clusters, always);
    expect(url.targets.map((t) => t.label)).not.toContain("http://evil.test");
    expect(url.skipped[0]?.reason).toBe("cluster_not_allowed");
  });

  it("never lets a client reach a defined cluster outside allow, and skips an allowed one that is not defined", () => {
    const open = parseRoute({ id: "o", mirrorFromHeader: { header: "x-mirror-cluster", allow: ["gone"] } });
    const internal = planMirrors(open, new Headers({ "x-mirror-cluster": "other" }), clusters, Math.random);
    expect(internal.targets).toEqual([]);
    expect(internal.skipped).toEqual([expect.objectContaining({ mirror: NOT_ALLOWED, reason: "cluster_not_allowed" })]);
    const gone = planMirrors(open, new Headers({ "x-mirror-cluster": "gone" }), clusters, Math.random);
    expect(gone.skipped).toEqual([expect.objectContaining({ mirror: "gone", reason: "unknown_cluster" })]);
    expect(planMirrors(open, new Headers(), clusters, Math.random)).toEqual({ targets: [], skipped: [] });
  });

  it("counts every name outside allow under one label, the name clipped in the detail only", () => {
    const labels = new Set<string>();
    for (let i = 0; i < 31; i++) {
      const junk = `junk-${i}-${"x".repeat(100)}`;
      const plan = planMirrors(route, new Headers({ "x-mirror-cluster": junk }), clusters, () => 0);
      const skip = plan.skipped.find((s) => s.reason === "cluster_not_allowed");
      expect(skip?.detail).toContain(junk.slice(0, 64));
      expect(skip?.detail?.length).toBeLessThan(200);
      for (const s of plan.skipped) labels.add(s.mirror);
      for (const t of plan.targets) labels.add(t.label);
    }
    expect([...labels].sort()).toEqual([NOT_ALLOWED, "canary", "https://audit.example.net"].sort());
    // Refused requests (a verified marker, an upgrade) label the name the same way.
    for (const context of [{ marked: true }, { upgrade: true }]) {
      const refused = planMirrors(route, new Headers({ "x-mirror-cluster": "junk" }), clusters, () => 0, context);
      expect(refused.skipped.at(-1)).toMatchObject({ mirror: NOT_ALLOWED, detail: 'x-mirror-cluster names "junk"' });
    }
  });

  it("compares a header-chosen cluster as it compares a listed mirror, labelled by the cluster's name", () => {
    const compared = parseRoute({
      id: "c",
      mirrors: [{ cluster: "canary", compare: { reference: { cluster: "other" } } }],
      mirrorFromHeader: {
        header: "x-mirror-cluster",
        allow: ["service2-mirror"],
        compare: { reference: { cluster: "other" } },
      },
    });
    const plan = planMirrors(compared, new Headers({ "x-mirror-cluster": "service2-mirror" }), clusters, () => 0);
    const [listed, chosen] = plan.targets;
    expect(chosen).toMatchObject({ label: "service2-mirror", origin: "http://mirror.test:9003" });
    expect(chosen?.compare).toEqual(listed?.compare);
    expect(chosen?.compare?.reference).toEqual({ origin: "http://other.test:9004" });
    const plain = planMirrors(route, new Headers({ "x-mirror-cluster": "service2-mirror" }), clusters, () => 0);
    expect(plain.targets.map((t) => t.compare)).toEqual([undefined, undefined, undefined]);
  });

  it("resolves urlRewrite against the route's prefix, for listed and header-chosen mirrors alike", () => {
    const rewritten = parseRoute({
      id: "w",
      match: { path: { type: "PathPrefix", value: "/api/v1" } },
      mirrors: [
        { cluster: "canary", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } } },
        { cluster: "other", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/sink" } } },
        { origin: "https://audit.example.net" },
      ],
      mirrorFromHeader: {
        header: "x-mirror-cluster",
        allow: ["service2-mirror"],
        urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "" } },
      },
    });
    const plan = planMirrors(rewritten, new Headers({ "x-mirror-cluster": "service2-mirror" }), clusters, () => 0);
    expect(plan.targets.map((t) => t.rewrite)).toEqual([
      { replacePrefixMatch: "/v2", prefix: "/api/v1" },
      { replaceFullPath: "/sink" },
      undefined,
      { replacePrefixMatch: "", prefix: "/api/v1" },
    ]);
  });

  it("never mirrors a request that carries a verified loop marker", () => {
    const plan = planMirrors(route, new Headers({ "x-mirror-cluster": "service2-mirror" }), clusters, () => 0, {
      marked: true,
    });
    expect(plan.targets).toEqual([]);
    expect(plan.skipped.map((s) => s.reason)).toEqual(["loop_marker", "loop_marker", "loop_marker"]);
  });

  it("never mirrors a WebSocket upgrade, and says why", () => {
    const plan = planMirrors(route, new Headers({ "x-mirror-cluster": "service2-mirror" }), clusters, () => 0, {
      upgrade: true,
    });
    expect(plan.targets).toEqual([]);
    expect(plan.skipped.map((s) => [s.mirror, s.reason])).toEqual([
      ["canary", "upgrade"],
      ["https://audit.example.net", "upgrade"],
      ["service2-mirror", "upgrade"],
    ]);
  });

  it("records unsampled mirrors and mirrors naming an undefined cluster", () => {
    const r = parseRoute({ id: "x", mirrors: [{ cluster: "missing" }, { cluster: "canary", percent: 0 }] });
    const plan = planMirrors(r, new Headers(), clusters, Math.random);
    expect(plan.skipped.map((s) => [s.mirror, s.reason])).toEqual([
      ["missing", "unknown_cluster"],
      ["canary", "not_sampled"],
    ]);
  });
});

describe("header limits for copies", () => {
  const r = parseRoute({ id: "h", mirrors: [{ cluster: "canary" }] });
  it("copies a request with ordinary headers", () => {
    const headers = new Headers();
    for (let i = 0; i < 200; i++) headers.set(`x-h${i}`, "v");
    expect(planMirrors(r, headers, clusters, () => 0).targets).toHaveLength(1);
  });

  it("does not copy a request with too many header fields, and says why", () => {
    const headers = new Headers();
    for (let i = 0; i < 201; i++) headers.set(`x-h${i}`, "v");
    const plan = planMirrors(r, headers, clusters, () => 0);
    expect(plan.targets).toEqual([]);
    expect(plan.skipped).toEqual([
      { mirror: "canary", reason: "headers_too_large", detail: "201 header fields (at most 200 are copied)" },
    ]);
  });

  it("does not copy a request with too many header bytes", () => {
    const headers = new Headers({ cookie: "c".repeat(70_000) });
    const plan = planMirrors(r, headers, clusters, () => 0);
    expect(plan.targets).toEqual([]);
    expect(plan.skipped[0]).toMatchObject({
      reason: "headers_too_large",
      detail: expect.stringMatching(/^70\d{3} bytes of headers/),
    });
  });
});

describe("classifyMirrorError", () => {
  it.each([
    [new DOMException("The operation timed out.", "TimeoutError"), "timeout"],
    [new Error("DNS lookup failed"), "dns"],
    [new Error("connect ECONNREFUSED 127.0.0.1:1"), "connect"],
    [new Error("Network connection lost."), "network"],
  ])("%s → %s", (err, kind) => {
    expect(classifyMirrorError(err)).toBe(kind);
  });
});

describe("runMirrors and the memory budget", () => {
  const CANARY = "http://canary.test:9002";
  const OTHER = "http://other.test:9004";
  // No key yet: copies carry the bare route id, which is all these tests need of the marker.
  const secret = { signingKey: async () => undefined };
  let fetches: ReturnType<typeof interceptFetch> | undefined;
  afterEach(() => fetches?.restore());

  function upload(size: number, declared = true): Request {
    const body = new Uint8Array(size).fill(7);
    return new Request("https://edge.example.com/up", {
      method: "POST",
      body: declared
        ? body
        : new ReadableStream({
            start(c) {
              c.enqueue(body);
              c.close();
            },
          }),
      headers: declared ? { "content-length": String(size) } : {},
    });
  }

  /** The job the request path would start for `request` on a route with `mirrors`. */
  function job(budget: MemoryBudget, request: Request, mirrors: object[], extra: Partial<CopyJob> = {}) {
    const route = parseRoute({ id: "r", maxMirrorBodyBytes: 8000, mirrors });
    const plan = planMirrors(route, request.headers, clusters, () => 0);
    const split = splitUpload(request, route.maxMirrorBodyBytes, budget);
    // The primary reads its branch, as the relay would.
    void new Response(split.primary).arrayBuffer();
    const outcomes: MirrorOutcome[] = [];
    const mirrorJob: CopyJob = {
      routeId: route.id,
      requestId: "req",
      method: request.method,
      pathAndQuery: "/up",
      headers: new Headers(),
      host: "edge.example.com",
      hops: 0,
      secret,
      targets: plan.targets,
      body: split.mirrors,
      sink: (o) => outcomes.push(o),
      breaker: new MirrorBreaker(),
      noise: new NoiseMemory(),
      budget,
      ...extra,
    };
    return { job: mirrorJob, outcomes };
  }

  it("holds the body's bytes until the last copy of the request is done, then gives them all back", async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    fetches = interceptFetch({
      [CANARY]: () => new Response("fast"),
      [OTHER]: async () => {
        await held;
        return new Response("slow");
      },
    });
    const budget = new MemoryBudget(10_000);
    const { job: mirrorJob, outcomes } = job(budget, upload(5000), [{ cluster: "canary" }, { cluster: "other" }]);
    expect(budget.held).toBe(5000);
    const running = runMirrors(mirrorJob);
    while (outcomes.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(outcomes).toEqual([expect.objectContaining({ mirror: "canary", kind: "sent", bodyBytes: 5000 })]);
    expect(budget.held).toBe(5000);
    release();
    await running;
    expect(outcomes).toHaveLength(2);
    expect(budget.held).toBe(0);
  });

  it("gives every byte back however the copies end: sent, failed, timed out, skipped, compared, or the job crashing", async () => {
    fetches = interceptFetch({
      [CANARY]: (req) => {
        const path = new URL(req.url).pathname;
        if (path === "/fail") throw new TypeError("Network connection lost.");
        if (path === "/hang") {
          return new Promise((_, reject) =>
            req.signal.addEventListener("abort", () => reject(new DOMException("timed out", "TimeoutError"))),
          );
        }
        return new Response(JSON.stringify({ from: "canary" }), { headers: { "content-type": "application/json" } });
      },
      [OTHER]: () => new Response(JSON.stringify({ from: "reference" }), { headers: { "content-length": "21" } }),
    });
    const budget = new MemoryBudget(15_000);
    const compared = { cluster: "canary", compare: { reference: { cluster: "other" } } };
    const primaryAnswer = () =>
      new Response(JSON.stringify({ from: "primary" }), { headers: { "content-length": "18" } });
    const jobs: Array<{ job: CopyJob; outcomes: MirrorOutcome[] }> = [
      job(budget, upload(3000), [{ cluster: "canary" }]),
      job(budget, upload(3000), [{ cluster: "canary" }], { pathAndQuery: "/fail" }),
      job(budget, upload(3000), [{ cluster: "canary", timeoutMs: 20 }], { pathAndQuery: "/hang" }),
      job(budget, upload(9000), [{ cluster: "canary" }]),
      job(budget, upload(3000, false), [{ cluster: "canary" }, { cluster: "other" }]),
    ];
    // Taken before anything is read: the three bodies declared under the cap (the fourth is over
    // it, the fifth takes as it is read).
    expect(budget.held).toBe(9000);
    const over = job(budget, upload(7000), [{ cluster: "canary" }]);
    expect(over.job.body.kind).toBe("over_budget");
    jobs.push(over);
    for (const path of ["/ok", "/fail"]) {
      const primaryHold = budget.hold();
      const split = teeForComparison(primaryAnswer(), 4096, primaryHold);
      void split.response.arrayBuffer();
      jobs.push(
        job(budget, upload(100), [compared], {
          pathAndQuery: path,
          primary: { capture: split.capture, hold: primaryHold },
        }),
      );
    }
    await Promise.all(jobs.map((j) => runMirrors(j.job)));
    const crashing = job(budget, upload(3000), [{ cluster: "canary" }], {
      sink: () => {
        throw new Error("sink broke");
      },
    });
    expect(budget.held).toBe(3000);
    await expect(runMirrors(crashing.job)).rejects.toThrow("sink broke");

    const seen = jobs.map((j) => j.outcomes.map((o) => (o.kind === "skipped" ? o.reason : o.kind)));
    expect(seen).toEqual([
      ["sent"],
      ["failed"],
      ["failed"],
      ["body_too_large"],
      ["sent", "sent"],
      ["memory_budget"],
      ["sent"],
      ["failed"],
    ]);
    expect(jobs[6]?.outcomes[0]).toMatchObject({ compare: { verdict: "differ" } });
    expect(budget.held).toBe(0);
  });

  it("skips every copy of a body that runs out of budget as it is read, with reason memory_budget", async () => {
    fetches = interceptFetch({ [CANARY]: () => new Response("ok") });
    const budget = new MemoryBudget(2000);
    const { job: mirrorJob, outcomes } = job(budget, upload(3000, false), [{ cluster: "canary" }, { origin: OTHER }]);
    await runMirrors(mirrorJob);
    expect(outcomes).toEqual([
      expect.objectContaining({ mirror: "canary", kind: "skipped", reason: "memory_budget" }),
      expect.objectContaining({ mirror: OTHER, kind: "skipped", reason: "memory_budget" }),
    ]);
    expect(fetches.seen).toEqual([]);
    expect(budget.held).toBe(0);
  });

  it("ends a comparison whose answers do not fit with verdict error, saying so", async () => {
    fetches = interceptFetch({
      [CANARY]: () => new Response("x".repeat(3000), { headers: { "content-length": "3000" } }),
      [OTHER]: () => new Response("{}"),
    });
    const budget = new MemoryBudget(2500);
    const primaryHold = budget.hold();
    const split = teeForComparison(new Response("{}"), 4096, primaryHold);
    void split.response.arrayBuffer();
    const { job: mirrorJob, outcomes } = job(
      budget,
      new Request("https://edge.example.com/up"),
      [{ cluster: "canary", compare: true }],
      { primary: { capture: split.capture as Promise<Capture>, hold: primaryHold } },
    );
    await runMirrors(mirrorJob);
    expect(outcomes).toEqual([
      expect.objectContaining({
        kind: "sent",
        compare: expect.objectContaining({
          verdict: "error",
          error: expect.stringMatching(/^mirror: content-length 3000 does not fit the isolate's memory budget/),
        }),
      }),
    ]);
    expect(budget.held).toBe(0);
  });

  describe("durable copies and waitUntil's 30 s", () => {
    const durable = { cluster: "canary", delivery: "durable", retry: { firstDelaySeconds: 3600 }, timeoutMs: 30_000 };

    it("shortens a durable copy's inline send to what is left before the spool needs its time", () => {
      const start = 1_000_000;
      expect(inlineTimeoutMs(5000, start, start)).toBe(5000);
      // A 30 s mirror timeout would end past the cut: the send ends with time to spool.
      expect(inlineTimeoutMs(30_000, start, start)).toBe(WAIT_UNTIL_MS - SPOOL_RESERVE_MS);
      expect(inlineTimeoutMs(30_000, start, start + 20_000)).toBe(5000);
      expect(inlineTimeoutMs(30_000, start, start + WAIT_UNTIL_MS - SPOOL_RESERVE_MS - MIN_INLINE_MS + 1)).toBe(
        undefined,
      );
    });

    it("spools a copy without sending it when too little is left (a body that took 26 s to arrive)", async () => {
      fetches = interceptFetch({ [CANARY]: () => new Response(null, { status: 204 }) });
      const spool = recordingSpool(env);
      const budget = new MemoryBudget(100_000);
      const { job: mirrorJob, outcomes } = job(budget, upload(3000), [durable], {
        spool: new Spool({ queue: spool.env.MIRROR_SPOOL, bodies: spool.env.MIRROR_SPOOL_BODIES }),
      });
      await runMirrors(mirrorJob, Date.now() - 26_000);
      expect(fetches.seen).toHaveLength(0);
      expect(outcomes).toEqual([
        expect.objectContaining({ kind: "spooled", error: "wait_until_budget", latencyMs: 0, bodyIn: "message" }),
      ]);
      expect((spool.spooled[0]?.body as SpooledCopy | undefined)?.sentInline).toBe(false);
      expect(budget.held).toBe(0);
    });

    it("spools a copy whose inline send the cut ended as a timeout, with its body", async () => {
      fetches = interceptFetch({
        [CANARY]: (req) =>
          new Promise((_, reject) =>
            req.signal.addEventListener("abort", () => reject(new DOMException("no answer", "TimeoutError"))),
          ),
      });
      const spool = recordingSpool(env);
      const budget = new MemoryBudget(100_000);
      const { job: mirrorJob, outcomes } = job(budget, upload(3000), [durable], {
        spool: new Spool({ queue: spool.env.MIRROR_SPOOL, bodies: spool.env.MIRROR_SPOOL_BODIES }),
      });
      // 23.9 s gone: 1.1 s is left for the inline send, though the mirror would be given 30 s.
      const started = Date.now();
      await runMirrors(mirrorJob, started - (WAIT_UNTIL_MS - SPOOL_RESERVE_MS - 1100));
      expect(outcomes).toEqual([expect.objectContaining({ kind: "spooled", error: "timeout", bodyBytes: 3000 })]);
      const copy = spool.spooled[0]?.body as SpooledCopy;
      expect(copy.body).toEqual({ kind: "inline", bytes: new Uint8Array(3000).fill(7) });
      expect(budget.held).toBe(0);
    });
  });
});

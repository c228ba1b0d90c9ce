import { describe, expect, it } from "vitest";
import { seeded } from "../../test/worker/seeded.js";
import { parseRoute } from "../policy/index.js";
import { classifyMirrorError, isSampled, planMirrors } from "./index.js";
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

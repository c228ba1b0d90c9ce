import { createExecutionContext, reset, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { bodyDigest, EMPTY_BODY_DIGEST } from "../../src/headers/marker.js";
import { stickyPoint } from "../../src/mirror/plan.js";
import type { MirrorOutcome } from "../../src/record/index.js";
import type { SipKey } from "../../src/siphash/index.js";
import { callWorker, interceptFetch, putPolicies, randomBytes, type TestWorker, testWorker } from "./helpers.js";

const PRIMARY = "http://primary.test:8080";
const CANARY = "http://canary.test:9002";
const SVC2_MIRROR = "http://svc2-mirror.test:9003";
const OTHER = "http://other.test:9004";
const AUDIT = "https://audit.test";
const EDGE = "https://edge.example.com";

const testEnv = { ...env, PRIMARY_ORIGIN: PRIMARY } as Env;

function echo(status = 200): (req: Request) => Response {
  return (req) =>
    new Response(`answer from ${new URL(req.url).origin}`, {
      status,
      headers: { "x-served-by": new URL(req.url).host },
    });
}

/** Each test's own worker, and the outcomes it collects. */
let through: TestWorker;
let outcomes: MirrorOutcome[];
let fetches: ReturnType<typeof interceptFetch>;

function send(request: Request, options: { random?: () => number; environment?: Env } = {}) {
  return through.send(request, options.environment ?? testEnv, options.random);
}

beforeEach(async () => {
  await reset();
  through = testWorker();
  outcomes = through.outcomes;
  fetches = interceptFetch({
    [PRIMARY]: echo(201),
    [CANARY]: echo(),
    [SVC2_MIRROR]: echo(),
    [OTHER]: echo(),
    [AUDIT]: echo(),
  });
  await putPolicies({
    clusters: { canary: CANARY, "service2-mirror": SVC2_MIRROR, other: OTHER },
    routes: [
      {
        id: "service-1",
        match: { path: { type: "PathPrefix", value: "/service/1" } },
        requestHeaders: { set: { "x-route": "s1" } },
        mirrors: [
          {
            cluster: "canary",
            requestHeaders: {
              set: { "x-shadow": "1" },
              add: { "x-route": "mirror" },
              remove: ["authorization", "cookie"],
            },
          },
        ],
      },
      {
        id: "service-2",
        match: { path: { type: "PathPrefix", value: "/service/2" } },
        mirrorFromHeader: { header: "x-mirror-cluster", allow: ["service2-mirror"] },
      },
      {
        id: "capped",
        match: { path: { type: "PathPrefix", value: "/capped" } },
        maxMirrorBodyBytes: 1000,
        mirrors: [{ cluster: "canary" }],
      },
      {
        id: "rewritten",
        match: { path: { type: "PathPrefix", value: "/api/v1" } },
        mirrors: [
          { cluster: "canary", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } } },
          { cluster: "other", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/shadow/sink" } } },
        ],
      },
      {
        id: "sticky",
        match: { path: { type: "PathPrefix", value: "/sticky" } },
        mirrors: [
          { cluster: "canary", percent: 50, sampleBy: { cookie: "session" } },
          { cluster: "other", percent: 50, sampleBy: { query: "user" } },
        ],
      },
      {
        id: "split",
        match: { path: { type: "PathPrefix", value: "/split" } },
        backends: [
          { cluster: "other", weight: 1 },
          { origin: PRIMARY, weight: 1 },
        ],
        timeoutMs: 50,
      },
    ],
  });
});

afterEach(() => fetches.restore());

describe("unmatched requests", () => {
  it("pass through to PRIMARY_ORIGIN with nothing mirrored", async () => {
    const { response, body } = await send(new Request("https://edge.example.com/other?q=1"));
    expect(response.status).toBe(201);
    expect(new TextDecoder().decode(body)).toBe(`answer from ${PRIMARY}`);
    expect(fetches.seen.map((s) => s.url)).toEqual([`${PRIMARY}/other?q=1`]);
    expect(outcomes).toEqual([]);
  });
});

describe("static mirror (seed 002, /service/1)", () => {
  it("returns the primary's answer and sends the mirror the same request with shadow host and marker", async () => {
    const payload = randomBytes(64 * 1024);
    const request = new Request("https://edge.example.com:8443/service/1/push?x=1&x=2&enc=%2F", {
      method: "POST",
      body: payload,
      headers: {
        "content-type": "application/x-protobuf",
        "content-encoding": "snappy",
        authorization: "Bearer secret",
        cookie: "s=1",
        connection: "keep-alive",
        "cf-connecting-ip": "203.0.113.7",
        "cf-ray": "8f0c0ffee-AKL",
        "cf-access-jwt-assertion": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
      },
    });
    const { response, body } = await send(request);
    expect(response.status).toBe(201);
    expect(response.headers.get("x-served-by")).toBe("primary.test:8080");
    expect(new TextDecoder().decode(body)).toBe(`answer from ${PRIMARY}`);

    const [primary] = fetches.to(PRIMARY);
    const [mirror] = fetches.to(CANARY);
    expect(primary?.url).toBe(`${PRIMARY}/service/1/push?x=1&x=2&enc=%2F`);
    expect(mirror?.url).toBe(`${CANARY}/service/1/push?x=1&x=2&enc=%2F`);
    expect(mirror?.method).toBe("POST");
    expect(primary?.body).toEqual(payload);
    expect(mirror?.body).toEqual(payload);

    expect(primary?.headers).toMatchObject({
      "x-forwarded-host": "edge.example.com:8443",
      "x-forwarded-proto": "https",
      "x-forwarded-for": "203.0.113.7",
      "x-route": "s1",
      authorization: "Bearer secret",
      "content-encoding": "snappy",
    });
    expect(primary?.headers).not.toHaveProperty("x-edge-mirror");
    for (const never of ["connection", "cf-connecting-ip", "cf-ray"])
      expect(primary?.headers).not.toHaveProperty(never);
    // Cloudflare Access's assertion reaches the primary, and the mirror like any credential the
    // mirror's own changes do not remove.
    expect(primary?.headers["cf-access-jwt-assertion"]).toBe("eyJhbGciOiJSUzI1NiJ9.e30.sig");
    expect(mirror?.headers["cf-access-jwt-assertion"]).toBe("eyJhbGciOiJSUzI1NiJ9.e30.sig");
    // The marker is made for this copy: its body's digest, signed with the deployment's key.
    expect(mirror?.headers["x-edge-mirror"]).toMatch(
      new RegExp(`^service-1;t=\\d+;b=${await bodyDigest(payload)};sig=[0-9a-f]{64}$`),
    );
    expect(mirror?.headers).toMatchObject({
      "x-forwarded-host": "edge.example.com-shadow:8443",
      "x-shadow": "1",
      "x-route": "s1,mirror",
      "content-type": "application/x-protobuf",
      "content-encoding": "snappy",
    });
    for (const gone of ["authorization", "cookie", "connection", "cf-connecting-ip", "cf-ray"]) {
      expect(mirror?.headers).not.toHaveProperty(gone);
    }
    expect(outcomes).toEqual([
      expect.objectContaining({ kind: "sent", route: "service-1", mirror: "canary", status: 200, bodyBytes: 65536 }),
    ]);
  });

  it("never mirrors a copy signed by a deployment sharing MIRROR_MARKER_KEY", async () => {
    const keyed = { ...testEnv, MIRROR_MARKER_KEY: "shared-marker-key-0123456789abcdef" } as Env;
    // The first pass is the original request: its copy carries a signed marker.
    await send(new Request("https://edge.example.com/service/1"), { environment: keyed });
    const marker = fetches.to(CANARY)[0]?.headers["x-edge-mirror"] as string;
    expect(marker).toMatch(new RegExp(`^service-1;t=\\d+;b=${EMPTY_BODY_DIGEST};sig=[0-9a-f]{64}$`));
    fetches.seen.length = 0;
    outcomes.length = 0;

    // The copy as the canary — another deployment with the same key — receives it.
    await send(new Request(`${CANARY}/service/1`, { headers: { "x-edge-mirror": marker } }), { environment: keyed });
    expect(fetches.to(CANARY)).toHaveLength(0);
    expect(fetches.to(PRIMARY)).toHaveLength(1);
    expect(fetches.to(PRIMARY)[0]?.headers).not.toHaveProperty("x-edge-mirror");
    expect(outcomes).toEqual([expect.objectContaining({ kind: "skipped", reason: "loop_marker" })]);
  });

  it.each([
    ["a client's made-up marker", "upstream", undefined],
    ["a marker signed with another key", undefined, "another-deployments-key-0123456789"],
    [
      "a marker with a made-up signature",
      `service-1;t=1795598309;b=${EMPTY_BODY_DIGEST};sig=${"a".repeat(64)}`,
      undefined,
    ],
  ])("ignores %s: the request is mirrored and the header never reaches the primary", async (_, value, otherKey) => {
    let marker = value;
    if (otherKey) {
      await send(new Request("https://edge.example.com/service/1"), {
        environment: { ...testEnv, MIRROR_MARKER_KEY: otherKey } as Env,
      });
      marker = fetches.to(CANARY)[0]?.headers["x-edge-mirror"];
      fetches.seen.length = 0;
      outcomes.length = 0;
    }
    const keyed = { ...testEnv, MIRROR_MARKER_KEY: "shared-marker-key-0123456789abcdef" } as Env;
    await send(new Request(`${CANARY}/service/1`, { headers: { "x-edge-mirror": marker as string } }), {
      environment: otherKey ? keyed : testEnv,
    });
    expect(fetches.to(CANARY)).toHaveLength(1);
    expect(fetches.to(PRIMARY)[0]?.headers).not.toHaveProperty("x-edge-mirror");
    expect(outcomes).toEqual([expect.objectContaining({ kind: "sent", mirror: "canary" })]);
  });
});

describe("the copy marker: honoured only on the copy it was made for", () => {
  const keyed = { ...testEnv, MIRROR_MARKER_KEY: "shared-marker-key-0123456789abcdef" } as Env;

  beforeEach(async () => {
    await putPolicies({
      routes: [
        { id: "canary", match: { path: { type: "PathPrefix", value: "/c" } }, mirrors: [{ cluster: "canary" }] },
        { id: "pay", match: { path: { type: "PathPrefix", value: "/pay" } }, mirrors: [{ origin: AUDIT }] },
      ],
    });
  });

  it.each([
    ["MIRROR_MARKER_KEY", keyed],
    ["the deployment key in KV", testEnv],
  ])(
    "a marker a mirror received for GET /c/x, sent back on POST /pay/transfer, leaves the audit copy in place (%s)",
    async (_, environment) => {
      await send(new Request("https://edge.example.com/c/x"), { environment });
      const captured = fetches.to(CANARY)[0]?.headers["x-edge-mirror"] as string;
      expect(captured).toMatch(/^canary;t=\d+;b=[0-9a-f]{64};sig=[0-9a-f]{64}$/);
      outcomes.length = 0;

      const transfer = new Request("https://edge.example.com/pay/transfer", {
        method: "POST",
        body: '{"to":"mallory","amount":100000}',
        headers: { "x-edge-mirror": captured },
      });
      await send(transfer, { environment });
      expect(fetches.to(AUDIT).map((s) => [s.method, s.url])).toEqual([["POST", `${AUDIT}/pay/transfer`]]);
      expect(outcomes).toEqual([expect.objectContaining({ kind: "sent", route: "pay", mirror: AUDIT })]);
    },
  );

  it("a copy with a body comes back as a copy only with the body it was made for", async () => {
    await send(new Request("https://edge.example.com/c/x?id=7", { method: "PUT", body: "original" }));
    const [copy] = fetches.to(CANARY);
    expect(copy?.headers["x-edge-mirror"]).toContain(`;b=${await bodyDigest(new TextEncoder().encode("original"))};`);
    const comeBack = (body: string) =>
      send(
        new Request(copy?.url as string, {
          method: "PUT",
          body,
          headers: { "x-edge-mirror": copy?.headers["x-edge-mirror"] as string },
        }),
      );

    outcomes.length = 0;
    await comeBack("original");
    expect(outcomes).toEqual([expect.objectContaining({ kind: "skipped", reason: "loop_marker" })]);
    outcomes.length = 0;
    await comeBack("tampered");
    expect(outcomes).toEqual([expect.objectContaining({ kind: "sent", mirror: "canary" })]);
    expect(fetches.to(CANARY).map((s) => new TextDecoder().decode(s.body))).toEqual(["original", "tampered"]);
  });

  it.each([
    ["GET", undefined],
    ["POST", "payload"],
  ])(
    "a %s copy that comes back through the zone (same deployment, no MIRROR_MARKER_KEY) is not mirrored again",
    async (method, body) => {
      // Two mirrors that are the zone itself: each copy arrives at edge-mirror again. Were the
      // copies mirrored once more, there would be 2 + 4 + 8 + 16 of them before the hop limit.
      await putPolicies({
        clusters: { loopback: EDGE },
        routes: [
          {
            id: "echo",
            match: { path: { type: "PathPrefix", value: "/echo" } },
            mirrors: [{ cluster: "loopback" }, { origin: `${EDGE}:443` }],
          },
        ],
      });
      fetches.restore();
      fetches = interceptFetch({
        [PRIMARY]: echo(201),
        [EDGE]: async (copy) => {
          const { response, body } = await through.send(copy, testEnv);
          return new Response(body, { status: response.status });
        },
      });
      await send(new Request("https://edge.example.com/echo/1?q=1", { method, body }));
      expect(fetches.to(EDGE)).toHaveLength(2);
      expect(fetches.to(PRIMARY)).toHaveLength(3);
      expect(outcomes.map((o) => (o.kind === "skipped" ? o.reason : o.kind))).toEqual([
        "loop_marker",
        "loop_marker",
        "loop_marker",
        "loop_marker",
        "sent",
        "sent",
      ]);
    },
  );
});

describe("forwarding fields", () => {
  it("the primary and the mirror get the client's address once, in X-Forwarded-For, X-Real-IP and Forwarded", async () => {
    await send(
      new Request("https://edge.example.com/service/1/x", {
        headers: {
          "cf-connecting-ip": "203.0.113.7",
          // As Cloudflare's edge hands on a client's own X-Forwarded-For: the client's address last.
          "x-forwarded-for": "198.51.100.1, 203.0.113.7",
          "x-real-ip": "10.9.9.9",
          forwarded: "for=198.51.100.1;host=evil.test",
        },
      }),
    );
    const [primary] = fetches.to(PRIMARY);
    const [mirror] = fetches.to(CANARY);
    for (const seen of [primary, mirror]) {
      expect(seen?.headers).toMatchObject({
        "x-forwarded-for": "198.51.100.1, 203.0.113.7",
        "x-real-ip": "203.0.113.7",
        forwarded: "for=198.51.100.1;host=evil.test, for=203.0.113.7;host=edge.example.com;proto=https",
      });
    }
  });
});

describe("trace context on copies", () => {
  const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
  const PARENT_SPAN = "00f067aa0ba902b7";

  beforeEach(async () => {
    await putPolicies({
      routes: [
        {
          id: "traced",
          match: { path: { type: "PathPrefix", value: "/traced" } },
          mirrors: [
            { cluster: "canary", compare: { reference: { cluster: "other" } } },
            { cluster: "service2-mirror" },
          ],
        },
      ],
    });
  });

  /** What the primary, the two mirrors and the compare reference were sent of the trace headers. */
  async function traced(headers: Record<string, string>) {
    await send(new Request("https://edge.example.com/traced/items", { headers }));
    const trace = (origin: string) => {
      const seen = fetches.to(origin);
      expect(seen).toHaveLength(1);
      return { traceparent: seen[0]?.headers.traceparent, tracestate: seen[0]?.headers.tracestate };
    };
    return { primary: trace(PRIMARY), copies: [trace(CANARY), trace(OTHER), trace(SVC2_MIRROR)] };
  }

  it.each([
    ["sampled", "01"],
    ["not sampled", "00"],
  ])(
    "every copy and the reference get a child of the client's traceparent (%s), each a span of its own",
    async (_, flags) => {
      const parent = `00-${TRACE_ID}-${PARENT_SPAN}-${flags}`;
      const { primary, copies } = await traced({ traceparent: parent, tracestate: "congo=t61rcWkgMzE" });
      // The primary's request is passed through as the client sent it.
      expect(primary).toEqual({ traceparent: parent, tracestate: "congo=t61rcWkgMzE" });
      const spans = new Set<string>();
      for (const copy of copies) {
        const match = new RegExp(`^00-${TRACE_ID}-([0-9a-f]{16})-${flags}$`).exec(copy.traceparent ?? "");
        expect(match, copy.traceparent).not.toBeNull();
        spans.add(match?.[1] as string);
        expect(copy.tracestate).toBe("edgemirror=copy,congo=t61rcWkgMzE");
      }
      expect(spans.size).toBe(3);
      expect(spans.has(PARENT_SPAN)).toBe(false);
      expect(outcomes.filter((o) => o.kind === "sent")).toHaveLength(2);
    },
  );

  it("an invalid traceparent reaches no copy, nor does its tracestate", async () => {
    const invalid = `00-${TRACE_ID.toUpperCase()}-${PARENT_SPAN}-01`;
    const { primary, copies } = await traced({ traceparent: invalid, tracestate: "congo=1" });
    expect(primary).toEqual({ traceparent: invalid, tracestate: "congo=1" });
    for (const copy of copies) expect(copy).toEqual({ traceparent: undefined, tracestate: undefined });
  });

  it("without a traceparent, nothing is added", async () => {
    const { primary, copies } = await traced({});
    for (const side of [primary, ...copies]) expect(side).toEqual({ traceparent: undefined, tracestate: undefined });
  });
});

describe("Upgrade on a request that is no WebSocket handshake", () => {
  const asksToUpgrade = {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
  };

  it.each(["POST", "PUT", "PATCH"])(
    "a %s with Upgrade: websocket reaches the primary and the mirror as itself, its body byte for byte",
    async (method) => {
      const payload = randomBytes(48 * 1024);
      const { response } = await send(
        new Request("https://edge.example.com/service/1/upload?x=1", { method, body: payload, headers: asksToUpgrade }),
      );
      expect(response.status).toBe(201);
      const [primary] = fetches.to(PRIMARY);
      const [mirror] = fetches.to(CANARY);
      for (const seen of [primary, mirror]) {
        expect(seen?.method).toBe(method);
        expect(seen?.url.endsWith("/service/1/upload?x=1")).toBe(true);
        expect(seen?.body).toEqual(payload);
        expect(seen?.headers).not.toHaveProperty("upgrade");
        expect(seen?.headers).not.toHaveProperty("connection");
      }
      expect(outcomes).toEqual([
        expect.objectContaining({ kind: "sent", mirror: "canary", bodyBytes: payload.length }),
      ]);
    },
  );

  it("a GET with Upgrade: websocket but no Sec-WebSocket-Key is a plain GET, and mirrored", async () => {
    await send(
      new Request("https://edge.example.com/service/1/x", { headers: { upgrade: "websocket", connection: "Upgrade" } }),
    );
    expect(fetches.seen.map((s) => [s.method, s.url, s.headers.upgrade])).toEqual([
      ["GET", `${PRIMARY}/service/1/x`, undefined],
      ["GET", `${CANARY}/service/1/x`, undefined],
    ]);
    expect(outcomes).toEqual([expect.objectContaining({ kind: "sent", mirror: "canary" })]);
  });

  it("a WebSocket handshake keeps its Upgrade to the primary and is never copied", async () => {
    await send(new Request("https://edge.example.com/service/1/socket", { headers: asksToUpgrade }));
    expect(fetches.seen.map((s) => [s.method, s.url, s.headers.upgrade, s.headers.connection])).toEqual([
      ["GET", `${PRIMARY}/service/1/socket`, "websocket", "upgrade"],
    ]);
    expect(outcomes).toEqual([expect.objectContaining({ kind: "skipped", mirror: "canary", reason: "upgrade" })]);
  });
});

describe("header-chosen mirror (seed 002, /service/2)", () => {
  it.each([
    ["service2-mirror", 1, undefined],
    [undefined, 0, undefined],
    ["service2-mirror-non-existent", 0, "cluster_not_allowed"],
    ["other", 0, "cluster_not_allowed"],
    ["http://evil.test", 0, "cluster_not_allowed"],
  ])("x-mirror-cluster: %s → %i mirrored", async (name, mirrored, reason) => {
    const headers: Record<string, string> = name ? { "x-mirror-cluster": name } : {};
    const { response } = await send(new Request("https://edge.example.com/service/2", { headers }));
    expect(response.status).toBe(201);
    expect(fetches.to(SVC2_MIRROR)).toHaveLength(mirrored);
    expect(fetches.seen).toHaveLength(1 + mirrored);
    if (reason) expect(outcomes).toEqual([expect.objectContaining({ kind: "skipped", reason })]);
  });
});

describe("URL rewrite for copies", () => {
  it("rewrites each mirror's path only; escapes and the query arrive byte for byte, the primary is untouched", async () => {
    const pathAndQuery = "/api/v1/users/a%2Fb/%E2%9C%93/?b=2&a=1&enc=%2F&sp=a+b&empty";
    const { response } = await send(
      new Request(`https://edge.example.com${pathAndQuery}`, { method: "POST", body: "x" }),
    );
    expect(response.status).toBe(201);
    const query = pathAndQuery.slice(pathAndQuery.indexOf("?"));
    expect(fetches.to(PRIMARY).map((s) => s.url)).toEqual([`${PRIMARY}${pathAndQuery}`]);
    expect(fetches.to(CANARY).map((s) => s.url)).toEqual([`${CANARY}/v2/users/a%2Fb/%E2%9C%93/${query}`]);
    expect(fetches.to(OTHER).map((s) => s.url)).toEqual([`${OTHER}/shadow/sink${query}`]);
    expect(fetches.to(CANARY)[0]?.body).toEqual(new TextEncoder().encode("x"));
    expect(outcomes.map((o) => [o.mirror, o.kind])).toEqual([
      ["canary", "sent"],
      ["other", "sent"],
    ]);
  });

  it("replaces the prefix segment by segment: /api/v1 itself, and not /api/v10", async () => {
    await send(new Request("https://edge.example.com/api/v1"));
    await send(new Request("https://edge.example.com/api/v10"));
    expect(fetches.to(CANARY).map((s) => s.url)).toEqual([`${CANARY}/v2`]);
  });
});

describe("paths are matched as the origin routes them", () => {
  const AUDIT = "http://audit.test:9005";
  const payRoute = (path: object, mirror: object = {}) => ({
    id: "pay",
    match: { path: { type: "PathPrefix", value: "/pay", ...path } },
    mirrors: [{ origin: AUDIT, requestHeaders: { remove: ["authorization"] }, ...mirror }],
  });

  beforeEach(async () => {
    fetches.restore();
    fetches = interceptFetch({ [PRIMARY]: echo(201), [AUDIT]: echo() });
  });

  it("copies POST /%70ay/transfer to the audit mirror; the primary gets the path, method and body byte for byte", async () => {
    await putPolicies({ routes: [payRoute({})] });
    const payload = randomBytes(4096);
    const { response } = await send(
      new Request("https://edge.example.com/%70ay/transfer?to=%41b", { method: "POST", body: payload }),
    );
    expect(response.status).toBe(201);
    const [primary] = fetches.to(PRIMARY);
    expect(primary?.url).toBe(`${PRIMARY}/%70ay/transfer?to=%41b`);
    expect(primary?.method).toBe("POST");
    expect(primary?.body).toEqual(payload);
    const copies = fetches.to(AUDIT);
    expect(copies.map((c) => [c.method, c.url])).toEqual([["POST", `${AUDIT}/%70ay/transfer?to=%41b`]]);
    expect(copies[0]?.body).toEqual(payload);
    expect(outcomes).toEqual([expect.objectContaining({ route: "pay", kind: "sent" })]);
  });

  it("does not take /pay%2Ftransfer for /pay/transfer: an encoded slash is part of one segment", async () => {
    await putPolicies({ routes: [payRoute({})] });
    for (const path of ["/pay%2Ftransfer", "/pay%2ftransfer", "/%70ay%2Ftransfer"]) {
      await send(new Request(`https://edge.example.com${path}`, { method: "POST", body: "x" }));
    }
    expect(fetches.to(PRIMARY).map((s) => s.url)).toEqual([
      `${PRIMARY}/pay%2Ftransfer`,
      `${PRIMARY}/pay%2ftransfer`,
      `${PRIMARY}/%70ay%2Ftransfer`,
    ]);
    expect(fetches.to(AUDIT)).toEqual([]);
    expect(outcomes).toEqual([]);
  });

  it("copies /PAY/transfer only when the route has ignoreCase", async () => {
    await putPolicies({ routes: [payRoute({})] });
    await send(new Request("https://edge.example.com/PAY/transfer", { method: "POST", body: "x" }));
    expect(fetches.to(AUDIT)).toEqual([]);

    await putPolicies({ routes: [payRoute({ ignoreCase: true })] });
    await send(new Request("https://edge.example.com/PAY/transfer", { method: "POST", body: "x" }));
    await send(new Request("https://edge.example.com/%50%41Y/transfer", { method: "POST", body: "x" }));
    expect(fetches.to(AUDIT).map((s) => s.url)).toEqual([`${AUDIT}/PAY/transfer`, `${AUDIT}/%50%41Y/transfer`]);
    expect(fetches.to(PRIMARY).map((s) => s.url)).toEqual([
      `${PRIMARY}/PAY/transfer`,
      `${PRIMARY}/PAY/transfer`,
      `${PRIMARY}/%50%41Y/transfer`,
    ]);
  });

  it("rewrites a copy of an encoded or differently cased path from the path the route matched", async () => {
    const rewrite = { urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/audit" } } };
    await putPolicies({ routes: [payRoute({ ignoreCase: true }, rewrite)] });
    for (const path of ["/%70ay/transfer/a%2fb?to=%41b", "/PAY/Transfer?x", "/pay"]) {
      await send(new Request(`https://edge.example.com${path}`, { method: "POST", body: "x" }));
    }
    expect(fetches.to(AUDIT).map((s) => s.url)).toEqual([
      `${AUDIT}/audit/transfer/a%2Fb?to=%41b`,
      `${AUDIT}/audit/Transfer?x`,
      `${AUDIT}/audit`,
    ]);
    expect(fetches.to(PRIMARY).map((s) => s.url)).toEqual([
      `${PRIMARY}/%70ay/transfer/a%2fb?to=%41b`,
      `${PRIMARY}/PAY/Transfer?x`,
      `${PRIMARY}/pay`,
    ]);
    expect(outcomes.every((o) => o.kind === "sent")).toBe(true);
  });

  it("refuses ignoreCase on a RegularExpression route: it is skipped, never matched", async () => {
    await putPolicies({
      routes: [{ ...payRoute({}), match: { path: { type: "RegularExpression", value: "/pay/.*", ignoreCase: true } } }],
    });
    const logged: string[] = [];
    through = testWorker({ policyLog: (line) => logged.push(line) });
    outcomes = through.outcomes;
    await send(new Request("https://edge.example.com/pay/transfer", { method: "POST", body: "x" }));
    expect(fetches.to(AUDIT)).toEqual([]);
    expect(logged.map((line) => JSON.parse(line))).toContainEqual({
      msg: "edge-mirror.invalid_policy",
      key: "route:pay",
      error: expect.stringContaining("match.path.ignoreCase: applies only to Exact and PathPrefix"),
    });
  });
});

describe("sticky sampling", () => {
  const users = Array.from({ length: 40 }, (_, i) => `user-${i}`);

  it("decides by the cookie or query value, never by the random draw", async () => {
    for (const random of [() => 0, () => 0.999]) {
      for (const user of users) {
        await send(
          new Request(`https://edge.example.com/sticky?user=${user}`, { headers: { cookie: `a=1; session=${user}` } }),
          {
            random,
          },
        );
      }
    }
    const chosen = (origin: string) => fetches.to(origin).map((s) => new URL(s.url).searchParams.get("user") as string);
    // The deployment's own key decides (created in KV on the first request), which clients cannot know.
    const key = through.worker.isolate(testEnv).secret.stickyKey as SipKey;
    expect(key).toBeDefined();
    const expected = (label: string) => users.filter((user) => stickyPoint(user, label, key) < 0.5);
    expect(expected("canary").length).toBeGreaterThan(0);
    expect(expected("canary").length).toBeLessThan(users.length);
    expect(chosen(CANARY)).toEqual([...expected("canary"), ...expected("canary")]);
    expect(chosen(OTHER)).toEqual([...expected("other"), ...expected("other")]);
  });

  it("samples a request without the value at random", async () => {
    await send(new Request("https://edge.example.com/sticky"), { random: () => 0 });
    await send(new Request("https://edge.example.com/sticky"), { random: () => 0.999 });
    expect(fetches.to(CANARY)).toHaveLength(1);
    expect(fetches.to(OTHER)).toHaveLength(1);
  });
});

describe("safe defaults", () => {
  it("refuses a header-chosen mirror without allow: a client cannot pick an internal cluster", async () => {
    await putPolicies({
      routes: [
        {
          id: "open",
          match: { path: { type: "PathPrefix", value: "/open" } },
          mirrorFromHeader: { header: "x-mirror-cluster" },
        },
      ],
    });
    await send(new Request("https://edge.example.com/open", { headers: { "x-mirror-cluster": "other" } }));
    expect(fetches.to(PRIMARY)).toHaveLength(1);
    expect(fetches.to(OTHER)).toHaveLength(0);
  });

  it("refuses a body cap an isolate cannot hold", async () => {
    await putPolicies({
      routes: [
        {
          id: "huge",
          match: { path: { type: "PathPrefix", value: "/huge" } },
          maxMirrorBodyBytes: 64 * 1024 * 1024,
          mirrors: [{ cluster: "canary" }],
        },
      ],
    });
    await send(new Request("https://edge.example.com/huge", { method: "POST", body: "x" }));
    expect(fetches.to(PRIMARY)).toHaveLength(1);
    expect(fetches.to(CANARY)).toHaveLength(0);
  });
});

describe("bodies and the mirror body cap", () => {
  it("skips the mirror without buffering when content-length is over the cap; the primary gets every byte", async () => {
    const payload = randomBytes(5000);
    const { response } = await send(
      new Request("https://edge.example.com/capped", {
        method: "PUT",
        body: payload,
        headers: { "content-length": String(payload.byteLength) },
      }),
    );
    expect(response.status).toBe(201);
    expect(fetches.to(PRIMARY)[0]?.body).toEqual(payload);
    expect(fetches.to(CANARY)).toHaveLength(0);
    expect(outcomes).toEqual([
      expect.objectContaining({ kind: "skipped", reason: "body_too_large", detail: expect.stringContaining("5000") }),
    ]);
  });

  it("stops reading a streamed body of unknown length at the cap", async () => {
    const payload = randomBytes(4096);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < payload.length; i += 512) controller.enqueue(payload.slice(i, i + 512));
        controller.close();
      },
    });
    await send(new Request("https://edge.example.com/capped", { method: "POST", body: stream }));
    expect(fetches.to(PRIMARY)[0]?.body).toEqual(payload);
    expect(fetches.to(CANARY)).toHaveLength(0);
    expect(outcomes[0]).toMatchObject({ kind: "skipped", reason: "body_too_large" });
  });

  it("mirrors a body under the cap", async () => {
    const payload = randomBytes(999);
    await send(new Request("https://edge.example.com/capped", { method: "POST", body: payload }));
    expect(fetches.to(CANARY)[0]?.body).toEqual(payload);
  });
});

describe("the isolate's memory budget for copies", () => {
  const budgetEnv = { ...testEnv, MIRROR_MEMORY_BUDGET_BYTES: "20000" } as Env;
  const budget = () => through.worker.isolate(budgetEnv).budget;

  beforeEach(async () => {
    await putPolicies({
      routes: [
        {
          id: "budgeted",
          match: { path: { type: "PathPrefix", value: "/budgeted" } },
          maxMirrorBodyBytes: 100_000,
          mirrors: [{ cluster: "canary", timeoutMs: 50 }],
        },
        {
          id: "compared",
          match: { path: { type: "PathPrefix", value: "/compared" } },
          mirrors: [{ cluster: "canary", compare: { reference: { cluster: "other" } } }],
        },
      ],
    });
  });

  it("skips a copy whose declared body does not fit, before any tee (memory_budget); the primary gets every byte", async () => {
    const payload = randomBytes(25_000);
    const { response } = await send(
      new Request("https://edge.example.com/budgeted", {
        method: "PUT",
        body: payload,
        headers: { "content-length": String(payload.byteLength) },
      }),
      { environment: budgetEnv },
    );
    expect(response.status).toBe(201);
    expect(fetches.to(PRIMARY)[0]?.body).toEqual(payload);
    expect(fetches.to(CANARY)).toHaveLength(0);
    expect(outcomes).toEqual([
      {
        kind: "skipped",
        route: "budgeted",
        mirror: "canary",
        requestId: expect.any(String),
        reason: "memory_budget",
        detail: "content-length 25000 does not fit the isolate's memory budget (20000 of 20000 bytes free)",
      },
    ]);
    expect(budget().held).toBe(0);
  });

  it("skips a streamed copy once the budget runs out; the primary gets every byte", async () => {
    const payload = randomBytes(40 * 1024);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < payload.length; i += 512) controller.enqueue(payload.slice(i, i + 512));
        controller.close();
      },
    });
    await send(new Request("https://edge.example.com/budgeted", { method: "POST", body: stream }), {
      environment: budgetEnv,
    });
    expect(fetches.to(PRIMARY)[0]?.body).toEqual(payload);
    expect(fetches.to(CANARY)).toHaveLength(0);
    expect(outcomes).toEqual([expect.objectContaining({ kind: "skipped", reason: "memory_budget" })]);
    expect(budget().held).toBe(0);
  });

  it("gives every byte back after many requests: copies sent, failed, timed out or skipped, and comparisons", async () => {
    let hang: () => void = () => {};
    const hanging = new Promise<void>((resolve) => {
      hang = resolve;
    });
    fetches.restore();
    fetches = interceptFetch({
      [PRIMARY]: echo(201),
      [OTHER]: echo(),
      [CANARY]: async (req) => {
        const kind = new URL(req.url).searchParams.get("mirror");
        if (kind === "fails") throw new TypeError("Network connection lost.");
        if (kind === "hangs") {
          hang();
          return new Promise((_, reject) =>
            req.signal.addEventListener("abort", () => reject(new DOMException("timed out", "TimeoutError"))),
          );
        }
        return echo()(req);
      },
    });
    const post = (query: string, size: number, declared: boolean) =>
      new Request(`https://edge.example.com/budgeted?${query}`, {
        method: "POST",
        body: randomBytes(size),
        headers: declared ? { "content-length": String(size) } : {},
      });
    const requests = (i: number) => [
      post(`i=${i}`, 1000, false),
      post(`i=${i}`, 2000, true),
      post(`mirror=fails&i=${i}`, 800, false),
      post(`too-large&i=${i}`, 100_001, true),
      post(`over-budget&i=${i}`, 20_001, true),
      new Request(`https://edge.example.com/compared?i=${i}`),
      new Request(`https://edge.example.com/compared?mirror=fails&i=${i}`),
    ];
    const serve = async (request: Request, ctx = createExecutionContext()) => {
      const answer = await through.worker.fetch(request, budgetEnv, ctx);
      expect(answer.status).toBe(201);
      await answer.arrayBuffer();
      return ctx;
    };
    const waiting = await serve(post("mirror=hangs", 600, true));
    await hanging;
    // While a copy waits for its mirror, its body is held.
    expect(budget().held).toBe(600);
    for (let i = 0; i < 5; i++) {
      for (const request of requests(i)) await waitOnExecutionContext(await serve(request));
    }
    await waitOnExecutionContext(waiting);
    const seen = new Set(outcomes.map((o) => (o.kind === "skipped" ? o.reason : o.kind)));
    expect(seen).toEqual(new Set(["sent", "failed", "body_too_large", "memory_budget"]));
    expect(outcomes.some((o) => o.kind === "failed" && o.error === "timeout")).toBe(true);
    // Comparisons read all three answers (the verdict is whatever the reference made of them).
    expect(outcomes.filter((o) => o.kind === "sent" && o.compare && o.compare.verdict !== "error")).toHaveLength(5);
    expect(budget().held).toBe(0);
  });
});

describe("mirror failures never reach the client", () => {
  it.each([
    [
      "rejects",
      () => {
        throw new TypeError("Network connection lost.");
      },
      { kind: "failed", error: "network" },
    ],
    ["answers 503", echo(503), { kind: "sent", status: 503 }],
  ])("a mirror that %s", async (_what, responder, expected) => {
    fetches.restore();
    fetches = interceptFetch({ [PRIMARY]: echo(201), [CANARY]: responder });
    const { response, body } = await send(
      new Request("https://edge.example.com/service/1", { method: "POST", body: "x" }),
    );
    expect(response.status).toBe(201);
    expect(new TextDecoder().decode(body)).toBe(`answer from ${PRIMARY}`);
    expect(outcomes).toEqual([expect.objectContaining(expected)]);
  });

  it("ejects a mirror that keeps failing, so that later requests do not even try it", async () => {
    fetches.restore();
    let attempts = 0;
    fetches = interceptFetch({
      [PRIMARY]: echo(201),
      [CANARY]: () => {
        attempts++;
        throw new TypeError("internal error; reference = 8vqk5g4q");
      },
    });
    through = testWorker({ breaker: { threshold: 3, baseEjectionMs: 60_000, maxEjectionMs: 60_000 } });
    outcomes = through.outcomes;
    for (let i = 0; i < 10; i++) {
      const { response: res } = await send(new Request("https://edge.example.com/service/1"));
      expect(res.status).toBe(201);
    }
    expect(attempts).toBe(3);
    const errors = outcomes.map((o) => (o.kind === "failed" ? o.error : o.kind));
    expect(errors).toEqual([...Array(3).fill("network"), ...Array(7).fill("circuit_open")]);
    expect(outcomes[2]).toMatchObject({ message: expect.stringContaining("ejected until") });
  });

  it("answers the client while a mirror is still hanging", async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let mirrorAnswered = false;
    fetches.restore();
    fetches = interceptFetch({
      [PRIMARY]: echo(201),
      [CANARY]: async () => {
        await held;
        mirrorAnswered = true;
        return new Response("late");
      },
    });
    const ctx = createExecutionContext();
    const response = await through.worker.fetch(new Request("https://edge.example.com/service/1"), testEnv, ctx);
    expect(await response.text()).toBe(`answer from ${PRIMARY}`);
    expect(mirrorAnswered).toBe(false);
    expect(outcomes).toEqual([]);
    release();
    await waitOnExecutionContext(ctx);
    expect(mirrorAnswered).toBe(true);
    expect(outcomes).toEqual([expect.objectContaining({ kind: "sent", status: 200 })]);
  });
});

describe("primary failures", () => {
  /** The `edge-mirror.primary_failed` lines written while `run` runs. */
  async function primaryFailedLines(run: () => Promise<unknown>): Promise<object[]> {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      await run();
      return errors.mock.calls
        .map(([line]) => String(line))
        .filter((line) => line.includes('"edge-mirror.primary_failed"'))
        .map((line) => JSON.parse(line));
    } finally {
      errors.mockRestore();
    }
  }

  it("a primary that does not answer within timeoutMs → 504 JSON with a fixed message; the detail is logged", async () => {
    fetches.restore();
    fetches = interceptFetch({
      [OTHER]: (req) =>
        new Promise((_, reject) =>
          req.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
        ),
    });
    let answer: Awaited<ReturnType<typeof send>> | undefined;
    const lines = await primaryFailedLines(async () => {
      answer = await send(new Request("https://edge.example.com/split"), {
        random: () => 0,
        environment: { ...testEnv, LOG_LEVEL: "info" },
      });
    });
    expect(answer?.response.status).toBe(504);
    expect(answer?.response.headers.get("x-edge-mirror-error")).toBe("primary_timeout");
    expect(JSON.parse(new TextDecoder().decode(answer?.body))).toEqual({
      error: "primary_timeout",
      message: "the primary did not answer in time",
    });
    expect(lines).toEqual([
      {
        msg: "edge-mirror.primary_failed",
        route: "split",
        code: "primary_timeout",
        status: 504,
        detail: "primary did not answer within 50 ms",
      },
    ]);
  });

  it("an unreachable primary → 502 JSON: the fetch error's text is logged, never sent to the client", async () => {
    let answer: Awaited<ReturnType<typeof send>> | undefined;
    const lines = await primaryFailedLines(async () => {
      answer = await send(new Request("https://edge.example.com/x"), {
        environment: { ...testEnv, PRIMARY_ORIGIN: "http://nowhere.test", LOG_LEVEL: "info" },
      });
    });
    expect(answer?.response.status).toBe(502);
    expect(JSON.parse(new TextDecoder().decode(answer?.body))).toEqual({
      error: "primary_unreachable",
      message: "the primary could not be reached",
    });
    expect(lines).toEqual([
      {
        msg: "edge-mirror.primary_failed",
        code: "primary_unreachable",
        status: 502,
        detail: "primary unreachable: fetch failed: no responder for http://nowhere.test",
      },
    ]);
  });

  it("LOG_LEVEL=off logs no failed primary", async () => {
    const lines = await primaryFailedLines(() =>
      send(new Request("https://edge.example.com/x"), {
        environment: { ...testEnv, PRIMARY_ORIGIN: "http://nowhere.test", LOG_LEVEL: "off" },
      }),
    );
    expect(lines).toEqual([]);
  });

  it("primary 4xx/5xx and redirects pass through unchanged", async () => {
    fetches.restore();
    fetches = interceptFetch({
      [PRIMARY]: () => new Response(null, { status: 302, headers: { location: "https://elsewhere.test/" } }),
    });
    const { response } = await send(new Request("https://edge.example.com/x"));
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toBe("https://elsewhere.test/");
  });

  it("a backend whose cluster is not defined is served by the default primary, not answered 500", async () => {
    await putPolicies({
      routes: [
        { id: "orphan", match: { path: { type: "PathPrefix", value: "/orphan" } }, backends: [{ cluster: "gone" }] },
      ],
    });
    const { response, body } = await send(
      new Request("https://edge.example.com/orphan/x", { method: "POST", body: "b" }),
    );
    expect(response.status).toBe(201);
    expect(new TextDecoder().decode(body)).toBe(`answer from ${PRIMARY}`);
    expect(fetches.seen.map((s) => [s.method, s.url])).toEqual([["POST", `${PRIMARY}/orphan/x`]]);
  });

  it("weighted backends split traffic between clusters and origins", async () => {
    await send(new Request("https://edge.example.com/split/a"), { random: () => 0.1 });
    await send(new Request("https://edge.example.com/split/b"), { random: () => 0.9 });
    expect(fetches.seen.map((s) => s.url)).toEqual([`${OTHER}/split/a`, `${PRIMARY}/split/b`]);
  });

  it.each(["-16", "-1", "x", "0x10", ""])(
    "a client-sent hop count %j cannot extend a loop: it counts as 0",
    async (hops) => {
      await send(new Request("https://edge.example.com/x", { headers: { "x-edge-mirror-hops": hops } }));
      expect(fetches.to(PRIMARY)[0]?.headers["x-edge-mirror-hops"]).toBe("1");
    },
  );

  it("a request that keeps coming back to the worker ends with 508, not a hang", async () => {
    const { response, body } = await send(
      new Request("https://edge.example.com/x", { headers: { "x-edge-mirror-hops": "4" } }),
    );
    expect(response.status).toBe(508);
    expect(JSON.parse(new TextDecoder().decode(body))).toEqual({
      error: "loop_detected",
      message: "the request came back to edge-mirror too many times",
    });
    expect(fetches.seen).toHaveLength(0);
  });
});

describe("policy store unavailable", () => {
  it("serves the primary and mirrors nothing", async () => {
    const broken = {
      list: () => Promise.reject(new Error("KV unavailable")),
      get: () => Promise.reject(new Error("KV unavailable")),
    } as unknown as KVNamespace;
    const { response } = await send(new Request("https://edge.example.com/service/1"), {
      environment: { ...testEnv, MIRROR_CONFIG: broken },
    });
    expect(response.status).toBe(201);
    expect(fetches.seen.map((s) => s.url)).toEqual([`${PRIMARY}/service/1`]);
  });
});

describe("the exported worker", () => {
  it("serves through Hono with env and ctx, and mirrors inside waitUntil", async () => {
    const response = await callWorker(new Request("https://edge.example.com/service/1/x"), testEnv);
    expect(response.status).toBe(201);
    expect(fetches.to(CANARY).map((s) => s.url)).toEqual([`${CANARY}/service/1/x`]);
  });
});

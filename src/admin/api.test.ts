import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { callWorker } from "../../test/worker/helpers.js";
import { clusterKey, POLICY_MARKER_KEY, POLICY_SNAPSHOT_KEY, routeKey } from "../store/keys.js";
import { decodeMarker, decodeSnapshot, textsOf } from "../store/published.js";
import { ADMIN_BODY_MAX_BYTES } from "./index.js";

const TOKEN = "api-test-admin-token-0123456789abcdef";
const adminEnv = {
  ...env,
  ADMIN_TOKEN: TOKEN,
  PRIMARY_ORIGIN: "http://primary.test",
  POLICY_CACHE_TTL_MS: "60000",
} as Env;

async function call(
  method: string,
  path: string,
  body?: unknown,
  token: string | null = TOKEN,
  extraHeaders: Record<string, string> = {},
) {
  const headers: Record<string, string> = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extraHeaders };
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    init.body = typeof body === "string" || body instanceof ReadableStream ? body : JSON.stringify(body);
  }
  const res = await callWorker(new Request(`https://edge.test/__mirror/api${path}`, init), adminEnv);
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

const fetchSpy = vi.spyOn(globalThis, "fetch");
beforeEach(async () => {
  await reset();
  fetchSpy.mockImplementation(async () => new Response("primary"));
});
afterEach(() => fetchSpy.mockReset());

describe("auth", () => {
  it("refuses without and with a wrong token, and never proxies", async () => {
    expect((await call("GET", "/routes", undefined, null)).status).toBe(401);
    expect((await call("PUT", "/routes/a", { id: "a" }, "wrong")).status).toBe(403);
    expect(await env.MIRROR_CONFIG.get(routeKey("a"))).toBeNull();
    expect(fetchSpy).not.toHaveBeenCalled();
  });
});

describe("writes come from the surface's own origin, or from no browser", () => {
  const cluster = { origin: "http://canary.test" };

  it.each([
    [{ "sec-fetch-site": "cross-site" }, 'Sec-Fetch-Site is "cross-site"'],
    [{ "sec-fetch-site": "same-site" }, 'Sec-Fetch-Site is "same-site"'],
    // Sec-Fetch-Site decides when a browser sends it, whatever Origin says.
    [{ "sec-fetch-site": "same-site", origin: "https://edge.test" }, 'Sec-Fetch-Site is "same-site"'],
    [{ origin: "https://evil.test" }, 'Origin "https://evil.test" is not this request\'s origin "https://edge.test"'],
    [{ origin: "https://admin.edge.test" }, "is not this request's origin"],
    [{ origin: "http://edge.test" }, "is not this request's origin"],
    [{ origin: "null" }, 'Origin "null"'],
  ])("refuses a write with %j (403), even with the right token, and writes nothing", async (headers, message) => {
    for (const [method, path] of [
      ["PUT", "/clusters/canary"],
      ["DELETE", "/clusters/canary"],
      ["POST", "/clusters/canary"],
      ["PATCH", "/routes/r"],
    ] as const) {
      const res = await call(method, path, method === "DELETE" ? undefined : cluster, TOKEN, headers);
      expect(res).toMatchObject({ status: 403, json: { error: "cross_origin" } });
      expect(res.json.message).toContain(message);
    }
    expect(await env.MIRROR_CONFIG.list()).toMatchObject({ keys: [] });
  });

  it.each<[Record<string, string>, string]>([
    [{}, "curl or a script: no browser, no cookie to abuse"],
    [{ "sec-fetch-site": "same-origin" }, "the dashboard's own page"],
    [{ "sec-fetch-site": "none" }, "the user's own doing"],
    [{ origin: "https://edge.test" }, "a browser that sends only Origin"],
  ])("takes a write with %j (%s)", async (headers) => {
    expect((await call("PUT", "/clusters/canary", cluster, TOKEN, headers)).status).toBe(201);
    expect((await call("DELETE", "/clusters/canary", undefined, TOKEN, headers)).status).toBe(204);
  });

  it("leaves reads alone: another origin cannot read the answer anyway", async () => {
    const res = await call("GET", "/clusters", undefined, TOKEN, { "sec-fetch-site": "cross-site" });
    expect(res.status).toBe(200);
  });
});

describe("clusters", () => {
  it("creates, reads, updates, lists and deletes", async () => {
    expect(await call("PUT", "/clusters/canary", { origin: "http://canary.test" })).toMatchObject({ status: 201 });
    expect(await call("PUT", "/clusters/canary", { origin: "http://canary2.test" })).toMatchObject({ status: 200 });
    expect(await call("GET", "/clusters/canary")).toEqual({ status: 200, json: { origin: "http://canary2.test" } });
    expect((await call("GET", "/clusters")).json).toEqual({ clusters: { canary: { origin: "http://canary2.test" } } });
    expect((await call("DELETE", "/clusters/canary")).status).toBe(204);
    expect((await call("GET", "/clusters/canary")).status).toBe(404);
  });

  it("refuses a bad origin or name with 422 and writes nothing", async () => {
    const bad = await call("PUT", "/clusters/c", { origin: "ftp://x.test" });
    expect(bad).toEqual({
      status: 422,
      json: {
        error: "invalid_policy",
        message: "origin: must use http or https, not ftp",
        issues: [{ path: "origin", message: "must use http or https, not ftp" }],
      },
    });
    expect((await call("PUT", "/clusters/bad%20name", { origin: "http://x.test" })).status).toBe(422);
    expect(await env.MIRROR_CONFIG.list()).toMatchObject({ keys: [] });
  });

  it("refuses to delete a cluster that routes still name (409)", async () => {
    await call("PUT", "/clusters/canary", { origin: "http://canary.test" });
    await call("PUT", "/routes/r", { id: "r", mirrors: [{ cluster: "canary" }] });
    const res = await call("DELETE", "/clusters/canary");
    expect(res).toMatchObject({ status: 409, json: { error: "cluster_in_use" } });
    expect(res.json.message).toContain('"r"');
  });
});

describe("routes", () => {
  it("creates a route that the same isolate serves at once", async () => {
    await call("PUT", "/clusters/canary", { origin: "http://canary.test" });
    // Load the (empty) snapshot first, so that the write must invalidate it.
    await callWorker(new Request("https://edge.test/svc/x"), adminEnv);
    fetchSpy.mockClear();

    const put = await call("PUT", "/routes/svc", {
      id: "svc",
      match: { path: { type: "PathPrefix", value: "/svc" } },
      mirrors: [{ cluster: "canary" }],
    });
    expect(put.status).toBe(201);
    expect(put.json.warnings).toEqual([]);

    await callWorker(new Request("https://edge.test/svc/x"), adminEnv);
    const urls = fetchSpy.mock.calls.map(([input]) => (input instanceof Request ? input.url : String(input)));
    expect(urls).toEqual(["http://primary.test/svc/x", "http://canary.test/svc/x"]);

    // Published for every other isolate, inside the write's waitUntil: the snapshot and its marker.
    const published = async () => {
      const snapshot = decodeSnapshot(await env.MIRROR_CONFIG.get(POLICY_SNAPSHOT_KEY));
      const marker = decodeMarker(await env.MIRROR_CONFIG.get(POLICY_MARKER_KEY));
      expect(marker?.version).toBe(snapshot?.version);
      return [...textsOf(snapshot as NonNullable<typeof snapshot>).keys()];
    };
    expect(await published()).toEqual([clusterKey("canary"), routeKey("svc")]);

    expect((await call("GET", "/routes/svc")).json).toMatchObject({ id: "svc" });
    expect((await call("GET", "/routes")).json.routes).toHaveLength(1);
    expect((await call("DELETE", "/routes/svc")).status).toBe(204);
    expect((await call("DELETE", "/routes/svc")).status).toBe(404);
    expect(await published()).toEqual([clusterKey("canary")]);
  });

  it.each([
    [{ id: "r", mirrors: [{ cluster: "c", percent: 101 }] }, "mirrors[0].percent", "must be ≤ 100"],
    [{ id: "r", bogus: true }, "bogus", "unknown field"],
    [{ id: "other" }, "id", 'must equal the id in the URL ("r")'],
    [{ id: "r", mirrors: [{ cluster: "ghost" }] }, "mirrors[0].cluster", 'names undefined cluster "ghost"'],
    [
      { id: "r", match: { path: { type: "RegularExpression", value: "(x)\\1" } } },
      "match.path.value",
      "must not use backreferences or octal escapes (\\1 at index 3); write \\xHH",
    ],
  ])("refuses %j with 422 at %s", async (body, path, message) => {
    const res = await call("PUT", "/routes/r", body);
    expect(res.status).toBe(422);
    expect(res.json.issues).toContainEqual({ path, message });
    expect(await env.MIRROR_CONFIG.get(routeKey("r"))).toBeNull();
  });

  it("answers 400 for a body that is not JSON and 413 for an oversized one", async () => {
    expect(await call("PUT", "/routes/r", "{nope")).toMatchObject({ status: 400, json: { error: "invalid_json" } });
    expect(await call("PUT", "/routes/r", JSON.stringify({ id: "r", pad: "x".repeat(300_000) }))).toMatchObject({
      status: 413,
      json: { error: "too_large", message: `a request body must be at most ${ADMIN_BODY_MAX_BYTES} bytes` },
    });
  });

  it("warns when the new route is shadowed by an identical, higher-priority one", async () => {
    await call("PUT", "/routes/high", { id: "high", priority: 5 });
    const res = await call("PUT", "/routes/low", { id: "low" });
    expect(res.status).toBe(201);
    expect(res.json.warnings[0]).toContain('route "low" can never match');
  });

  it("answers 404 for unknown admin paths", async () => {
    expect(await call("GET", "/nothing")).toMatchObject({ status: 404, json: { error: "not_found" } });
  });
});

describe("body limit", () => {
  /** A route document of exactly `size` bytes of UTF-8 (multi-byte characters included). */
  function routeOfSize(size: number): Uint8Array {
    const head = '{"id":"r","priority":0,"pad":"é';
    const bytes = new TextEncoder().encode(`${head}${"x".repeat(size - new TextEncoder().encode(head).length - 2)}"}`);
    expect(bytes.byteLength).toBe(size);
    return bytes;
  }
  const streamOf = (bytes: Uint8Array) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.byteLength; i += 1000) controller.enqueue(bytes.slice(i, i + 1000));
        controller.close();
      },
    });
  const ways: Array<[string, (bytes: Uint8Array) => { body: unknown; headers: Record<string, string> }]> = [
    [
      "with Content-Length",
      (b) => ({ body: new TextDecoder().decode(b), headers: { "content-length": String(b.byteLength) } }),
    ],
    ["streamed, no length", (b) => ({ body: streamOf(b), headers: {} })],
  ];

  it.each(ways)("is byte-exact %s: the limit passes, one byte more is 413 and nothing is written", async (_, send) => {
    const exact = send(routeOfSize(ADMIN_BODY_MAX_BYTES));
    // It passed the limit and reached validation: `pad` is no field of a route.
    expect(await call("PUT", "/routes/r", exact.body, TOKEN, exact.headers)).toMatchObject({
      status: 422,
      json: { issues: [{ path: "pad", message: "unknown field" }] },
    });
    const over = send(routeOfSize(ADMIN_BODY_MAX_BYTES + 1));
    expect(await call("PUT", "/routes/r", over.body, TOKEN, over.headers)).toMatchObject({
      status: 413,
      json: { error: "too_large" },
    });
    expect(await env.MIRROR_CONFIG.get(routeKey("r"))).toBeNull();
  });

  it("stops reading a streamed body at the limit instead of reading it whole", async () => {
    let pulled = 0;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += chunk.byteLength;
        if (pulled > 50 * 1024 * 1024) controller.close();
        else controller.enqueue(chunk);
      },
    });
    expect((await call("PUT", "/routes/r", endless)).status).toBe(413);
    expect(pulled).toBeLessThanOrEqual(ADMIN_BODY_MAX_BYTES + 2 * chunk.byteLength);
  });

  it("refuses a declared oversize at once, before reading any of it", async () => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(1024));
      },
    });
    const res = await call("PUT", "/clusters/c", body, TOKEN, { "content-length": String(ADMIN_BODY_MAX_BYTES + 1) });
    expect(res.status).toBe(413);
    expect(pulled).toBeLessThanOrEqual(1);
  });
});

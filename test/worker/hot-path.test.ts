import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { compileRoutes } from "../../src/match/index.js";
import { parseRoute } from "../../src/policy/index.js";
import { callWorker, countingKv, putPolicies, testWorker } from "./helpers.js";

/**
 * Structural guards for the hot path (the timings live in `npm run bench`): what a request
 * costs must not grow with KV, with the number of routes, or with bodies nobody will mirror.
 */
const PRIMARY = "http://primary.test";
const testEnv = { ...env, PRIMARY_ORIGIN: PRIMARY } as Env;

beforeEach(async () => {
  await reset();
});

describe("steady state", () => {
  it("does no KV read per request once the snapshot is loaded", async () => {
    await putPolicies({ routes: [{ id: "r", match: { path: { type: "PathPrefix", value: "/r" } } }] });
    const counted = countingKv(env.MIRROR_CONFIG);
    const { worker, send } = testWorker();
    // One env object, as the runtime passes one per isolate: one state, one policy cache.
    const environment = { ...testEnv, MIRROR_CONFIG: counted.kv, POLICY_CACHE_TTL_MS: "60000" } as Env;
    const cache = worker.isolate(environment).policies;
    const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async () => new Response("ok"));
    try {
      const serve = async () => {
        await send(new Request("https://edge.test/r/x"), environment);
      };
      await serve();
      const reads = () => counted.counts.keysRead + counted.counts.lists;
      const afterFirst = reads();
      expect(afterFirst).toBeGreaterThan(0);
      for (let i = 0; i < 200; i++) await serve();
      expect(reads()).toBe(afterFirst);
      expect(cache.loads).toBe(1);
    } finally {
      fetchSpy.mockRestore();
    }
  });
});

describe("route lookup", () => {
  it("evaluates the conditions of a handful of candidates, not of every route", () => {
    const routes = Array.from({ length: 1000 }, (_, i) =>
      parseRoute({
        id: `tenant-${i}`,
        match: {
          path: { type: "PathPrefix", value: `/tenant/${i}` },
          headers: [{ name: "x-tenant", value: String(i) }],
        },
      }),
    );
    const table = compileRoutes(routes);
    let headerReads = 0;
    const headers = new Headers({ "x-tenant": "999" });
    const counted = new Proxy(headers, {
      get(target, prop) {
        if (prop === "get") {
          return (name: string) => {
            headerReads++;
            return target.get(name);
          };
        }
        const value = Reflect.get(target, prop);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const facts = {
      method: "GET",
      host: "h",
      path: "/tenant/999/push",
      headers: counted,
      query: new URLSearchParams(),
    };
    expect(table.find(facts)?.id).toBe("tenant-999");
    // A scan would read x-tenant once per route; the trie reaches the one candidate directly.
    expect(headerReads).toBe(1);
  });
});

describe("paths in other cases", () => {
  it("are lower-cased for the lookup only when some route has ignoreCase", () => {
    const route = (ignoreCase: boolean) =>
      parseRoute({ id: "pay", match: { path: { type: "PathPrefix", value: "/pay", ignoreCase } } });
    const caseSensitive = compileRoutes([route(false)]);
    const anyCase = compileRoutes([route(true)]);
    const lowerCase = vi.spyOn(String.prototype, "toLowerCase");
    try {
      expect(caseSensitive.candidates("/PAY/transfer")).toBeUndefined();
      expect(lowerCase).not.toHaveBeenCalled();
      expect(anyCase.candidates("/PAY/transfer")?.map((c) => c.route.id)).toEqual(["pay"]);
      expect(lowerCase).toHaveBeenCalledTimes(1);
    } finally {
      lowerCase.mockRestore();
    }
  });
});

/** Sends a POST of `size` bytes on a route whose one mirror has `percent`; returns the bodies fetch was given. */
async function bodiesHandedToFetch(percent: number, size = 10_000) {
  await putPolicies({
    clusters: { m: "http://mirror.test" },
    routes: [{ id: "r", mirrors: [{ cluster: "m", percent }] }],
  });
  const bodies: unknown[] = [];
  const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    // The primary leg hands `fetch` a built request; the mirrors hand it a URL and an init.
    const body = input instanceof Request ? input.body : init?.body;
    bodies.push(body);
    // A primary that answers before reading the upload is held until it is read (body/relayBody).
    if (body instanceof ReadableStream) await new Response(body).arrayBuffer();
    return new Response("ok");
  });
  try {
    const request = new Request("https://edge.test/upload", {
      method: "POST",
      body: "x".repeat(size),
      // As a client sends it; a Request built here would otherwise have no declared length.
      headers: { "content-length": String(size) },
    });
    const original = request.body;
    await callWorker(request, testEnv, { worker: testWorker().worker });
    return { bodies, original };
  } finally {
    fetchSpy.mockRestore();
  }
}

describe("bodies nobody will mirror", () => {
  it("pass a small body's stream to the primary untouched: no tee, no relay, no buffering", async () => {
    const { bodies, original } = await bodiesHandedToFetch(0);
    expect(bodies).toEqual([original]);
    expect(bodies[0]).toBe(original);
  });

  it("relay a large body's stream to the primary: no tee, no buffering", async () => {
    const { bodies, original } = await bodiesHandedToFetch(0, 200_000);
    expect(bodies).toHaveLength(1);
    // proxy/relayBody reads it chunk by chunk (backpressure: see its own tests) into a stream of
    // its own, so that after a failed primary the rest of the upload can be read and dropped.
    expect(bodies[0]).toBeInstanceOf(ReadableStream);
    expect(bodies[0]).not.toBe(original);
  });

  it("tee the stream only when a mirror was sampled", async () => {
    const { bodies, original } = await bodiesHandedToFetch(100);
    expect(bodies).toHaveLength(2);
    expect(bodies[0]).not.toBe(original);
  });
});

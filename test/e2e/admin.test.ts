/**
 * The admin surface's limits over real HTTP, in workerd: bodies are refused byte-exact with a
 * Content-Length and chunked, a 50 MiB unauthenticated sign-in costs workerd no memory, and
 * sign-in attempts and wrong bearer tokens are limited per address by the rate limit binding
 * from wrangler.toml.
 */
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { listeningPid, peakMemoryMiB } from "../../scripts/lib/proc.mjs";
import { startWorker } from "../../scripts/lib/worker.mjs";

const TOKEN = "admin-e2e-test-token-0123456789abcdef";
const LOGIN_FORM_MAX_BYTES = 4096; // src/admin/dashboard/index.ts
const ADMIN_BODY_MAX_BYTES = 256 * 1024; // src/admin/index.ts
const MiB = 1024 * 1024;

let worker: Awaited<ReturnType<typeof startWorker>>;

beforeAll(async () => {
  worker = await startWorker({ scriptPath: inject("workerScript"), vars: { ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off" } });
});
afterAll(async () => {
  await worker?.dispose();
});

interface Sent {
  status: number | undefined;
  /** Body bytes written before the answer came (or the connection closed). */
  written: number;
}

type How = "length" | "chunked" | "declared";

/**
 * Sends `size` bytes to `path` with node's http client — with a Content-Length, chunked, or only
 * declared — writing with backpressure and stopping as soon as the answer arrives.
 */
function send(method: string, path: string, size: number, how: How, headers = {}): Promise<Sent> {
  const url = new URL(path, worker.url);
  return new Promise((resolve) => {
    let written = 0;
    let answered = false;
    const req = request(url, {
      // A connection of its own: workerd closes one whose body it left unread.
      agent: false,
      method,
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        ...(how === "chunked" ? { "transfer-encoding": "chunked" } : { "content-length": String(size) }),
        ...headers,
      },
    });
    req.on("response", (res) => {
      answered = true;
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, written }));
      res.on("error", () => resolve({ status: res.statusCode, written }));
    });
    req.on("error", () => {
      if (!answered) resolve({ status: undefined, written });
    });
    const chunk = Buffer.alloc(64 * 1024, "x");
    chunk.write("token=");
    const pump = () => {
      while (!answered && written < size) {
        const piece = chunk.subarray(0, Math.min(chunk.length, size - written));
        written += piece.length;
        if (!req.write(piece)) return void req.once("drain", pump);
      }
      if (!answered) req.end();
    };
    req.flushHeaders();
    // "declared": the length is announced and the body withheld, so only a refusal made before
    // reading can answer at all.
    if (how !== "declared") pump();
  });
}

/**
 * How to send one byte over the limit. A declared length over it is refused before anything is
 * read, and workerd then closes the connection: a client still writing the body may see a reset
 * instead of the 413, so the body is withheld. Chunked, the whole (small) body goes out and the
 * worker reads up to the byte over the limit.
 */
const over = (how: "length" | "chunked"): How => (how === "length" ? "declared" : "chunked");

describe("body limits over HTTP", () => {
  it.each(["length", "chunked"] as const)(
    "sign-in form, %s: exactly the limit passes, one byte more is 413",
    async (how) => {
      expect((await send("POST", "/__mirror/login", LOGIN_FORM_MAX_BYTES, how)).status).toBe(403);
      expect((await send("POST", "/__mirror/login", LOGIN_FORM_MAX_BYTES + 1, over(how))).status).toBe(413);
    },
  );

  it.each(["length", "chunked"] as const)(
    "policy write, %s: exactly the limit passes, one byte more is 413",
    async (how) => {
      const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
      // Not JSON, but within the limit: the body was read and parsed (400), not refused for its size.
      expect((await send("PUT", "/__mirror/api/routes/r", ADMIN_BODY_MAX_BYTES, how, auth)).status).toBe(400);
      expect((await send("PUT", "/__mirror/api/routes/r", ADMIN_BODY_MAX_BYTES + 1, over(how), auth)).status).toBe(413);
    },
  );
});

describe("an unauthenticated 50 MiB sign-in", () => {
  it("is refused after the limit, and workerd's peak memory hardly moves", async () => {
    const pid = listeningPid(Number(new URL(worker.url).port));
    if (!pid) throw new Error(`no process listens on ${worker.url}`);
    const before = peakMemoryMiB(pid);
    const sent = await send("POST", "/__mirror/login", 50 * MiB, "chunked");
    const growth = peakMemoryMiB(pid) - before;
    console.info(`workerd peak RSS growth for a 50 MiB sign-in: ${growth.toFixed(1)} MiB`);
    // Answered (413) or cut off while still sending; either way long before 50 MiB went out.
    expect([413, undefined]).toContain(sent.status);
    expect(sent.written).toBeLessThan(50 * MiB);
    // Reading the form whole added about 200 MiB.
    expect(growth).toBeLessThan(16);
  });
});

describe("state-changing requests from another origin's page", () => {
  const bearer = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  const cluster = JSON.stringify({ origin: "http://canary.test" });

  it("refuses a write, a sign-in and a sign-out that a browser says came from elsewhere (403)", async () => {
    const own = new URL(worker.url).origin;
    const forged = [
      ["PUT", "/__mirror/api/clusters/c", bearer, cluster, { "sec-fetch-site": "cross-site" }],
      ["DELETE", "/__mirror/api/clusters/c", bearer, undefined, { origin: "http://evil.example" }],
      ["POST", "/__mirror/login", {}, new URLSearchParams({ token: TOKEN }), { "sec-fetch-site": "same-site" }],
      ["POST", "/__mirror/logout", {}, undefined, { origin: "http://blog.example", "sec-fetch-site": "same-site" }],
    ] as const;
    for (const [method, path, auth, body, from] of forged) {
      const res = await fetch(`${worker.url}${path}`, {
        method,
        body,
        headers: { ...auth, ...from },
        redirect: "manual",
      });
      expect([method, path, res.status]).toEqual([method, path, 403]);
      expect(await res.json()).toMatchObject({ error: "cross_origin" });
    }
    // The same write from the surface's own origin, and from curl (neither header), goes through.
    const put = (from: Record<string, string>) =>
      fetch(`${worker.url}/__mirror/api/clusters/c`, { method: "PUT", body: cluster, headers: { ...bearer, ...from } });
    expect((await put({ origin: own, "sec-fetch-site": "same-origin" })).status).toBe(201);
    expect((await put({})).status).toBe(200);
    const removed = await fetch(`${worker.url}/__mirror/api/clusters/c`, { method: "DELETE", headers: bearer });
    expect(removed.status).toBe(204);
  });
});

describe("sign-in rate limit", () => {
  it("answers 429 with retry-after once an address made its attempts, and not to other addresses", async () => {
    // Locally, as on Cloudflare, the worker keys on cf-connecting-ip; Miniflare sets it unless the client did.
    const address = "203.0.113.9";
    const attempt = () =>
      fetch(`${worker.url}/__mirror/login`, {
        method: "POST",
        body: new URLSearchParams({ token: "guess" }),
        headers: { "cf-connecting-ip": address },
      });
    const statuses: number[] = [];
    // wrangler.toml allows 10 a minute; a minute may turn over once during the loop.
    for (let i = 0; i < 20 && !statuses.includes(429); i++) statuses.push((await attempt()).status);
    expect(statuses.filter((s) => s === 403).length).toBeGreaterThanOrEqual(10);
    expect(statuses.at(-1)).toBe(429);
    const refused = await attempt();
    expect([refused.status, refused.headers.get("retry-after")]).toEqual([429, "60"]);
    const elsewhere = await fetch(`${worker.url}/__mirror/login`, {
      method: "POST",
      body: new URLSearchParams({ token: TOKEN }),
      redirect: "manual",
    });
    expect(elsewhere.status).toBe(303);
  });

  it("counts wrong bearer tokens too: 429 once an address made its guesses, the right token included", async () => {
    const guesser = "203.0.113.10";
    const routes = (token: string, address: string) =>
      fetch(`${worker.url}/__mirror/api/routes`, {
        headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": address },
      });
    const statuses: number[] = [];
    for (let i = 0; i < 40 && !statuses.includes(429); i++)
      statuses.push((await routes(`${TOKEN}-${i}`, guesser)).status);
    expect(statuses.filter((s) => s === 403).length).toBeGreaterThanOrEqual(10);
    expect(statuses.filter((s) => s === 403).length).toBeLessThan(20);
    expect(statuses.at(-1)).toBe(429);
    const lucky = await routes(TOKEN, guesser);
    expect([lucky.status, lucky.headers.get("retry-after")]).toEqual([429, "60"]);
    // An operator's calls with the right token are not throttled by their own number.
    for (let i = 0; i < 25; i++) expect((await routes(TOKEN, "203.0.113.11")).status).toBe(200);
  });
});

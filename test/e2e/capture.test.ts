import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { main as capture } from "../../scripts/capture/cli.js";
import { type SeenRequest, startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { main as replay } from "../../scripts/replay/cli.js";
import { CAPTURES_PREFIX } from "../../src/capture/keys.js";

/**
 * Capture and replay end to end, in workerd with real origins: 300 requests of mixed methods are
 * captured by the bundled worker into R2, exported as HAR through the admin API, and replayed by
 * the replayer against a recording server that answers like the primary but for one field.
 */
const TOKEN = "capture-e2e-admin-token-0123456789abcdef";
const SECRET = "e2e-secret-9f3b2c71d4";
const dir = mkdtempSync(join(tmpdir(), "edge-mirror-capture-"));

type Origin = Awaited<ReturnType<typeof startOrigin>>;
let primary: Origin;
let candidate: Origin;
let worker: Awaited<ReturnType<typeof startWorker>>;

/** The answer both origins give: what they received, a price, and a secret the capture must hide. */
function answerWith(price: number) {
  return (req: SeenRequest, res: ServerResponse) => {
    const body = JSON.stringify({
      method: req.method,
      // The path only: a query may hold a token, which an answer has no business echoing.
      path: req.url.split("?")[0],
      bytes: req.body.length,
      sha256: req.sha256,
      price,
      generatedAt: new Date().toISOString(),
      session: SECRET,
    });
    res.writeHead(200, { "content-type": "application/json", "set-cookie": `sid=${SECRET}; HttpOnly` });
    res.end(body);
  };
}

beforeAll(async () => {
  primary = await startOrigin({ name: "primary", respond: answerWith(25) });
  candidate = await startOrigin({ name: "candidate", respond: answerWith(27) });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN, CAPTURE_FLUSH_MS: "200", LOG_LEVEL: "off" },
    policies: policyEntries({
      routes: [
        {
          id: "mixed",
          match: { path: { type: "PathPrefix", value: "/shop" } },
          capture: { maxBodyBytes: 256 * 1024, redact: { headers: ["x-tenant"] } },
        },
        { id: "secrets", match: { path: { type: "PathPrefix", value: "/login" } }, capture: {} },
      ],
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await primary?.close();
  await candidate?.close();
  rmSync(dir, { recursive: true, force: true });
});

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const admin = (path: string) =>
  fetch(`${worker.url}/__mirror${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });

/** The route's export as HAR, once it holds `count` requests (batches are written every 200 ms). */
async function exportHar(route: string, count: number): Promise<{ text: string; entries: unknown[] }> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await admin(
      `/api/captures?route=${route}&from=now&format=har`.replace("now", String(Date.now() - 600_000)),
    );
    expect(res.status).toBe(200);
    const text = await res.text();
    const entries = (JSON.parse(text) as { log: { entries: unknown[] } }).log.entries;
    if (entries.length >= count || Date.now() > deadline) return { text, entries };
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The replayer as `npm run replay` runs it, its output kept. */
async function runReplay(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await replay(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/**
 * Headers as a recording origin saw them, minus what each hop sets for itself: the connection's
 * fields, edge-mirror's hop count, and `cf-worker`, which workerd adds to every subrequest.
 */
function comparableHeaders(headers: SeenRequest["headers"], drop: readonly string[] = []): Record<string, unknown> {
  const skip = new Set([
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "x-edge-mirror-hops",
    "cf-worker",
  ]);
  for (const name of drop) skip.add(name);
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !skip.has(name)));
}

describe("capture → HAR → replay", () => {
  const sent: Array<{ method: string; path: string; body?: Buffer }> = [];

  it("captures 300 requests of mixed methods and replays each byte for byte, comparing the answers", async () => {
    for (let i = 0; i < 75; i++) {
      sent.push({ method: "GET", path: `/shop/items?page=${i}&q=a%20b&tag=%E2%9C%93` });
      sent.push({
        method: "POST",
        path: "/shop/orders",
        body: Buffer.from(JSON.stringify({ item: i, qty: (i % 5) + 1, note: `order ${i} ✓` })),
      });
      sent.push({ method: "PUT", path: `/shop/blobs/${i}`, body: randomBytes(200 * 1024) });
      sent.push({ method: "HEAD", path: `/shop/items/${i}` });
    }
    // Four at a time, each with a header capture keeps and one it redacts.
    for (let at = 0; at < sent.length; at += 4) {
      await Promise.all(
        sent.slice(at, at + 4).map(async ({ method, path, body }, k) => {
          const headers: Record<string, string> = {
            "x-request-n": String(at + k),
            "x-tenant": "acme",
            authorization: `Bearer ${SECRET}`,
          };
          if (body) headers["content-type"] = method === "POST" ? "application/json" : "application/octet-stream";
          const res = await fetch(`${worker.url}${path}`, { method, headers, ...(body ? { body } : {}) });
          expect(res.status).toBe(200);
          await res.arrayBuffer();
        }),
      );
    }
    expect(primary.requests).toHaveLength(300);

    const har = await exportHar("mixed", 300);
    expect(har.entries).toHaveLength(300);
    const harFile = join(dir, "mixed.har");
    writeFileSync(harFile, har.text);

    const reportFile = join(dir, "mixed-report.json");
    const run = await runReplay([
      harFile,
      "--to",
      candidate.url,
      "--speed",
      "max",
      "--concurrency",
      "8",
      "--header",
      "authorization: Bearer replay-token",
      "--compare",
      "--ignore-path",
      "$.generatedAt",
      "--report",
      reportFile,
    ]);
    expect(run.err).toBe("");

    expect(run.code).toBe(0);

    // Every request arrives as the primary got it: method, path and query, body, and the headers
    // capture kept; authorization and x-tenant were redacted, and only --header sets one again.
    expect(candidate.requests).toHaveLength(300);
    const key = (r: SeenRequest) => String(r.headers["x-request-n"]);
    const atPrimary = new Map(primary.requests.map((r) => [key(r), r]));
    for (const replayed of candidate.requests) {
      const original = atPrimary.get(key(replayed)) as SeenRequest;
      expect(replayed.method).toBe(original.method);
      expect(replayed.url).toBe(original.url);
      expect(replayed.sha256).toBe(original.sha256);
      expect(replayed.body.length).toBe(original.body.length);
      expect(comparableHeaders(replayed.headers, ["authorization"])).toEqual(
        comparableHeaders(original.headers, ["authorization", "x-tenant"]),
      );
      expect(replayed.headers.authorization).toBe("Bearer replay-token");
    }
    const sentBodies = sent.filter((s) => s.body).map((s) => sha256(s.body as Buffer));
    expect(
      candidate.requests
        .filter((r) => r.body.length > 0)
        .map((r) => r.sha256)
        .sort(),
    ).toEqual(sentBodies.sort());

    // The candidate changed one field: exactly that field, on every answer with a body.
    const report = JSON.parse(readFileSync(reportFile, "utf8"));
    // HEAD answers have no body: their status and headers match.
    expect(report.compare).toMatchObject({ compared: 300, match: 75, differ: 225, error: 0, bodiesNotCompared: 0 });
    expect(report.compare.fields.map((f: { field: string; count: number }) => [f.field, f.count])).toEqual([
      ["$.price", 225],
    ]);
    expect(report.compare.fields[0].examples[0]).toMatchObject({ primary: "25", candidate: "27" });
    expect(report.statusClasses).toMatchObject({ recorded: { "2xx": 300 }, candidate: { "2xx": 300 } });
    expect(report.latencyMs.recorded.count).toBe(300);
    expect(report.latencyMs.candidate.count).toBe(300);
    expect(run.out).toMatch(/compared 300: 75 match, 225 differ, 0 error — diff rate 75\.0 %/);
  });

  it("sets the exit code from --fail-on-diff-rate", async () => {
    const harFile = join(dir, "mixed.har");
    const common = [harFile, "--to", candidate.url, "--speed", "max", "--compare", "--ignore-path", "$.generatedAt"];
    const over = await runReplay([...common, "--fail-on-diff-rate", "0.5"]);
    expect(over.code).toBe(1);
    expect(over.out).toContain("FAIL diff rate 75.0 % > 50.0 %");
    const under = await runReplay([...common, "--fail-on-diff-rate", "0.8"]);
    expect(under.code).toBe(0);
    // Ignoring the changed field too, every answer matches.
    const clean = await runReplay([...common, "--ignore-path", "$.price", "--fail-on-diff-rate", "0"]);
    expect(clean.code).toBe(0);
    expect(clean.out).toMatch(/300 match, 0 differ/);
  });

  it("exports NDJSON too, and a corrupted line is reported with its number and skipped", async () => {
    const res = await admin(`/api/captures?route=mixed&from=${Date.now() - 600_000}&format=ndjson&limit=40`);
    expect(res.headers.get("content-type")).toMatch(/^application\/x-ndjson/);
    const lines = (await res.text()).trimEnd().split("\n");
    expect(lines).toHaveLength(40);
    lines[16] = (lines[16] as string).slice(0, 100);
    lines.push("not json at all");
    const file = join(dir, "corrupt.ndjson");
    writeFileSync(file, `${lines.join("\n")}\n`);
    const before = candidate.requests.length;
    const run = await runReplay([file, "--to", candidate.url, "--speed", "max"]);
    expect(run.code).toBe(0);
    expect(run.err).toMatch(/corrupt\.ndjson: line 17: not JSON \(.*\) \(skipped\)/);
    expect(run.err).toMatch(/corrupt\.ndjson: line 41: not JSON \(.*\) \(skipped\)/);
    expect(candidate.requests.length - before).toBe(39);
    expect(run.out).toContain("2 unreadable lines skipped");
  });
});

describe("redaction", () => {
  it("keeps redacted values out of R2, the HAR and the replay report", async () => {
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${worker.url}/login?access_token=${SECRET}&next=%2Fhome`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${SECRET}`,
          cookie: `sid=${SECRET}`,
          "x-api-key": SECRET,
        },
        body: JSON.stringify({ user: "ann", password: SECRET, profile: { token: SECRET } }),
      });
      expect(await res.text()).toContain(SECRET);
    }
    const har = await exportHar("secrets", 5);
    expect(har.entries).toHaveLength(5);
    expect(har.text).not.toContain(SECRET);
    expect(har.text).toContain("[redacted]");

    const bucket = worker.captures as NonNullable<typeof worker.captures>;
    const { objects } = await bucket.list({ prefix: `${CAPTURES_PREFIX}secrets/` });
    expect(objects.length).toBeGreaterThan(0);
    for (const { key } of objects) {
      const stored = gunzipSync(
        Buffer.from(await ((await bucket.get(key)) as { arrayBuffer(): Promise<ArrayBuffer> }).arrayBuffer()),
      );
      expect(stored.toString("utf8")).not.toContain(SECRET);
    }

    const harFile = join(dir, "secrets.har");
    writeFileSync(harFile, har.text);
    const reportFile = join(dir, "secrets-report.json");
    // The candidate echoes the secret in `session`: the record's own rules hide it there too.
    const run = await runReplay([
      harFile,
      "--to",
      candidate.url,
      "--compare",
      "--speed",
      "max",
      "--report",
      reportFile,
    ]);
    expect(run.code).toBe(0);
    const report = readFileSync(reportFile, "utf8");
    expect(report).not.toContain(SECRET);
    expect(`${run.out}\n${run.err}`).not.toContain(SECRET);
    expect(JSON.parse(report).compare.fields.map((f: { field: string }) => f.field)).toEqual(
      expect.arrayContaining(["$.price"]),
    );
    // What was redacted is not sent: no credential reaches the candidate.
    for (const r of candidate.requests.slice(-5)) {
      expect(r.headers.authorization).toBeUndefined();
      expect(r.headers.cookie).toBeUndefined();
      expect(r.url).toBe("/login?access_token=%5Bredacted%5D&next=%2Fhome");
    }
  });
});

describe("npm run capture", () => {
  async function run(args: string[], env: Record<string, string> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await capture(args, {
      out: (l) => out.push(l),
      err: (l) => err.push(l),
      stdout: process.stdout,
      now: Date.now,
      env,
    });
    return { code, out: out.join("\n"), err: err.join("\n") };
  }

  it("exports through the deployed worker's admin API with --remote, HAR or gzipped NDJSON", async () => {
    const har = join(dir, "remote.har");
    const token = { ADMIN_TOKEN: TOKEN };
    const exported = await run(
      ["export", "--route", "mixed", "--from", "now-10m", "--remote", "--url", worker.url, "--out", har],
      token,
    );
    expect(exported.code).toBe(0);
    expect(exported.err).toMatch(/^wrote 300 requests of route mixed from .* to .*remote\.har$/);
    expect((JSON.parse(readFileSync(har, "utf8")) as { log: { entries: unknown[] } }).log.entries).toHaveLength(300);
    const gz = join(dir, "remote.ndjson.gz");
    const limited = await run(
      [
        "export",
        "--route",
        "mixed",
        "--from",
        "now-10m",
        "--limit",
        "10",
        "--remote",
        "--url",
        worker.url,
        "--out",
        gz,
      ],
      token,
    );
    expect(limited.code).toBe(0);
    expect(gunzipSync(readFileSync(gz)).toString().trim().split("\n")).toHaveLength(10);
    expect(limited.err).toContain("--limit 10 reached: more requests may follow");
    const routes = await run(["routes", "--remote", "--url", worker.url], token);
    expect(routes.out).toBe("mixed\nsecrets");
    const refused = await run(["routes", "--remote", "--url", worker.url], {
      ADMIN_TOKEN: "wrong-token-0123456789abcdefghijklmn",
    });
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/answered 403/);
    // The variable's former name is not read: one name, the secret's, for the one token.
    const renamed = await run(["routes", "--remote", "--url", worker.url], { EDGE_MIRROR_ADMIN_TOKEN: TOKEN });
    expect(renamed.code).toBe(2);
    expect(renamed.err).toContain("reads the admin token from ADMIN_TOKEN, which is not set");
    expect(renamed.err).toContain("EDGE_MIRROR_ADMIN_TOKEN, its former name, is no longer read");
  });

  it.each([
    [["export"], "export needs --route <id>"],
    [["export", "--route", "a b"], "--route must be a route id"],
    [["export", "--route", "a", "--from", "yesterday"], '--from "yesterday"'],
    [["export", "--route", "a", "--out", "x.ndjson.gz", "--format", "har"], "a .gz output is gzipped NDJSON"],
    [["export", "--route", "a", "--url", "http://x"], "--url goes with --remote"],
    [["bogus"], 'unknown command "bogus"'],
  ])("exits 2 on a usage error: %j", async (args, message) => {
    const result = await run(args);
    expect(result.code).toBe(2);
    expect(result.err).toContain(message);
  });
});

describe("the admin API", () => {
  it("refuses a bad query with 400 naming the parameter, and lists the routes that have captures", async () => {
    const bad = await admin("/api/captures?route=mixed&limit=0");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: "invalid_query", message: "limit must be an integer from 1 to 100000" });
    expect((await admin("/api/captures")).status).toBe(400);
    const unauthenticated = await fetch(`${worker.url}/__mirror/api/captures?route=mixed`);
    expect(unauthenticated.status).toBe(401);
    expect(await (await admin("/api/captures/routes")).json()).toEqual({ routes: ["mixed", "secrets"] });
  });
});

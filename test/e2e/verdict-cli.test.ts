import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ROOT } from "../../scripts/lib/build.mjs";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { main } from "../../scripts/policy/cli.js";
import { LatencySketch } from "../../src/sketch/index.js";
import { decideVerdict, emptyStatus, thresholdsFor, type VerdictReport } from "../../src/verdict/index.js";
import { until } from "./helpers.js";

/**
 * `npm run policy -- verdict` against a small HTTP server that answers as `GET <prefix>/api/verdict`
 * does (src/verdict/report): the exit code a CI job acts on for each verdict, usage errors, an
 * unreachable worker, a refused token, and answers that are no verdict; then against the bundled
 * worker itself, with real origins and real stats shards.
 */
const TOKEN = "verdict-cli-test-token-0123456789abcdef";
const WINDOW = { minutes: 15, from: "2026-07-01T12:00:00.000Z", to: "2026-07-01T12:15:00.000Z" };

/** A report as the endpoint makes it: `n` requests, `differ` of them differing, `mirror5xx` answered 5xx. */
function report(route: string, mirror: string, n: number, differ: number, mirror5xx = 0): VerdictReport {
  const latency = () => {
    const sketch = new LatencySketch();
    for (let i = 0; i < n; i++) sketch.add(40 + (i % 50));
    return sketch;
  };
  return decideVerdict(
    route,
    mirror,
    {
      window: WINDOW,
      shards: { asked: 16, answered: route === "unsure" ? 15 : 16 },
      compare: { compared: n, differ, noisy: 0 },
      status: {
        primary: { ...emptyStatus(), "2xx": n },
        mirror: { ...emptyStatus(), "2xx": n - mirror5xx, "5xx": mirror5xx },
      },
      latency: { primary: latency(), mirror: latency() },
    },
    thresholdsFor({ mirrors: [], mirrorFromHeader: undefined }, mirror),
  );
}

const REPORTS: Record<string, VerdictReport> = {
  passing: report("passing", "canary", 2000, 0),
  failing: report("failing", "canary", 2000, 600),
  erroring: report("erroring", "canary", 2000, 0, 200),
  unsure: report("unsure", "canary", 5, 0),
};

let server: Server;
let url: string;
const seen: URL[] = [];

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

/** What the endpoint answers a request: a report, or the admin surface's errors. */
function answerTo(req: IncomingMessage): [number, unknown] {
  const at = new URL(req.url ?? "/", "http://x");
  seen.push(at);
  if (req.headers.authorization !== `Bearer ${TOKEN}`) {
    return [401, { error: "unauthorized", message: "a valid admin token is required" }];
  }
  if (!/^\/(__mirror|ops)\/api\/verdict$/.test(at.pathname)) return [404, { error: "not_found", message: "no" }];
  const route = at.searchParams.get("route") ?? "";
  if (route === "multi" && !at.searchParams.has("mirror")) {
    return [400, { error: "mirror_required", message: "route multi has 2 mirrors: canary, audit; name one" }];
  }
  if (route === "garbage") return [200, { verdict: "maybe", reasons: [] }];
  if (route === "html") return [200, "<html>sign in</html>"];
  const found = REPORTS[route];
  return found ? [200, found] : [404, { error: "not_found", message: `no route "${route}"` }];
}

beforeAll(async () => {
  server = createServer((req, res) => answer(res, ...answerTo(req)));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** The CLI in this process, with its own environment: exit code and what it printed. */
async function policy(args: string[], env: Record<string, string | undefined> = { ADMIN_TOKEN: TOKEN }) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l), env });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("exit codes", () => {
  it.each([
    ["passing", 0, "pass"],
    ["failing", 1, "fail"],
    ["erroring", 1, "fail"],
    ["unsure", 3, "inconclusive"],
  ])("route %s: exit %i (%s), with a table of the checks", async (route, code, verdict) => {
    const run = await policy(["verdict", route, "--mirror", "canary", "--url", url]);
    expect(run.err).toBe("");
    expect(run.code).toBe(code);
    expect(run.out).toMatch(new RegExp(`^route ${route}, mirror canary: the last 15 min`));
    expect(run.out).toMatch(/CHECK\s+OBSERVED\s+95 % INTERVAL\s+THRESHOLD\s+N\s+RESULT/);
    for (const check of ["diffRate", "errorRateIncrease", "latencyP50Ratio", "latencyP99Ratio"]) {
      expect(run.out).toMatch(new RegExp(`^${check}\\s`, "m"));
    }
    expect(run.out).toMatch(/^status\s+2xx \d+/m);
    expect(run.out.split("\n").at(-1)).toBe(`verdict: ${verdict}`);
  });

  it("says why a check failed", async () => {
    const failing = await policy(["verdict", "failing", "--url", url]);
    expect(failing.out).toMatch(
      /^diffRate: 30\.00 % of 2000 compared answers differ; 95 % interval .* wholly above the threshold 1\.00 %$/m,
    );
    expect(failing.out).toMatch(/^diffRate\s+30\.00 %\s+28\.\d\d % … 32\.\d\d %\s+≤ 1\.00 %\s+2000\s+fail$/m);
    const erroring = await policy(["verdict", "erroring", "--url", url]);
    expect(erroring.out).toMatch(/^errorRateIncrease\s+\+10\.00 pt\s.*fail$/m);
    const unsure = await policy(["verdict", "unsure", "--url", url]);
    expect(unsure.out).toContain("diffRate: 5 compared requests, fewer than minSamples 100");
    expect(unsure.out.split("\n")[0]).toMatch(/, 5 samples; 15 of 16 stats shards answered$/);
    expect(failing.out.split("\n")[0]).toMatch(/, 2000 samples$/);
  });

  it("asks for the route, mirror and window given, under the admin prefix given", async () => {
    seen.length = 0;
    await policy(["verdict", "passing", "--mirror", "canary", "--window", "1h", "--url", `${url}/`]);
    await policy(["verdict", "passing", "--url", url, "--prefix", "/ops/"]);
    expect(seen.map((u) => `${u.pathname}?${u.searchParams}`)).toEqual([
      "/__mirror/api/verdict?route=passing&mirror=canary&window=1h",
      "/ops/api/verdict?route=passing&window=15m",
    ]);
  });

  it("prints the endpoint's answer with --json", async () => {
    const run = await policy(["verdict", "failing", "--url", url, "--json"]);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.out)).toEqual(REPORTS.failing);
  });

  it("reaches npm start's worker without --url, at EDGE_MIRROR_PORT", async () => {
    const port = new URL(url).port;
    const run = await policy(["verdict", "passing"], { ADMIN_TOKEN: TOKEN, EDGE_MIRROR_PORT: port });
    expect(run.code).toBe(0);
  });

  it("is the exit code of the process, as CI sees it", async () => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", join(ROOT, "scripts/policy.ts"), "verdict", "failing", "--url", url],
      {
        cwd: ROOT,
        env: { ...process.env, ADMIN_TOKEN: TOKEN },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code).toBe(1);
    expect(out.trimEnd().split("\n").at(-1)).toBe("verdict: fail");
  });
});

describe("exit 2: usage errors and answers that are no verdict", () => {
  it.each([
    [["verdict"], /verdict takes exactly one route id/],
    [["verdict", "a", "b"], /verdict takes exactly one route id/],
    [
      ["verdict", "passing", "--window", "90m"],
      /--window "90m" must be minutes or hours such as 15m or 1h, from 1m to 60m/,
    ],
    [["verdict", "passing", "--window", "15"], /--window "15" must be minutes or hours/],
    [
      ["verdict", "passing", "--url", "ftp://example.com"],
      /--url "ftp:\/\/example.com" must be the worker's http or https URL/,
    ],
    [["verdict", "passing", "--url", "not a url"], /must be the worker's http or https URL/],
    [["verdict", "passing", "--prefix", "ops"], /--prefix "ops" must be the worker's ADMIN_PREFIX, starting with '\/'/],
    [["verdict", "passing", "--bogus"], /Unknown option '--bogus'/],
  ])("%j", async (args, message) => {
    const run = await policy([...args, ...(args.includes("--url") ? [] : ["--url", url])]);
    expect(run.code).toBe(2);
    expect(run.err).toMatch(message);
    expect(run.out).toBe("");
  });

  it("without ADMIN_TOKEN", async () => {
    const run = await policy(["verdict", "passing", "--url", url], {});
    expect(run).toMatchObject({ code: 2, out: "" });
    expect(run.err).toBe("set ADMIN_TOKEN to the worker's admin token (npm start prints the local one)");
  });

  it("when the worker refuses the token (401)", async () => {
    const run = await policy(["verdict", "passing", "--url", url], { ADMIN_TOKEN: "wrong-token" });
    expect(run.code).toBe(2);
    expect(run.err).toBe(`${url}/__mirror/api/verdict answered 401: a valid admin token is required (unauthorized)`);
  });

  it("when the route has several mirrors and none is named, or the route is unknown", async () => {
    const multi = await policy(["verdict", "multi", "--url", url]);
    expect(multi.code).toBe(2);
    expect(multi.err).toMatch(/answered 400: route multi has 2 mirrors: canary, audit; name one \(mirror_required\)/);
    const unknown = await policy(["verdict", "ghost", "--url", url]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/answered 404: no route "ghost" \(not_found\)/);
  });

  it("when the answer is no verdict", async () => {
    const garbage = await policy(["verdict", "garbage", "--url", url]);
    expect(garbage.code).toBe(2);
    expect(garbage.err).toMatch(
      /answered 200, but not a verdict report: verdict is "maybe", not one of pass, fail, inconclusive/,
    );
    const html = await policy(["verdict", "html", "--url", url]);
    expect(html.code).toBe(2);
    expect(html.err).toMatch(/answered 200, but not JSON/);
  });

  it("when the worker cannot be reached", async () => {
    // A port that was just free: nothing listens on it.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const run = await policy(["verdict", "passing", "--url", `http://127.0.0.1:${port}`]);
    expect(run.code).toBe(2);
    expect(run.err).toBe(`cannot reach http://127.0.0.1:${port}: ECONNREFUSED`);
    const local = await policy(["verdict", "passing"], { ADMIN_TOKEN: TOKEN, EDGE_MIRROR_PORT: String(port) });
    expect(local.err).toMatch(/ECONNREFUSED \(is npm start running\? --url reaches another worker\)$/);
  });
});

/**
 * The same command against the bundled worker in workerd, its copies answered by real origins and
 * its counters in real stats shards: the verdict the endpoint decides is the exit code CI gets.
 */
describe("against the worker", () => {
  const CHECKOUT = 100;
  const FEW = 5;
  let primary: Awaited<ReturnType<typeof startOrigin>>;
  let canary: Awaited<ReturnType<typeof startOrigin>>;
  let worker: Awaited<ReturnType<typeof startWorker>>;
  let canaryCalls = 0;

  beforeAll(async () => {
    const json = (res: ServerResponse, body: unknown) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    primary = await startOrigin({ name: "primary", respond: (_req, res) => json(res, { total: 10 }) });
    // The candidate's total differs on 3 requests in 10.
    canary = await startOrigin({
      name: "canary",
      respond: (_req, res) => json(res, { total: canaryCalls++ % 10 < 3 ? 11 : 10 }),
    });
    worker = await startWorker({
      scriptPath: inject("workerScript"),
      vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off", STATS_FLUSH_MS: "0" },
      policies: policyEntries({
        clusters: { canary: { origin: canary.url }, audit: { origin: primary.url } },
        routes: [
          {
            id: "checkout",
            match: { path: { type: "PathPrefix", value: "/checkout" } },
            mirrors: [{ cluster: "canary", compare: true }],
          },
          {
            id: "few",
            match: { path: { type: "PathPrefix", value: "/few" } },
            mirrors: [{ cluster: "audit", compare: true }],
          },
          {
            id: "multi",
            match: { path: { type: "PathPrefix", value: "/multi" } },
            mirrors: [{ cluster: "canary" }, { cluster: "audit" }],
          },
        ],
      }),
    });
    for (let i = 0; i < CHECKOUT; i++) await fetch(`${worker.url}/checkout/${i}`).then((r) => r.text());
    for (let i = 0; i < FEW; i++) await fetch(`${worker.url}/few/${i}`).then((r) => r.text());
    // Counters reach the shards in the background: wait (bounded) until every comparison is in.
    await until(async () => {
      const run = await policy(["verdict", "checkout", "--url", worker.url, "--json"]);
      return run.code !== 2 && (JSON.parse(run.out) as VerdictReport).samples === CHECKOUT;
    }, 30_000);
  }, 120_000);

  afterAll(async () => {
    await worker?.dispose();
    await Promise.all([primary, canary].map((o) => o?.close()));
  });

  it("exits 1 on a candidate that differs in 30 % of requests, naming the diffRate check", async () => {
    expect(canaryCalls).toBe(CHECKOUT);
    const run = await policy(["verdict", "checkout", "--url", worker.url]);
    expect(run.code).toBe(1);
    expect(run.out).toMatch(/^diffRate\s+30\.00 %\s.*fail$/m);
    expect(run.out).toMatch(/^status\s+2xx 100\s+2xx 100$/m);
    expect(run.out.split("\n").at(-1)).toBe("verdict: fail");
  });

  it("exits 3 on five samples, fewer than minSamples", async () => {
    const run = await policy(["verdict", "few", "--mirror", "audit", "--window", "5m", "--url", worker.url]);
    expect(run.code).toBe(3);
    expect(run.out).toContain("diffRate: 5 compared requests, fewer than minSamples 100");
  });

  it("exits 2 with the worker's own message for a route it cannot judge", async () => {
    const multi = await policy(["verdict", "multi", "--url", worker.url]);
    expect(multi.code).toBe(2);
    expect(multi.err).toMatch(/400.*2 mirrors: name one with mirror= \(canary, audit\)/);
    const unknown = await policy(["verdict", "nowhere", "--url", worker.url]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/404.*no route "nowhere"/);
  });
});

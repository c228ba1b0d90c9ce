import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../scripts/lib/build.mjs";
import { adminStats, until } from "./helpers.ts";

/**
 * `npm start` as a user runs it: wrangler dev, demo origins and demo policies in local KV — on a
 * state directory of its own, so that the developer's `.wrangler/state` (what their own
 * `npm start` shows) is left as it was.
 */
const persistTo = mkdtempSync(join(tmpdir(), "edge-mirror-start-"));
const developerState = join(ROOT, ".wrangler/state");

/** Every file under `dir` with its size and modification time; empty when there is no such directory. */
function listing(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((name) => {
      const stat = statSync(join(dir, name));
      return `${name} ${stat.size} ${stat.mtimeMs}`;
    })
    .sort();
}
const stateBefore = listing(developerState);
let child: ChildProcess;
let output = "";
/** The admin token npm start gives the worker unless told otherwise (scripts/start.mjs). */
const DEMO_ADMIN_TOKEN = "demo-admin-token-for-local-use-only";
let edge = "";
let demoBase = 0;

async function freePortRange(size: number): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 20000);
    const ok = await Promise.all(
      Array.from({ length: size }, (_, i) => {
        return new Promise<boolean>((resolve) => {
          const probe = createServer();
          probe.once("error", () => resolve(false));
          probe.listen(base + i, "127.0.0.1", () => probe.close(() => resolve(true)));
        });
      }),
    );
    if (ok.every(Boolean)) return base;
  }
  throw new Error("no free port range");
}

/** Waits (helpers' `until`) for `predicate`, or fails naming `what`, with everything npm start printed. */
async function waitFor(predicate: () => boolean, what: string, timeoutMs = 15_000) {
  await until(predicate, timeoutMs);
  if (!predicate()) throw new Error(`timed out waiting for ${what}\n${output}`);
}

beforeAll(async () => {
  const [workerPort, base] = [await freePortRange(1), await freePortRange(4)];
  demoBase = base;
  child = spawn(process.execPath, [join(ROOT, "scripts/start.mjs")], {
    cwd: ROOT,
    env: {
      ...process.env,
      // The demo's own token, whatever the shell that runs the tests has set.
      ADMIN_TOKEN: "",
      EDGE_MIRROR_ADMIN_TOKEN: "",
      EDGE_MIRROR_PORT: String(workerPort),
      DEMO_BASE_PORT: String(base),
      EDGE_MIRROR_PERSIST_TO: persistTo,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (c) => {
    output += c.toString();
  });
  child.stderr?.on("data", (c) => {
    output += c.toString();
  });
  await waitFor(() => output.includes("READY "), "npm start to be ready", 90_000);
  edge = `http://localhost:${workerPort}`;
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
  rmSync(persistTo, { recursive: true, force: true });
});

const lines = (origin: string) => output.split("\n").filter((l) => l.startsWith(`[${origin}]`));

describe("npm start reproduces the seed-002 sandbox", () => {
  it("mirrors /service/1 statically, with the -shadow host", async () => {
    const res = await fetch(`${edge}/service/1`);
    expect(((await res.json()) as { servedBy: string }).servedBy).toBe("primary");
    await waitFor(() => lines("service1-mirror").length === 1, "the service1-mirror log line");
    expect(lines("service1-mirror")[0]).toMatch(/Host: localhost-shadow:\d+ "GET \/service\/1"/);
  });

  it("mirrors /service/2 only to the cluster x-mirror-cluster names, and not an unknown one", async () => {
    await fetch(`${edge}/service/2`, { headers: { "x-mirror-cluster": "service2-mirror-non-existent" } });
    await fetch(`${edge}/service/2`);
    await fetch(`${edge}/service/2`, { headers: { "x-mirror-cluster": "service2-mirror" } });
    await waitFor(() => lines("service2-mirror").length >= 1, "the service2-mirror log line");
    await waitFor(() => lines("primary").filter((l) => l.includes("/service/2")).length === 3, "three primary lines");
    expect(lines("service2-mirror")).toHaveLength(1);
    // wrangler dev forwards the worker's log lines on its own schedule.
    await waitFor(() => output.includes('"reason":"cluster_not_allowed"'), "the cluster_not_allowed log line");
  });
});

describe("npm start delivers remote-write copies durably (seed 000)", () => {
  type Delivery = { spooled: number; pending: number; redelivered: number };
  type Stats = { routes: Array<{ route: string; mirrors: Array<{ mirror: string; delivery: Delivery }> }> };
  const secondaryDelivery = async () =>
    (await adminStats<Stats>(edge, DEMO_ADMIN_TOKEN)).stats.routes
      .find((r) => r.route === "remote-write")
      ?.mirrors.find((m) => m.mirror === "mimir-secondary")?.delivery;

  it("spools the copies mimir-secondary misses while it is down, and sends them once it is back", async () => {
    const outage = await fetch(`${edge}/demo/secondary-outage?seconds=3`, { method: "POST" });
    expect(outage.status).toBe(202);
    await waitFor(() => output.includes("[mimir-secondary] down for 3 s"), "the outage line");
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${edge}/api/v1/push`, { method: "POST", body: `demo batch ${i}` });
      expect(res.status).toBe(200);
    }
    // Back after 3 s; each copy is tried again 2 s after it failed, and doubling after that.
    await waitFor(() => lines("mimir-secondary").filter((l) => l.includes("copy ")).length >= 3, "the copies", 60_000);
    const delivered = lines("mimir-secondary").filter((l) => / copy \S+;mirror=mimir-secondary → 204$/.test(l));
    expect(delivered).toHaveLength(3);
    await until(async () => (await secondaryDelivery())?.pending === 0, 20_000);
    expect(await secondaryDelivery()).toMatchObject({ spooled: 3, redelivered: 3, pending: 0 });
  });
});

describe("npm start shows shadow testing on the dashboard", () => {
  const auth = () => ({ authorization: `Bearer ${DEMO_ADMIN_TOKEN}` });
  type Stats = {
    routes: Array<{ route: string; mirrors: Array<{ mirror: string; compare: { differ: number } }> }>;
    samples: Array<{ route: string; fields: string[]; primary: { excerpt: string } }>;
  };

  it("seeds the demo policies without anything else's warnings", () => {
    // Opening local KV used to start the whole worker configuration, which warned about the
    // Durable Object twice; the seeding step now prints nothing.
    expect(output).not.toContain("will not work in local development");
    expect(output).not.toContain("no such Durable Object class is exported");
    expect(output).not.toContain("could not seed");
  });

  it("prints where the dashboard is and with which token", () => {
    expect(output).toMatch(/\/__mirror\/dashboard\s+token: demo-admin-token-for-local-use-only/);
  });

  it("compares /api/catalog with the canary and reports the changed fields", async () => {
    for (let i = 0; i < 3; i++) await fetch(`${edge}/api/catalog`).then((r) => r.text());
    let stats: Stats | undefined;
    const deadline = Date.now() + 20_000;
    for (;;) {
      ({ stats } = await adminStats<Stats>(edge, DEMO_ADMIN_TOKEN));
      const catalog = stats.routes.find((r) => r.route === "catalog");
      if ((catalog?.mirrors[0]?.compare.differ ?? 0) >= 3) break;
      if (Date.now() > deadline) throw new Error(`no diffs counted: ${JSON.stringify(stats)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const sample = stats.samples.find((s) => s.route === "catalog");
    expect(sample?.fields).toEqual(expect.arrayContaining(["$.version", "$.items[*].price"]));
    expect(sample?.primary.excerpt).not.toContain("storefront-oncall@example.com");
    const page = await fetch(`${edge}/__mirror/dashboard`, { headers: auth() });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<title>edge-mirror dashboard</title>");
  });
});

describe("npm start's capture → export → replay walk-through (README)", () => {
  /** A CLI as `npm run <name> -- …` runs it (tsx), on the test's own state directory. */
  const cli = (script: string, args: string[]) =>
    spawnSync(process.execPath, ["--import", "tsx", join(ROOT, script), ...args], { cwd: ROOT, encoding: "utf8" });

  it("exports the captured /api/catalog requests and replays them against the canary, reporting the changed fields", async () => {
    for (let i = 0; i < 3; i++) await fetch(`${edge}/api/catalog`).then((r) => r.text());
    const har = join(persistTo, "catalog.har");
    // Captures are written a second after they are made (CAPTURE_FLUSH_MS in npm start).
    let entries: unknown[] = [];
    const deadline = Date.now() + 20_000;
    while (entries.length < 3 && Date.now() < deadline) {
      const exported = cli("scripts/capture.ts", [
        "export",
        "--route",
        "catalog",
        "--persist-to",
        persistTo,
        "--out",
        har,
      ]);
      expect(exported.status, exported.stderr).toBe(0);
      entries = (JSON.parse(readFileSync(har, "utf8")) as { log: { entries: unknown[] } }).log.entries;
      if (entries.length < 3) await new Promise((r) => setTimeout(r, 500));
    }
    expect(entries.length).toBeGreaterThanOrEqual(3);
    expect(readFileSync(har, "utf8")).not.toContain("storefront-oncall@example.com");

    const report = join(persistTo, "report.json");
    const canary = `http://127.0.0.1:${demoBase + 1}`;
    const replayed = cli("scripts/replay.ts", [
      har,
      "--to",
      canary,
      "--compare",
      "--ignore-path",
      "$.generatedAt",
      "--report",
      report,
    ]);
    expect(replayed.status, replayed.stderr).toBe(0);
    expect(replayed.stdout).toMatch(/\$\.items\[\*\]\.price/);
    const fields = (
      JSON.parse(readFileSync(report, "utf8")) as { compare: { fields: Array<{ field: string; count: number }> } }
    ).compare.fields;
    expect(fields.map((f) => f.field).sort()).toEqual(["$.items[*].price", "$.version"]);
    expect(fields.every((f) => f.count === entries.length)).toBe(true);
  });
});

describe("npm start's own state", () => {
  it("lives in its own directory: the developer's .wrangler/state is left as it was", () => {
    expect(readdirSync(persistTo, { recursive: true }).length).toBeGreaterThan(0);
    expect(listing(developerState)).toEqual(stateBefore);
  });
});

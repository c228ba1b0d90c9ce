/**
 * The dashboard in a real browser: Debian's Chromium, driven by playwright-core, signs in to the
 * worker running in workerd and must show exactly the traffic this test sent — counted at the
 * origins, not assumed — including a compare-mode diff. It also takes the README's screenshot.
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, ROOT, startWorker } from "../../scripts/lib/worker.mjs";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TOKEN = "dashboard-e2e-test-token-0123456789";
/** `UPDATE_SCREENSHOT=1 npm test` refreshes the README's picture; every run writes test-results/. */
const SCREENSHOTS = [
  join(ROOT, "test-results/dashboard.png"),
  ...(process.env.UPDATE_SCREENSHOT ? [join(ROOT, "docs/dashboard.png")] : []),
];
const XSS_MIRROR = "<img src=x onerror=window.__pwned=1>";

const USERS = 20;
const HEALTH = 10;
const SAMPLED = 40;

let primary: Origin;
let canary: Origin;
let worker: Worker;
let browser: Browser;
let page: Page;

function json(res: import("node:http").ServerResponse, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install it with 'apt-get install -y chromium' (.ci/run does) or set CHROMIUM_PATH`,
    );
  }
  // The primary answers as production does; its timestamp and request id differ on every call.
  primary = await startOrigin({
    name: "primary",
    respond: (req, res) =>
      json(res, {
        user: { path: req.url.split("?")[0], email: "alice@example.com" },
        version: "v1",
        servedAt: Date.now(),
        requestId: Math.random().toString(36).slice(2),
      }),
  });
  // The canary changed `version` on /api/users and agrees on /api/health.
  canary = await startOrigin({
    name: "canary",
    respond: (req, res) =>
      json(res, {
        user: { path: req.url.split("?")[0], email: "alice@example.com" },
        version: req.url.startsWith("/api/users") ? "v2" : "v1",
        servedAt: Date.now() + 1,
        requestId: Math.random().toString(36).slice(2),
      }),
  });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off" },
    policies: policyEntries({
      clusters: { canary: { origin: canary.url }, "primary-replica": { origin: primary.url } },
      routes: [
        {
          id: "users",
          match: { path: { type: "PathPrefix", value: "/api/users" } },
          mirrors: [
            {
              cluster: "canary",
              compare: { reference: { cluster: "primary-replica" }, redactPaths: ["$.user.email"] },
            },
          ],
        },
        {
          id: "health",
          match: { path: { type: "PathPrefix", value: "/api/health" } },
          mirrors: [{ cluster: "canary", compare: { ignorePaths: ["$.servedAt", "$.requestId"] } }],
        },
        {
          id: "sampled",
          match: { path: { type: "PathPrefix", value: "/api/sampled" } },
          mirrors: [{ cluster: "canary", percent: 50 }],
        },
        {
          id: "dynamic",
          match: { path: { type: "PathPrefix", value: "/api/dynamic" } },
          mirrorFromHeader: { header: "x-mirror-cluster", allow: ["canary"] },
        },
      ],
    }),
  });

  for (let i = 0; i < USERS; i++) await fetch(`${worker.url}/api/users/${i}?session=secret-${i}`).then((r) => r.text());
  for (let i = 0; i < HEALTH; i++) await fetch(`${worker.url}/api/health`).then((r) => r.text());
  for (let i = 0; i < SAMPLED; i++) await fetch(`${worker.url}/api/sampled/${i}`).then((r) => r.text());
  await fetch(`${worker.url}/api/dynamic`, { headers: { "x-mirror-cluster": XSS_MIRROR } }).then((r) => r.text());

  // Counters reach the Durable Object in the background; wait (bounded) until all are in.
  const expected = USERS + HEALTH + SAMPLED + 1;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await fetch(`${worker.url}/__mirror/api/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const data = (await res.json()) as { routes: Array<{ requests: number }> };
    if (data.routes.reduce((n, r) => n + r.requests, 0) >= expected) break;
    if (Date.now() > deadline) throw new Error(`stats never reached ${expected} requests: ${JSON.stringify(data)}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
});

afterAll(async () => {
  await browser?.close();
  await worker?.dispose();
  await Promise.all([primary?.close(), canary?.close()]);
});

const cell = (route: string, field: string, mirror?: string) =>
  page
    .locator(mirror ? `tr.mirror[data-route="${route}"][data-mirror="${mirror}"]` : `tr.route[data-route="${route}"]`)
    .locator(`td[data-field="${field}"]`);

describe("dashboard in Chromium", () => {
  it("asks for the token, then shows the counts of the traffic sent", async () => {
    await page.goto(`${worker.url}/__mirror/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/__mirror/login");
    await page.fill("#token", "wrong");
    await page.click("button[type=submit]");
    await expect.poll(() => page.locator("[role=alert]").textContent()).toContain("does not match");
    await page.fill("#token", TOKEN);
    await page.click("button[type=submit]");
    await page.waitForSelector('#status[data-loaded="true"]');
    expect(new URL(page.url()).pathname).toBe("/__mirror/dashboard");

    // Every figure is checked against what the origins actually received.
    const canaryUsers = canary.requests.filter((r) => r.url.startsWith("/api/users")).length;
    const canaryHealth = canary.requests.filter((r) => r.url.startsWith("/api/health")).length;
    const canarySampled = canary.requests.filter((r) => r.url.startsWith("/api/sampled")).length;
    expect([canaryUsers, canaryHealth]).toEqual([USERS, HEALTH]);
    expect(canarySampled).toBeGreaterThan(0);
    expect(canarySampled).toBeLessThan(SAMPLED);

    expect(await cell("users", "requests").textContent()).toBe(String(USERS));
    expect(await cell("users", "mirrored").textContent()).toBe("100 %");
    expect(await cell("users", "sent", "canary").textContent()).toBe(String(canaryUsers));
    expect(await cell("users", "status", "canary").textContent()).toBe(`2xx ${USERS}`);
    expect(await cell("users", "compare", "canary").textContent()).toBe(`0 · ${USERS} · 0`);
    expect(await cell("users", "diffRate", "canary").textContent()).toBe("100 %");

    expect(await cell("health", "compare", "canary").textContent()).toBe(`${HEALTH} · 0 · 0`);
    expect(await cell("health", "diffRate", "canary").textContent()).toBe("0 %");

    expect(await cell("sampled", "requests").textContent()).toBe(String(SAMPLED));
    expect(await cell("sampled", "mirrored").textContent()).toBe(
      `${Math.round((1000 * canarySampled) / SAMPLED) / 10} %`,
    );
    expect(await cell("sampled", "sent", "canary").textContent()).toBe(String(canarySampled));
    expect(await cell("sampled", "skipped", "canary").textContent()).toBe(`not_sampled ${SAMPLED - canarySampled}`);
  });

  it("shows the latest diff side by side, with noise cancelled and secrets redacted", async () => {
    const latest = page.locator("details.sample").first();
    expect(await latest.getAttribute("open")).not.toBeNull();
    const differences = await latest.locator("table.differences tbody tr").allTextContents();
    expect(differences).toEqual(['$.version"v1""v2"']);
    const text = (await page.locator("#samples").textContent()) ?? "";
    expect(text).toContain("GET /api/users/19");
    expect(text).toMatch(/noise ignored: .*\$\.servedAt/);
    expect(text).toContain("[redacted]");
    expect(text).not.toContain("alice@example.com");
    expect(text).not.toContain("secret-19");
    expect(await page.locator("details.sample").count()).toBe(10);
    expect(text).toContain(`Newest 10 of ${USERS} kept samples.`);
  });

  it("renders a client-chosen mirror name as text, never as markup", async () => {
    expect(await cell("dynamic", "skipped", XSS_MIRROR).textContent()).toBe("cluster_not_allowed 1");
    expect(await page.evaluate("window.__pwned")).toBeUndefined();
    expect(await page.locator("img").count()).toBe(0);
  });

  it("takes the README's screenshot", async () => {
    for (const path of SCREENSHOTS) {
      mkdirSync(dirname(path), { recursive: true });
      await page.screenshot({ path, fullPage: true });
      expect(existsSync(path)).toBe(true);
    }
  });
});

/**
 * The dashboard in a real browser: Debian's Chromium, driven by playwright-core, signs in to the
 * worker running in workerd and must show exactly the traffic this test sent — counted at the
 * origins, not assumed — including a compare-mode diff, a chart per route whose every minute
 * shows the API's numbers, and per-field difference counts. It also takes the README's screenshot.
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ROOT } from "../../scripts/lib/build.mjs";
import { startCopySink, startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import type { SideSummary } from "../../src/admin/dashboard/wire.js";
import type { VerdictReport } from "../../src/verdict/report.js";
import { adminStats, until } from "./helpers.ts";

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
const XSS_FIELD = "<img src=x onerror=window.__pwned=2>";

const CATALOG = 30;
const USERS = 20;
const HEALTH = 10;
const SAMPLED = 40;
/** POSTs to the durable route, whose three mirrors catch up, wait an hour, and give up. */
const PUSHES = 6;

let primary: Origin;
let canary: Origin;
let catalogCanary: Origin;
/** The durable route's mirrors: one that answers 503 until it is back, one that is down, one that always answers 503. */
let secondary: Awaited<ReturnType<typeof startCopySink>>;
let parked: Awaited<ReturnType<typeof startCopySink>>;
let gone: Awaited<ReturnType<typeof startCopySink>>;
/** Requests the catalog canary answered, in order: its price differs on every 3rd. */
let catalogCalls = 0;
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
      req.url.startsWith("/api/catalog")
        ? json(res, { price: 10, token: "primary-secret-token" })
        : json(res, {
            user: { path: req.url.split("?")[0], email: "alice@example.com" },
            version: "v1",
            // Never equal on two calls, so that the reference always shows it as noise.
            servedAt: Date.now() + Math.random(),
            requestId: Math.random().toString(36).slice(2),
          }),
  });
  // A new catalog version: the price changes on exactly every 3rd request, the token on all,
  // and one field name is markup, which must stay text.
  catalogCanary = await startOrigin({
    name: "catalog-canary",
    respond: (_req, res) => {
      catalogCalls++;
      json(res, { price: catalogCalls % 3 === 0 ? 11 : 10, token: `canary-secret-${catalogCalls}`, [XSS_FIELD]: 1 });
    },
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
  secondary = await startCopySink({ name: "secondary", status: 503 });
  parked = await startCopySink({ name: "parked" });
  await parked.down();
  gone = await startCopySink({ name: "gone", status: 503 });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off" },
    spool: { consumer: { maxBatchTimeout: 1 } },
    policies: policyEntries({
      clusters: {
        canary: { origin: canary.url },
        "primary-replica": { origin: primary.url },
        "catalog-canary": { origin: catalogCanary.url },
        secondary: { origin: secondary.url },
        parked: { origin: parked.url },
        gone: { origin: gone.url },
      },
      routes: [
        {
          id: "push",
          match: { path: { type: "Exact", value: "/api/v1/push" } },
          mirrors: [
            { cluster: "secondary", delivery: "durable", retry: { maxAttempts: 5, firstDelaySeconds: 1 } },
            { cluster: "parked", delivery: "durable", retry: { firstDelaySeconds: 3600 } },
            { cluster: "gone", delivery: "durable", retry: { maxAttempts: 1, firstDelaySeconds: 1 } },
          ],
        },
        {
          id: "catalog",
          match: { path: { type: "PathPrefix", value: "/api/catalog" } },
          mirrors: [{ cluster: "catalog-canary", compare: true }],
        },
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

  // The catalog goes first so that the newest samples overall are the users route's.
  for (let i = 0; i < CATALOG; i++) await fetch(`${worker.url}/api/catalog/${i}`).then((r) => r.text());
  for (let i = 0; i < USERS; i++) await fetch(`${worker.url}/api/users/${i}?session=secret-${i}`).then((r) => r.text());
  for (let i = 0; i < HEALTH; i++) await fetch(`${worker.url}/api/health`).then((r) => r.text());
  for (let i = 0; i < SAMPLED; i++) await fetch(`${worker.url}/api/sampled/${i}`).then((r) => r.text());
  await fetch(`${worker.url}/api/dynamic`, { headers: { "x-mirror-cluster": XSS_MIRROR } }).then((r) => r.text());
  for (let i = 0; i < PUSHES; i++) {
    await fetch(`${worker.url}/api/v1/push`, { method: "POST", body: `batch ${i}` }).then((r) => r.text());
  }
  // Every push was spooled for all three; the secondary is back, and its copies are redelivered.
  await until(async () => (await pushDelivery())?.secondary?.spooled === PUSHES, 30_000);
  secondary.setStatus(204);
  await until(async () => {
    const d = await pushDelivery();
    return d?.secondary?.redelivered === PUSHES && d?.gone?.dead === PUSHES;
  }, 60_000);

  // Counters reach the Durable Object in the background; wait (bounded) until all are in.
  const expected = CATALOG + USERS + HEALTH + SAMPLED + 1 + PUSHES;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { stats: data } = await adminStats<{ routes: Array<{ requests: number }> }>(worker.url, TOKEN);
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
  await Promise.all([primary, canary, catalogCanary, secondary, parked, gone].map((o) => o?.close()));
});

type Delivery = { spooled: number; pending: number; redelivered: number; dead: number };

/** The durable route's delivery counters by mirror, once it has some. */
async function pushDelivery(): Promise<Record<string, Delivery> | undefined> {
  const { stats: data } = await adminStats<{
    routes: Array<{ route: string; mirrors: Array<{ mirror: string; delivery: Delivery }> }>;
  }>(worker.url, TOKEN);
  const route = data.routes.find((r) => r.route === "push");
  return route && Object.fromEntries(route.mirrors.map((m) => [m.mirror, m.delivery]));
}

interface Point {
  minute: string;
  requests: number;
  mirrored: number;
  failed: number;
  diffRate: number;
}
interface Stats {
  routes: Array<{
    route: string;
    series: Point[];
    mirrors: Array<{
      mirror: string;
      compare: { match: number; differ: number; error: number; fields: Array<{ field: string; differ: number }> };
      sideBySide: Record<"primary" | "mirror", SideSummary>;
      signatures: { signatures: Array<{ count: number }> } | null;
    }>;
  }>;
}

async function stats(minutes: number): Promise<Stats> {
  return (await adminStats<Stats>(worker.url, TOKEN, minutes)).stats;
}

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

  it("shows each durable mirror's spooled, pending, redelivered and dead copies, as its origin saw them", async () => {
    // The secondary holds every push once; the parked mirror none yet; the gone one refused every one.
    expect(secondary.copies.size).toBe(PUSHES);
    expect(parked.arrivals).toBe(0);
    expect(gone.copies.size).toBe(PUSHES);
    expect(await cell("push", "durable", "secondary").textContent()).toBe(`${PUSHES} · 0 · ${PUSHES} · 0`);
    expect(await cell("push", "durable", "parked").textContent()).toBe(`${PUSHES} · ${PUSHES} · 0 · 0`);
    expect(await cell("push", "durable", "gone").textContent()).toBe(`${PUSHES} · 0 · 0 · ${PUSHES}`);
    expect(await cell("push", "durable", "gone").getAttribute("class")).toBe("num bad");
    expect(await cell("push", "durable", "parked").getAttribute("class")).toBe("num warn");
    // A best-effort mirror spools nothing.
    expect(await cell("users", "durable", "canary").textContent()).toBe("–");
  });

  it("shows the latest diff side by side, with noise cancelled and secrets redacted", async () => {
    const latest = page.locator("#samples details.sample").first();
    expect(await latest.getAttribute("open")).not.toBeNull();
    const differences = await latest.locator("table.differences tbody tr").allTextContents();
    expect(differences).toEqual(['$.version"v1""v2"']);
    const text = (await page.locator("#samples").textContent()) ?? "";
    expect(text).toContain("GET /api/users/19");
    expect(text).toMatch(/noise ignored: .*\$\.servedAt/);
    expect(text).toContain("[redacted]");
    expect(text).not.toContain("alice@example.com");
    expect(text).not.toContain("secret-19");
    expect(await page.locator("#samples details.sample").count()).toBe(10);
    expect(text).toContain(`Newest 10 of ${USERS} kept samples.`);
  });

  it("draws a chart per route whose every minute shows the API's numbers, an empty minute as zero", async () => {
    await page.selectOption("#window", "5");
    await expect.poll(() => page.locator('section.chart[data-route="users"] .hit').count()).toBe(5);
    const api = await stats(5);
    const charts = await page
      .locator("section.chart")
      .evaluateAll((els) => els.map((e) => e.getAttribute("data-route")));
    expect(charts).toEqual(api.routes.map((r) => r.route));
    let checked = 0;
    let empty = 0;
    for (const route of api.routes) {
      const chart = page.locator(`section.chart[data-route="${route.route}"]`);
      const withDiff = route.mirrors.some((m) => m.compare.match + m.compare.differ + m.compare.error > 0);
      expect(await chart.locator("polyline.line-diff").count(), route.route).toBe(withDiff ? 1 : 0);
      const hits = chart.locator(".hit");
      // Minutes and bar heights from one reading: the chart may be redrawn, its window moved on, between two.
      const drawn = await chart.evaluate((el) => {
        const bars = el.querySelectorAll("rect.bar-requests");
        return [...el.querySelectorAll(".hit")].map((hit, i) => ({
          minute: hit.getAttribute("data-minute"),
          barHeight: bars[i]?.getAttribute("height") ?? null,
        }));
      });
      const minutes = drawn.map((d) => d.minute);
      expect(minutes).toHaveLength(route.series.length);
      // Every minute is a point of the line, empty ones included: no gaps.
      const failedLine = (await chart.locator("polyline.line-failed").getAttribute("points")) ?? "";
      expect(failedLine.trim().split(" ")).toHaveLength(minutes.length);
      for (const [i, minute] of minutes.entries()) {
        // The window may move on between the two reads; compare the minutes both have.
        const point = route.series.find((p) => p.minute === minute);
        if (!point) continue;
        await hits.nth(i).focus();
        const tip = chart.locator(".tip");
        await expect.poll(() => tip.getAttribute("data-minute")).toBe(minute);
        const shown = async (field: string) => tip.locator(`[data-field="${field}"]`).textContent();
        expect(
          [await shown("requests"), await shown("mirrored"), await shown("failed")],
          `${route.route} ${minute}`,
        ).toEqual([String(point.requests), String(point.mirrored), String(point.failed)]);
        if (withDiff) expect(await shown("diffRate")).toBe(`${Math.round(point.diffRate * 1000) / 10} %`);
        if (point.requests === 0) {
          empty++;
          expect(drawn[i]?.barHeight, `${route.route} ${minute}`).toBe("0.0");
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(api.routes.length * 4);
    expect(empty).toBeGreaterThan(0);
  });

  it("lists each compared mirror's differing fields with the counts the origins imply", async () => {
    const table = page.locator('section.fields[data-route="catalog"][data-mirror="catalog-canary"]');
    await table.waitFor();
    const priceDiffers = Math.floor(catalogCalls / 3);
    expect(catalogCalls).toBe(CATALOG);
    const row = (field: string) =>
      table.locator("tr.field-row").filter({ has: page.getByRole("button", { name: field, exact: true }) });
    const figures = async (field: string) =>
      Promise.all(["differ", "rate", "noise"].map((f) => row(field).locator(`td[data-field="${f}"]`).textContent()));
    expect(await figures("$.token")).toEqual([String(CATALOG), "100 %", "0"]);
    expect(await figures("$.price")).toEqual([
      String(priceDiffers),
      `${Math.round((1000 * priceDiffers) / CATALOG) / 10} %`,
      "0",
    ]);
    expect(await row("$.price").locator('td[data-field="primary"] code').first().textContent()).toBe("10");
    expect(await row("$.price").locator('td[data-field="candidate"] code').first().textContent()).toBe("11");
    expect(await row("$.token").locator('td[data-field="candidate"] code').allTextContents()).toEqual([
      '"[redacted]"',
      '"[redacted]"',
    ]);
    // The table is the API's, most frequent first.
    const api = await stats(5);
    const fields = api.routes.find((r) => r.route === "catalog")?.mirrors[0]?.compare.fields ?? [];
    const names = await table.locator("button.field").allTextContents();
    expect(names).toEqual(fields.map((f) => f.field));
    expect(names.slice(0, 2).sort()).toEqual([`$["${XSS_FIELD}"]`, "$.token"].sort());

    // Noise that the reference showed is listed apart for the users route.
    const users = page.locator('section.fields[data-route="users"][data-mirror="canary"]');
    expect(await users.locator("button.field").allTextContents()).toEqual(["$.version"]);
    expect(await users.locator(".noise-only").textContent()).toMatch(/\$\.requestId 20.*\$\.servedAt 20/);
    expect(await page.locator("body").textContent()).not.toMatch(/canary-secret|primary-secret/);
  });

  it("opens a field to show its own samples", async () => {
    const table = page.locator('section.fields[data-route="catalog"][data-mirror="catalog-canary"]');
    await table.getByRole("button", { name: "$.price", exact: true }).click();
    const samples = table.locator("tr.field-samples details.sample");
    await expect.poll(() => samples.count()).toBe(3);
    const rows = await samples.first().locator("table.differences tbody tr").allTextContents();
    expect(rows).toContain("$.price1011");
    expect(await table.getByRole("button", { name: "$.price", exact: true }).getAttribute("aria-expanded")).toBe(
      "true",
    );
  });

  it("shows each mirror's verdict, the primary beside the mirror and the divergence signatures, as the API gives them", async () => {
    // The window is the charts test's 5 minutes: the page's api/stats read and api/verdict's are of one window.
    const area = page.locator('section.verdict[data-route="catalog"][data-mirror="catalog-canary"]');
    await area.waitFor();
    const response = await fetch(`${worker.url}/__mirror/api/verdict?route=catalog&window=5m`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(response.status).toBe(200);
    const report = (await response.json()) as VerdictReport;
    // 30 compared requests are fewer than minSamples 100: no check is decided yet.
    expect(report.verdict).toBe("inconclusive");
    expect(await area.locator(".verdict-badge").getAttribute("data-verdict")).toBe(report.verdict);
    const shown = await area
      .locator("ul.reasons li")
      .evaluateAll((items) =>
        items.map((li) => [li.getAttribute("data-check"), li.getAttribute("data-outcome"), li.textContent]),
      );
    expect(shown).toEqual(report.reasons.map((r) => [r.check, r.outcome, `${r.check}: ${r.outcome} — ${r.reason}`]));

    // Side by side: both sides answered every catalog request, as the origins counted them.
    expect(primary.requests.filter((r) => r.url.startsWith("/api/catalog")).length).toBe(CATALOG);
    const api = await stats(5);
    const mirror = api.routes.find((r) => r.route === "catalog")?.mirrors[0];
    const side = (which: string, field: string) =>
      area.locator(`table.sides tr[data-side="${which}"] td[data-field="${field}"]`).textContent();
    for (const which of ["primary", "mirror"] as const) {
      const summary = mirror?.sideBySide[which];
      expect(await side(which, "2xx")).toBe(String(CATALOG));
      expect(await side(which, "5xx")).toBe("0");
      expect(summary?.latencyMs?.count).toBe(CATALOG);
      for (const q of ["p50", "p95", "p99"] as const)
        expect(await side(which, q)).toBe(`${summary?.latencyMs?.[q]} ms`);
      expect(report.latencyMs[which]).toEqual(summary?.latencyMs);
      expect(report.status[which]).toEqual(summary?.status);
    }

    // Every catalog answer differs in the token and the markup-named field; every 3rd in the price too.
    const rows = await area
      .locator("table.signatures tr.signature")
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
    const priceDiffers = Math.floor(catalogCalls / 3);
    const share = (n: number) => `${Math.round((1000 * n) / CATALOG) / 10} %`;
    expect(rows.map((r) => [r[0], r[1], r[2]])).toEqual([
      [`$.token + $["${XSS_FIELD}"]`, String(CATALOG - priceDiffers), share(CATALOG - priceDiffers)],
      [`$.price + $.token + $["${XSS_FIELD}"]`, String(priceDiffers), share(priceDiffers)],
    ]);
    for (const row of rows) expect(row[3]).toMatch(/\S/);
    expect(mirror?.signatures?.signatures.map((s) => s.count)).toEqual([CATALOG - priceDiffers, priceDiffers]);
  });

  it("renders client- and mirror-chosen names as text, never as markup", async () => {
    // A header-chosen name outside allow is counted under one fixed label, never under its own.
    expect(await cell("dynamic", "skipped", "(not allowed)").textContent()).toBe("cluster_not_allowed 1");
    expect(await page.locator("body").textContent()).not.toContain(XSS_MIRROR);
    expect(await page.getByRole("button", { name: `$["${XSS_FIELD}"]`, exact: true }).count()).toBe(1);
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

  it("signs out with the page's own button: a same-origin post, which the origin check lets through", async () => {
    const [post] = await Promise.all([
      page.waitForRequest((request) => request.method() === "POST"),
      page.click("header form button[type=submit]"),
    ]);
    expect((await post.allHeaders())["sec-fetch-site"]).toBe("same-origin");
    await page.waitForURL(`${worker.url}/__mirror/login`);
    await page.goto(`${worker.url}/__mirror/dashboard`);
    expect(new URL(page.url()).pathname).toBe("/__mirror/login");
  });
});

/**
 * The dashboard's browser script in Chromium, against answers the test chooses: the worker serves
 * the page and the script under its CSP, and the test answers `api/stats` itself, so that every
 * refresh is one it made, in the order it chose. What a refresh must keep (the samples a user
 * opened or closed), what an answer that lost its race must not do (draw a window no longer
 * chosen), what the page says of a route without traffic, and the class names it writes.
 */
import { type Browser, type BrowserContext, chromium, type Page, type Request, type Route } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from "vitest";
import { startWorker } from "../../scripts/lib/worker.mjs";
import type * as Wire from "../../src/admin/dashboard/wire.js";
import { until } from "./helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const TOKEN = "dashboard-script-e2e-token-0123456789";
const NO_STATUS: Wire.SideSummary["status"] = { "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, failed: 0 };

let worker: Awaited<ReturnType<typeof startWorker>>;
let browser: Browser;
/** Signed in once: each test opens the dashboard in a page of its own. */
let context: BrowserContext;
let page: Page;
/** `api/stats` requests the page made and the test has not answered yet, oldest first. */
let polls: Route[];

beforeAll(async () => {
  worker = await startWorker({ scriptPath: inject("workerScript"), vars: { ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off" } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  // The context's own client keeps the session cookie for its pages; no page polls the real API.
  const signIn = await context.request.post(`${worker.url}/__mirror/login`, {
    form: { token: TOKEN },
    maxRedirects: 0,
  });
  expect(signIn.status()).toBe(303);
});

beforeEach(async () => {
  const queue: Route[] = [];
  polls = queue;
  page = await context.newPage();
  await page.route(
    (url) => url.pathname === "/__mirror/api/stats",
    (poll) => {
      queue.push(poll);
    },
  );
  await page.goto(`${worker.url}/__mirror/dashboard`);
});

afterEach(async () => {
  await page.close();
});

afterAll(async () => {
  await browser?.close();
  await worker?.dispose();
});

/** The next `api/stats` request the page makes (or made), unanswered. */
async function nextPoll(): Promise<Route> {
  await until(() => polls.length > 0, 30_000);
  const poll = polls.shift();
  if (!poll) throw new Error("the page asked for no stats within 30 s");
  return poll;
}

let answers = 0;
/**
 * Answers `poll` and waits until the page has drawn the answer: each answer carries its own
 * number as the busiest shard's writes per second, which the status line shows last.
 */
async function answer(poll: Route, data: Omit<Wire.StatsAnswer, "sources">): Promise<void> {
  const marker = ++answers;
  const body: Wire.StatsAnswer = {
    ...data,
    sources: { analyticsEngine: false, shards: [{ answered: true, flushesPerSecond: marker }] },
  };
  await poll.fulfill({ json: body });
  await expect.poll(() => page.locator("#status").textContent()).toContain(`: ${marker} writes/s`);
}

const minute = (i: number) => new Date(Date.UTC(2026, 0, 1, 12, i)).toISOString();

function routeOf(id: string, minutes: number, requests = 0): Wire.Route {
  return {
    route: id,
    requests: requests * minutes,
    mirroredPercent: requests ? 100 : null,
    mirrors: [],
    series: Array.from({ length: minutes }, (_, i) => ({
      minute: minute(i),
      requests,
      mirrored: requests,
      failed: 0,
      diffRate: 0,
    })),
  };
}

function sample(requestId: string): Wire.Sample {
  const side = (version: string): Wire.Side => ({
    status: 200,
    headers: { "content-type": "application/json" },
    bodyBytes: 17,
    sha256: "0".repeat(64),
    excerpt: JSON.stringify({ version }),
  });
  return {
    at: Date.UTC(2026, 0, 1, 12, 0),
    route: "users",
    mirror: "canary",
    requestId,
    method: "GET",
    path: `/api/users/${requestId}`,
    fields: ["$.version"],
    noise: [],
    differences: [{ field: "$.version", path: "$.version", primary: '"v1"', candidate: '"v2"' }],
    primary: side("v1"),
    candidate: side("v2"),
  };
}

/** Which of the latest samples are open, by request id. */
const openSamples = () =>
  page
    .locator("#samples details.sample")
    .evaluateAll((all) => all.map((d) => [d.getAttribute("data-request-id"), d.hasAttribute("open")]));

describe("the dashboard's script in Chromium", () => {
  it("keeps the samples a user opened open, and the ones they closed closed, over refreshes", async () => {
    const samples = [sample("r3"), sample("r2"), sample("r1")];
    await answer(await nextPoll(), { routes: [routeOf("users", 60, 1)], samples });
    expect(await openSamples()).toEqual([
      ["r3", true],
      ["r2", false],
      ["r1", false],
    ]);
    await page.locator('details.sample[data-request-id="r2"] > summary').click();
    await page.locator('details.sample[data-request-id="r3"] > summary').click();
    await answer(await nextPoll(), { routes: [routeOf("users", 60, 1)], samples });
    expect(await openSamples()).toEqual([
      ["r3", false],
      ["r2", true],
      ["r1", false],
    ]);
    // A newer sample opens as the newest always did; the user's choices stay as they were.
    await answer(await nextPoll(), { routes: [routeOf("users", 60, 1)], samples: [sample("r4"), ...samples] });
    expect(await openSamples()).toEqual([
      ["r4", true],
      ["r3", false],
      ["r2", true],
      ["r1", false],
    ]);
  });

  it("drops the refresh a newer one replaced, so that only the window chosen last is drawn", async () => {
    const stale = await nextPoll();
    expect(new URL(stale.request().url()).searchParams.get("minutes")).toBe("60");
    const dropped = page.waitForEvent("requestfailed", {
      predicate: (r: Request) => r === stale.request(),
      timeout: 10_000,
    });
    await page.selectOption("#window", "5");
    const chosen = await nextPoll();
    expect(new URL(chosen.request().url()).searchParams.get("minutes")).toBe("5");
    await dropped;
    await answer(chosen, { routes: [routeOf("users", 5, 1)], samples: [] });
    // The refresh after it asks for the window chosen, and is drawn.
    const next = await nextPoll();
    expect(new URL(next.request().url()).searchParams.get("minutes")).toBe("5");
    await answer(next, { routes: [routeOf("users", 5, 2)], samples: [] });
    expect(await page.locator('section.chart[data-route="users"] .hit').count()).toBe(5);
  });

  it("says a route without traffic peaked at 0 per minute", async () => {
    await answer(await nextPoll(), { routes: [routeOf("idle", 5), routeOf("busy", 5, 3)], samples: [] });
    const peak = (id: string) => page.locator(`section.chart[data-route="${id}"] .scale`).textContent();
    expect([await peak("idle"), await peak("busy")]).toEqual(["peak 0 per minute", "peak 3 per minute"]);
    // The idle route's bars stay at zero height: the scale never divides by its peak of 0.
    const heights = await page
      .locator('section.chart[data-route="idle"] rect.bar-requests')
      .evaluateAll((bars) => bars.map((b) => b.getAttribute("height")));
    expect(heights).toEqual(["0.0", "0.0", "0.0", "0.0", "0.0"]);
  });

  it("names no empty class and no class with a space to spare", async () => {
    const mirror: Wire.Mirror = {
      mirror: "canary",
      sent: 5,
      failed: 0,
      skipped: {},
      errors: {},
      status: { "2xx": 5 },
      latency: { avgMs: 3, p95Ms: 5, maxMs: 6 },
      delivery: { spooled: 0, pending: 0, redelivered: 0, dead: 0 },
      compare: { match: 0, differ: 0, error: 0, diffRate: null, fields: [], noise: [] },
      sideBySide: {
        primary: { status: { ...NO_STATUS, "2xx": 5 }, latencyMs: { p50: 2, p95: 3, p99: 3, count: 5 } },
        mirror: { status: { ...NO_STATUS, "2xx": 5 }, latencyMs: { p50: 3, p95: 5, p99: 6, count: 5 } },
      },
      signatures: {
        total: 2,
        signatures: [{ fields: ["$.a", "$.b"], count: 2, share: 1, exampleRequestId: "ray-1", exact: true }],
        other: { count: 0, share: 0 },
      },
      verdict: {
        verdict: "inconclusive",
        reasons: [
          { check: "diffRate", outcome: "inconclusive", reason: "5 compared requests, fewer than minSamples 100" },
        ],
        samples: 5,
      },
    };
    await answer(await nextPoll(), { routes: [{ ...routeOf("users", 5, 1), mirrors: [mirror] }], samples: [] });
    expect(await page.locator("section.verdict .verdict-badge").getAttribute("data-verdict")).toBe("inconclusive");
    expect(await page.locator('tr.mirror td[data-field="status"] .tag').textContent()).toBe("2xx 5");
    expect(await page.locator('[class=""], [class$=" "]').count()).toBe(0);
  });

  it("shows a durable mirror's spooled, pending, redelivered and dead copies, marking the dead and the pending", async () => {
    const mirror = (name: string, delivery: Wire.Mirror["delivery"]): Wire.Mirror => ({
      mirror: name,
      sent: 0,
      failed: 0,
      skipped: {},
      errors: {},
      status: {},
      latency: null,
      delivery,
      compare: { match: 0, differ: 0, error: 0, diffRate: null, fields: [], noise: [] },
      sideBySide: { primary: { status: NO_STATUS, latencyMs: null }, mirror: { status: NO_STATUS, latencyMs: null } },
      signatures: null,
    });
    const mirrors = [
      mirror("best-effort", { spooled: 0, pending: 0, redelivered: 0, dead: 0 }),
      mirror("caught-up", { spooled: 9, pending: 0, redelivered: 9, dead: 0 }),
      mirror("waiting", { spooled: 9, pending: 3, redelivered: 6, dead: 0 }),
      mirror("gone", { spooled: 9, pending: 2, redelivered: 6, dead: 1 }),
    ];
    await answer(await nextPoll(), { routes: [{ ...routeOf("push", 5, 1), mirrors }], samples: [] });
    const durable = (name: string) =>
      page
        .locator(`tr.mirror[data-mirror="${name}"] td[data-field="durable"]`)
        .evaluate((td) => [td.textContent, td.className]);
    expect(await durable("best-effort")).toEqual(["–", "num"]);
    expect(await durable("caught-up")).toEqual(["9 · 0 · 9 · 0", "num"]);
    expect(await durable("waiting")).toEqual(["9 · 3 · 6 · 0", "num warn"]);
    expect(await durable("gone")).toEqual(["9 · 2 · 6 · 1", "num bad"]);
    // The route's row spans the mirror columns, the new one included.
    expect(await page.locator('tr.route[data-route="push"] td').count()).toBe(4);
    expect(await page.locator("#routes thead th").count()).toBe(11);
  });
});

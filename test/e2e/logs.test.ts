/**
 * What a zone pays Workers Logs for: at the deployed LOG_SAMPLE_RATE (wrangler.toml), every
 * failure and skip is logged, a successful copy about 1 time in 100, unsampled requests never —
 * while the counters still see every outcome. Counted line by line from a real workerd.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { ROOT } from "../../scripts/lib/build.mjs";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { adminStats } from "./helpers.ts";

const REQUESTS = 800;
const CONCURRENCY = 8;
const TOKEN = "logs-test-admin-token-0123456789abcdef";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

let primary: Origin;
let healthy: Origin;
let worker: Worker;
const lines: Array<Record<string, unknown>> = [];

/** The sample rate every deployment gets unless it sets its own. */
function deployedSampleRate(): string {
  const match = /^LOG_SAMPLE_RATE\s*=\s*"([^"]+)"/m.exec(readFileSync(join(ROOT, "wrangler.toml"), "utf8"));
  if (!match?.[1]) throw new Error("wrangler.toml sets no LOG_SAMPLE_RATE");
  return match[1];
}

beforeAll(async () => {
  primary = await startOrigin({ name: "primary", record: false });
  healthy = await startOrigin({ name: "healthy", record: false });
  const closed = await startOrigin({ name: "closed" });
  await closed.close();
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: {
      PRIMARY_ORIGIN: primary.url,
      LOG_LEVEL: "info",
      LOG_SAMPLE_RATE: deployedSampleRate(),
      STATS_FLUSH_MS: "100",
      ADMIN_TOKEN: TOKEN,
    },
    onLog: (line) => {
      const at = line.indexOf('{"msg":"edge-mirror.mirror"');
      if (at !== -1) lines.push(JSON.parse(line.slice(at)) as Record<string, unknown>);
    },
    policies: policyEntries({
      clusters: { healthy: { origin: healthy.url }, down: { origin: closed.url } },
      routes: [
        {
          id: "logged",
          mirrors: [
            { cluster: "healthy" },
            // Refuses every connection: failures (and, once ejected, circuit_open) are always logged.
            { cluster: "down" },
            // Half the requests are not sampled for this one: never a line at info.
            { cluster: "healthy", percent: 50, hostSuffix: "-half" },
          ],
        },
      ],
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary, healthy].map((o) => o?.close()));
});

it("logs every failure, about 1 in 100 successful copies, no unsampled request; counters see everything", async () => {
  expect(deployedSampleRate()).toBe("0.01");
  let next = 0;
  const client = async () => {
    while (next < REQUESTS) {
      next++;
      const res = await fetch(`${worker.url}/logged/${next}`);
      await res.arrayBuffer();
      expect(res.status).toBe(200);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  await healthy.waitForCount(REQUESTS, 20_000);

  // Every copy to the refusing mirror is a failure line, sampled at rate 1.
  const failed = () => lines.filter((l) => l.kind === "failed");
  for (let i = 0; i < 100 && failed().length < REQUESTS; i++) await new Promise((r) => setTimeout(r, 100));
  expect(failed()).toHaveLength(REQUESTS);
  expect(new Set(failed().map((l) => l.sampleRate))).toEqual(new Set([1]));

  // Successful copies: about 1.5 × REQUESTS of them (one mirror always, one half the time).
  const sent = lines.filter((l) => l.kind === "sent");
  expect(new Set(sent.map((l) => l.sampleRate))).toEqual(new Set([0.01]));
  const copies = healthy.count;
  expect(copies).toBeGreaterThan(REQUESTS);
  // Binomial(copies ≈ 1,200, 0.01): mean 12, sd 3.4; these bounds fail by chance about once in 10⁶ runs.
  expect(sent.length).toBeGreaterThanOrEqual(1);
  expect(sent.length).toBeLessThanOrEqual(Math.ceil(copies * 0.01 + 5 * Math.sqrt(copies * 0.01 * 0.99)));
  expect(lines.filter((l) => l.reason === "not_sampled")).toEqual([]);

  // The counters are not sampled: every request and every copy is there, once the last batch lands.
  const counted = async () => {
    const { stats } = await adminStats<{
      routes: Array<{ route: string; requests: number; mirrors: Array<{ sent: number }> }>;
    }>(worker.url, TOKEN, 5);
    const route = stats.routes.find((r) => r.route === "logged");
    return { requests: route?.requests, sent: route?.mirrors.reduce((n, m) => n + m.sent, 0) };
  };
  let seen = await counted();
  for (let i = 0; i < 100 && (seen.requests !== REQUESTS || seen.sent !== healthy.count); i++) {
    await new Promise((r) => setTimeout(r, 100));
    seen = await counted();
  }
  expect(seen).toEqual({ requests: REQUESTS, sent: healthy.count });
});

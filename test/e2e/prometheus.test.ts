import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startCopySink, startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { adminStats, until } from "./helpers.ts";

/**
 * The seeds' set-up with a real Prometheus: Debian's `prometheus` (which `.ci/run` installs)
 * scrapes itself every 100 ms and remote-writes — snappy-compressed protobuf WriteRequests with
 * X-Prometheus-Remote-Write-Version, retried on 5xx as Prometheus does — through the worker to a
 * primary receiver, while a durable mirror stands in for a second Mimir cluster that is down for
 * a while. After Prometheus has stopped, the secondary must hold every batch the primary accepted.
 */
const hasPrometheus = spawnSync("prometheus", ["--version"]).status === 0;
const TOKEN = "prometheus-test-admin-token-0123456789abcdef";

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Sink = Awaited<ReturnType<typeof startCopySink>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

let primary: Origin;
let secondary: Sink;
let worker: Worker;
let prometheus: ChildProcess | undefined;
let output = "";
const dir = mkdtempSync(join(tmpdir(), "edge-mirror-prometheus-"));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** Remote-write requests the primary received: their SHA-256 and the headers that make them remote write. */
const accepted: Array<{ sha256: string; version: string; encoding: string; type: string }> = [];

beforeAll(async () => {
  if (!hasPrometheus) return;
  primary = await startOrigin({
    name: "mimir-primary",
    record: false,
    respond: (req, res) => {
      accepted.push({
        sha256: req.sha256,
        version: String(req.headers["x-prometheus-remote-write-version"] ?? ""),
        encoding: String(req.headers["content-encoding"] ?? ""),
        type: String(req.headers["content-type"] ?? ""),
      });
      res.writeHead(204).end();
    },
  });
  secondary = await startCopySink({ name: "mimir-secondary" });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url, ADMIN_TOKEN: TOKEN, LOG_LEVEL: "off" },
    policies: policyEntries({
      clusters: { "mimir-secondary": { origin: secondary.url } },
      routes: [
        {
          id: "remote-write",
          match: { path: { type: "Exact", value: "/api/v1/push" }, methods: ["POST"] },
          timeoutMs: 15000,
          mirrors: [
            {
              cluster: "mimir-secondary",
              delivery: "durable",
              retry: { maxAttempts: 10, firstDelaySeconds: 1 },
              requestHeaders: { set: { "x-scope-orgid": "shadow" } },
            },
          ],
        },
      ],
    }),
    spool: { consumer: { maxBatchTimeout: 1 } },
  });
});

afterAll(async () => {
  prometheus?.kill("SIGKILL");
  await worker?.dispose();
  await Promise.all([primary?.close(), secondary?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** Starts Prometheus remote-writing to the worker; resolves once it is up. */
async function startPrometheus(): Promise<ChildProcess> {
  const port = await freePort();
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    [
      "global:",
      "  scrape_interval: 100ms",
      "  scrape_timeout: 100ms",
      "scrape_configs:",
      "  - job_name: prometheus",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${port}"]`,
      "remote_write:",
      `  - url: ${worker.url}/api/v1/push`,
      "    queue_config:",
      "      batch_send_deadline: 200ms",
      "      max_samples_per_send: 500",
      "      min_backoff: 50ms",
      "      max_backoff: 500ms",
      "",
    ].join("\n"),
  );
  const child = spawn(
    "prometheus",
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout?.on("data", (c) => {
    output += c.toString();
  });
  child.stderr?.on("data", (c) => {
    output += c.toString();
  });
  await until(async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/-/ready`)).ok;
    } catch {
      return false;
    }
  }, 30_000);
  return child;
}

async function stopPrometheus(child: ChildProcess): Promise<void> {
  // SIGTERM: Prometheus sends what it has queued, then exits.
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 60_000))]);
}

describe.skipIf(!hasPrometheus)("a real Prometheus remote_write through an outage of the secondary", () => {
  it("leaves the secondary with every batch the primary accepted", { timeout: 180_000 }, async () => {
    prometheus = await startPrometheus();
    await until(() => accepted.length >= 5, 30_000);
    expect(secondary.copies.size).toBeGreaterThan(0);

    // The secondary goes down (an upgrade, a restart) while Prometheus keeps writing.
    await secondary.down();
    const before = accepted.length;
    await until(() => accepted.length >= before + 20, 60_000);
    await secondary.up();
    await until(() => accepted.length >= before + 30, 60_000);
    await stopPrometheus(prometheus);
    prometheus = undefined;

    // Everything the primary accepted is final now; the secondary catches up from the spool.
    const batches = accepted.map((a) => a.sha256);
    expect(batches.length).toBeGreaterThanOrEqual(35);
    await until(() => batches.every((b) => [...secondary.copies.values()].includes(b)), 90_000);
    const held = [...secondary.copies.values()];
    const missing = batches.filter((b) => !held.includes(b));
    expect(missing, output).toEqual([]);
    // Each copy id is one batch the primary accepted, and nothing else came.
    expect(held.length).toBe(batches.length);
    expect(secondary.unnamed).toEqual([]);
    // What made them remote write reached the primary, and the copies carried it too.
    expect(new Set(accepted.map((a) => `${a.type} ${a.encoding} ${a.version}`))).toEqual(
      new Set(["application/x-protobuf snappy 0.1.0"]),
    );

    const { stats } = await adminStats<{
      routes: Array<{ route: string; mirrors: Array<{ delivery: Record<string, number> }> }>;
    }>(worker.url, TOKEN);
    const delivery = stats.routes.find((r) => r.route === "remote-write")?.mirrors[0]?.delivery ?? {};
    expect(delivery.planned).toBe(batches.length);
    expect(delivery.spooled).toBeGreaterThan(0);
    expect(delivery.pending).toBe(0);
    expect((delivery.deliveredInline ?? 0) + (delivery.redelivered ?? 0)).toBe(batches.length);
  });
});

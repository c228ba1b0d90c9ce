#!/usr/bin/env node
/**
 * `npm start`: demo origins (a primary, two mirrors and a second remote-write cluster), demo
 * policies applied to local KV with the policy CLI, and the worker under `wrangler dev`, capturing
 * /api/catalog to local R2, with the spool's queues and bucket local too. Ports: EDGE_MIRROR_PORT
 * (8787) and DEMO_BASE_PORT (8081: primary, +1 service1-mirror, +2 service2-mirror, +3
 * mimir-secondary, a durable mirror that `POST /demo/secondary-outage?seconds=N`, answered by the
 * primary, takes down for a while). Local state (KV, the stats objects, queues, the spool's bodies
 * and the captures) lives where
 * `wrangler dev` keeps it, `.wrangler/state`, or under EDGE_MIRROR_PERSIST_TO (the end-to-end test
 * uses a directory of its own, so that a developer's dashboard never shows its traffic). Ctrl-C
 * stops everything.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT } from "./lib/build.mjs";
import { startCopySink, startOrigin } from "./lib/origins.mjs";

const workerPort = Number(process.env.EDGE_MIRROR_PORT ?? 8787);
const base = Number(process.env.DEMO_BASE_PORT ?? 8081);
const wrangler = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
const persistTo = process.env.EDGE_MIRROR_PERSIST_TO ? ["--persist-to", process.env.EDGE_MIRROR_PERSIST_TO] : [];

// The worker keeps its admin surface closed for tokens under 32 characters; say so here instead.
// ADMIN_TOKEN, as the worker's secret and every command-line tool name it.
if (process.env.EDGE_MIRROR_ADMIN_TOKEN && !process.env.ADMIN_TOKEN) {
  console.error("EDGE_MIRROR_ADMIN_TOKEN is no longer read: set ADMIN_TOKEN, the name of the worker's secret");
  process.exit(2);
}
const adminToken = process.env.ADMIN_TOKEN || "demo-admin-token-for-local-use-only";
if (adminToken.length < 32) {
  console.error("ADMIN_TOKEN must be at least 32 characters");
  process.exit(2);
}

/**
 * /api/catalog is the shadow-testing demo: service1-mirror plays a canary whose version and one
 * price changed; `generatedAt` differs on every call, which the reference (a second call to the
 * primary) exposes as noise. Every other path gets the origins' usual echo.
 * @param {string} name
 * @param {{ version: string, price: number }} catalog
 * @returns {(req: import("./lib/origins.mjs").SeenRequest, res: import("node:http").ServerResponse) => void}
 */
function demoAnswers(name, catalog) {
  return (req, res) => {
    const body = req.url.startsWith("/api/catalog")
      ? {
          version: catalog.version,
          generatedAt: new Date().toISOString(),
          owner: { team: "storefront", email: "storefront-oncall@example.com" },
          items: [
            { id: 1, name: "kettle", price: 39 },
            { id: 2, name: "teapot", price: catalog.price },
          ],
        }
      : { servedBy: name, method: req.method, url: req.url, bytes: req.body.length, sha256: req.sha256 };
    res.writeHead(200, { "content-type": "application/json", "x-served-by": name });
    res.end(JSON.stringify(body));
  };
}

const secondary = await startCopySink({ name: "mimir-secondary", port: base + 3, log: true });

/**
 * `POST /demo/secondary-outage?seconds=N` (through the worker: unmatched, so the primary answers
 * it) takes mimir-secondary down for N seconds, 1 to 600: remote-write copies sent meanwhile are
 * spooled and redelivered once it is back.
 * @param {import("./lib/origins.mjs").SeenRequest} req
 * @param {import("node:http").ServerResponse} res
 * @returns {boolean} whether it was that request
 */
function outageSwitch(req, res) {
  const url = new URL(req.url, "http://demo");
  if (req.method !== "POST" || url.pathname !== "/demo/secondary-outage") return false;
  const seconds = Math.min(600, Math.max(1, Number(url.searchParams.get("seconds")) || 20));
  void secondary.down().then(() => setTimeout(() => void secondary.up(), seconds * 1000));
  console.log(`[mimir-secondary] down for ${seconds} s: remote-write copies are spooled meanwhile`);
  res.writeHead(202, { "content-type": "application/json" });
  res.end(JSON.stringify({ secondary: "down", seconds }));
  return true;
}

const primaryAnswers = demoAnswers("primary", { version: "2026.11", price: 25 });
const primary = await startOrigin({
  name: "primary",
  port: base,
  log: true,
  respond: (req, res) => {
    if (!outageSwitch(req, res)) primaryAnswers(req, res);
  },
});
const mirror1 = await startOrigin({
  name: "service1-mirror",
  port: base + 1,
  log: true,
  respond: demoAnswers("service1-mirror", { version: "2026.12-rc1", price: 27 }),
});
const mirror2 = await startOrigin({ name: "service2-mirror", port: base + 2, log: true });

// The demo file names the default ports; follow DEMO_BASE_PORT when it moves them.
const demo = JSON.parse(readFileSync(join(ROOT, "demo/policies.json"), "utf8"));
for (const cluster of Object.values(demo.clusters)) {
  const port = Number(new URL(cluster.origin).port);
  cluster.origin = `http://127.0.0.1:${port - 8081 + base}`;
}
const demoFile = join(mkdtempSync(join(tmpdir(), "edge-mirror-")), "demo-policies.json");
writeFileSync(demoFile, JSON.stringify(demo, null, 2));
// Seeded with the policy CLI, as a user would: same validation, same local KV that wrangler dev
// reads. Its stderr is passed through: it holds nothing but the CLI's own errors.
const seeded = spawnSync(
  process.execPath,
  ["--import", "tsx", join(ROOT, "scripts/policy.ts"), "apply", demoFile, "--local", "--prune", ...persistTo],
  {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  },
);
if (seeded.status !== 0) {
  console.error("could not seed the demo policies into local KV");
  process.exit(1);
}

const dev = spawn(
  process.execPath,
  [
    wrangler,
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(workerPort),
    "--var",
    `PRIMARY_ORIGIN:${primary.url}`,
    "--var",
    "POLICY_CACHE_TTL_MS:1000",
    // Captures are written a second after they are made, so that an export right after a curl finds them.
    "--var",
    "CAPTURE_FLUSH_MS:1000",
    "--var",
    `ADMIN_TOKEN:${adminToken}`,
    "--show-interactive-dev-session=false",
    ...persistTo,
  ],
  { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
);

let announced = false;
dev.stdout.on("data", (chunk) => {
  const text = chunk.toString();
  for (const line of text.split("\n")) {
    if (line.includes("edge-mirror.mirror")) console.log(`[worker] ${line.trim()}`);
  }
  if (!announced && text.includes("Ready on")) {
    announced = true;
    const edge = `http://localhost:${workerPort}`;
    console.log(`
edge-mirror is running on ${edge}
  primary          ${primary.url}
  service1-mirror  ${mirror1.url}
  service2-mirror  ${mirror2.url}
  mimir-secondary  ${secondary.url}   (durable: a copy it misses is spooled and sent again)
Every origin prints one line per request below; mirrored copies show Host: localhost-shadow:${workerPort}.

Try (seed 002):
  curl ${edge}/service/1                                          # primary answers, service1-mirror gets a copy
  curl -H "x-mirror-cluster: service2-mirror" ${edge}/service/2   # copy to the cluster the header names
  curl -H "x-mirror-cluster: service2-mirror-non-existent" ${edge}/service/2   # unknown: not mirrored
Seed 000 (remote-write shadowed to a second cluster, durably):
  curl -X POST --data-binary @package.json ${edge}/api/v1/push
  curl -X POST "${edge}/demo/secondary-outage?seconds=20"   # take mimir-secondary down for 20 s,
  curl -X POST --data-binary @package.json ${edge}/api/v1/push   # push meanwhile: spooled, then redelivered
Shadow testing (service1-mirror answers /api/catalog with a new version and price):
  curl ${edge}/api/catalog
Capture and replay (every /api/catalog request is captured to local R2, with the primary's answer):
  npm run capture -- export --route catalog --out catalog.har
  npm run replay -- catalog.har --to ${mirror1.url} --compare --ignore-path '$.generatedAt' --report report.json
Dashboard (live counters and diffs):
  ${edge}/__mirror/dashboard      token: ${adminToken}
  curl -H "authorization: Bearer ${adminToken}" ${edge}/__mirror/api/stats
Policies live in local KV, seeded from demo/policies.json; change them with
  npm run policy -- list | diff FILE | apply FILE      (edits take effect within a second)
READY ${edge}
`);
  }
});

function stop() {
  dev.kill("SIGTERM");
  Promise.all([primary.close(), mirror1.close(), mirror2.close(), secondary.close()]).finally(() => process.exit(0));
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
dev.on("exit", (code) => {
  console.error(`wrangler dev exited (${code})`);
  Promise.all([primary.close(), mirror1.close(), mirror2.close(), secondary.close()]).finally(() =>
    process.exit(code ?? 1),
  );
});

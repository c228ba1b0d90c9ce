import { randomBytes } from "node:crypto";
import { Agent, request } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { newestWorkerdPid, peakMemoryMiB, resetPeakMemoryMiB } from "../../scripts/lib/proc.mjs";
import { writeBetweenMarkers } from "../../scripts/lib/report.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { DEFAULT_MEMORY_BUDGET_BYTES } from "../../src/body/budget.js";
import { NOT_ALLOWED } from "../../src/mirror/plan.js";
import { adminStats, exchange, mirrorOutcomes, sha256, until } from "../e2e/helpers.ts";

/**
 * Hostile clients beside an audit mirror. Three routes share one worker: `pay`, copied to an audit
 * mirror; `echo`, compared with a canary and a reference; `upload`, copied to a mirror that takes
 * 4 s to answer. The clients try everything the second security review found: paths that spell
 * `/pay` with escapes or in capitals, POSTs that ask for a WebSocket upgrade, markers a mirror
 * received sent back on other requests, junk `x-mirror-cluster` names, a JSON key of 2.5 MiB, and
 * eight concurrent 30 MiB uploads. The audit mirror must receive one copy — method, path and body
 * byte for byte — of every request the `pay` route claims; every client must get the primary's
 * answer to exactly what it sent; the live counters must count every request, whatever a flush
 * beside them held; and workerd's peak memory must stay near the isolate's budget for copies.
 * Counts are asserted; latencies are not.
 */
const SOAK = process.env.EDGE_MIRROR_SOAK === "1";
const REQUESTS = Number(process.env.FAULT_REQUESTS ?? (SOAK ? 1000 : 200));
const CONCURRENCY = 16;
const MiB = 1024 * 1024;
const UPLOADS = 8;
const UPLOAD_BYTES = 30 * MiB;
const HUGE_KEYS = 4;
const HUGE_KEY_BYTES = 2.5 * MiB;
const BUDGET_MIB = DEFAULT_MEMORY_BUDGET_BYTES / MiB;
const ADMIN_TOKEN = randomBytes(32).toString("hex");

type Origin = Awaited<ReturnType<typeof startOrigin>>;
type Worker = Awaited<ReturnType<typeof startWorker>>;

/** How the clients try to get a request past the audit copy. */
const KINDS = [
  "plain",
  "encoded path",
  "upper-case path",
  "POST asking to upgrade",
  "GET asking to upgrade without a key",
  "junk mirror name",
  "replayed marker",
] as const;
type Kind = (typeof KINDS)[number];

/** The path spellings an origin routes as `/pay/…`. */
const ENCODED = ["/%70ay/transfer", "/pay/%74ransfer", "/p%61y/t?x=%31", "/%70%61%79/a%2Fb"];

interface Sent {
  kind: Kind;
  method: string;
  /** The path and query as the client sent them, and as the primary and the copy must get them. */
  path: string;
  sha256: string;
}

interface Tally {
  sent: number;
  intact: number;
}

const EMPTY = sha256(new Uint8Array(0));

let primary: Origin;
let audit: Origin;
let canary: Origin;
let replica: Origin;
let slow: Origin;
let worker: Worker;
const logs: string[] = [];
const byKind = new Map<Kind | "huge JSON key" | "30 MiB upload", Tally>();
const figures: string[] = [];

function count(kind: Kind | "huge JSON key" | "30 MiB upload", intact: boolean): void {
  const tally = byKind.get(kind) ?? { sent: 0, intact: 0 };
  tally.sent++;
  if (intact) tally.intact++;
  byKind.set(kind, tally);
}

/** Echoes the body with the type it came with: the compared route's primary, canary and reference. */
function echo(name: string) {
  return (seen: { body: Buffer; headers: Record<string, unknown> }, res: import("node:http").ServerResponse) => {
    res.writeHead(200, {
      "content-type": String(seen.headers["content-type"] ?? "application/octet-stream"),
      "x-served-by": name,
    });
    res.end(seen.body);
  };
}

beforeAll(async () => {
  primary = await startOrigin({
    name: "primary",
    record: false,
    respond: (seen, res) => {
      if (seen.url.startsWith("/echo")) return echo("primary")(seen, res);
      res.writeHead(200, { "content-type": "application/json", "x-served-by": "primary" });
      res.end(JSON.stringify({ method: seen.method, url: seen.url, sha256: seen.sha256 }));
    },
  });
  audit = await startOrigin({ name: "audit" });
  canary = await startOrigin({ name: "canary", record: false, respond: echo("canary") });
  replica = await startOrigin({ name: "replica", record: false, respond: echo("replica") });
  slow = await startOrigin({ name: "slow", record: false });
  slow.setDelay(4000);
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    direct: true,
    vars: {
      PRIMARY_ORIGIN: primary.url,
      POLICY_CACHE_TTL_MS: "60000",
      STATS_FLUSH_MS: "1000",
      ADMIN_TOKEN,
    },
    onLog: (line) => logs.push(line),
    policies: policyEntries({
      clusters: {
        audit: { origin: audit.url },
        canary: { origin: canary.url },
        replica: { origin: replica.url },
        slow: { origin: slow.url },
      },
      routes: [
        {
          id: "pay",
          match: { path: { type: "PathPrefix", value: "/pay", ignoreCase: true } },
          mirrors: [{ cluster: "audit", timeoutMs: 20_000 }],
          mirrorFromHeader: { header: "x-mirror-cluster", allow: ["canary"] },
          maxMirrorBodyBytes: MiB,
        },
        {
          id: "echo",
          match: { path: { type: "PathPrefix", value: "/echo" } },
          mirrors: [{ cluster: "canary", compare: { reference: { cluster: "replica" }, maxBodyBytes: 4 * MiB } }],
          maxMirrorBodyBytes: 4 * MiB,
        },
        {
          id: "upload",
          match: { path: { type: "PathPrefix", value: "/upload" } },
          mirrors: [{ cluster: "slow", timeoutMs: 20_000 }],
          maxMirrorBodyBytes: 32 * MiB,
        },
      ],
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary, audit, canary, replica, slow].map((o) => o?.close()));
  const table = [
    `Last run: ${new Date().toISOString().slice(0, 10)}, ${REQUESTS} requests to \`pay\`, ${CONCURRENCY} concurrent, with ${HUGE_KEYS} huge-key requests and ${UPLOADS} uploads beside them.`,
    "",
    "| what the client tried | requests | answers intact |",
    "|---|---|---|",
    ...[...byKind].map(([kind, t]) => `| ${kind} | ${t.sent} | ${t.intact} |`),
    "",
    ...figures.map((f) => `- ${f}`),
  ].join("\n");
  console.info(`\n${table}\n`);
  if (process.env.FAULTS_REPORT) writeBetweenMarkers(process.env.FAULTS_REPORT, "hostile", table);
});

/** A marker the audit mirror received, to send back on another request. */
function capturedMarker(): string | undefined {
  for (let i = audit.requests.length - 1; i >= 0; i--) {
    const marker = audit.requests[i]?.headers["x-edge-mirror"];
    if (typeof marker === "string" && marker.includes(";sig=")) return marker;
  }
  return undefined;
}

/** One request the `pay` route claims, made the way `kind` tries to dodge its copy. */
function payRequest(i: number, kind: Kind): { sent: Sent; headers: Record<string, string>; body: Buffer | undefined } {
  const body = randomBytes(Math.floor(64 * 1024 * Math.random() ** 2));
  const headers: Record<string, string> = { "content-type": "application/octet-stream" };
  let method = "POST";
  let path = `/pay/transfer?n=${i}`;
  switch (kind) {
    case "encoded path":
      path = ENCODED[i % ENCODED.length] as string;
      break;
    case "upper-case path":
      path = `/PAY/Transfer?n=${i}`;
      break;
    case "POST asking to upgrade":
      Object.assign(headers, {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      });
      break;
    case "GET asking to upgrade without a key":
      method = "GET";
      Object.assign(headers, { upgrade: "websocket", connection: "Upgrade" });
      break;
    case "junk mirror name":
      headers["x-mirror-cluster"] = `junk-${randomBytes(6).toString("hex")}`;
      break;
    case "replayed marker": {
      const marker = capturedMarker();
      if (marker) headers["x-edge-mirror"] = marker;
      break;
    }
  }
  const sent = { kind, method, path, sha256: method === "GET" ? EMPTY : sha256(body) };
  return { sent, headers, body: method === "GET" ? undefined : body };
}

/**
 * One request over `agent` with the headers given as they are: `fetch` refuses to send `Upgrade`
 * and `Connection`, which are what some of these clients try.
 */
function send(
  agent: Agent,
  url: string,
  method: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method,
      agent,
      headers: body ? { ...headers, "content-length": String(body.length) } : headers,
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The `pay` requests, CONCURRENCY at a time; each answer checked against what was sent. */
async function payLoad(base: string): Promise<Sent[]> {
  const claimed: Sent[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      while (next < REQUESTS) {
        const i = next++;
        const { sent, headers, body } = payRequest(i, KINDS[i % KINDS.length] as Kind);
        claimed.push(sent);
        try {
          const res = await send(agent, base + sent.path, sent.method, headers, body);
          const answer = JSON.parse(res.body.toString()) as { method?: string; url?: string; sha256?: string };
          count(
            sent.kind,
            res.status === 200 &&
              answer.method === sent.method &&
              answer.url === sent.path &&
              answer.sha256 === sent.sha256,
          );
        } catch {
          count(sent.kind, false);
        }
      }
      agent.destroy();
    }),
  );
  return claimed;
}

/** JSON bodies whose one key is 2.5 MiB, to the compared route whose primary echoes them, one at a time. */
async function hugeKeyLoad(base: string): Promise<void> {
  for (let i = 0; i < HUGE_KEYS; i++) {
    const body = Buffer.from(JSON.stringify({ [`k${"x".repeat(HUGE_KEY_BYTES)}${i}`]: i }));
    try {
      const res = await fetch(`${base}/echo/items`, {
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
      });
      const got = new Uint8Array(await res.arrayBuffer());
      count("huge JSON key", res.status === 200 && sha256(got) === sha256(body));
    } catch {
      count("huge JSON key", false);
    }
  }
}

/** Eight 30 MiB uploads at once, with their lengths declared, to the route whose mirror answers in 4 s. */
async function uploadLoad(base: string): Promise<void> {
  await Promise.all(
    Array.from({ length: UPLOADS }, async (_, i) => {
      const body = randomBytes(UPLOAD_BYTES);
      const got = await exchange(new Agent({ keepAlive: false }), `${base}/upload/${i}`, "POST", body);
      let answer: { sha256?: string } = {};
      try {
        answer = JSON.parse(got.body?.toString() ?? "{}");
      } catch {
        // An answer that is no JSON is an altered one.
      }
      count("30 MiB upload", got.status === 200 && answer.sha256 === sha256(body));
    }),
  );
}

interface StatsRoute {
  route: string;
  requests: number;
  mirrors: Array<{ mirror: string; sent: number; skipped: Record<string, number>; compare?: Record<string, number> }>;
}

async function stats(): Promise<StatsRoute[]> {
  const { stats } = await adminStats<{ routes: StatsRoute[] }>(worker.url, ADMIN_TOKEN, 15);
  return stats.routes;
}

const copyKey = (c: { method: string; path: string; sha256: string }) => `${c.method} ${c.path} ${c.sha256}`;

describe("hostile clients beside an audit mirror", () => {
  it("every request the pay route claims reaches the audit mirror, and nothing reaches a client altered", async () => {
    const base = worker.directUrl as string;
    const pid = newestWorkerdPid();
    const rssBefore = resetPeakMemoryMiB(pid);
    const [claimed] = await Promise.all([payLoad(base), hugeKeyLoad(base), uploadLoad(base)]);
    const peakGrowth = peakMemoryMiB(pid) - rssBefore;

    // What the clients got: the primary's answer to exactly what they sent.
    for (const [kind, tally] of byKind) expect(tally.intact, `${kind}: answers intact`).toBe(tally.sent);

    // What the audit mirror got: one copy of every claimed request, method, path and body as sent.
    await until(() => audit.count >= claimed.length, 30_000);
    const received = audit.requests.map((r) => copyKey({ method: r.method, path: r.url, sha256: r.sha256 })).sort();
    expect(received).toEqual(claimed.map(copyKey).sort());
    for (const r of audit.requests) expect(r.headers.upgrade).toBeUndefined();

    // What the counters say: every request of every route, beside a flush that held a 2.5 MiB key.
    // A copy's outcome is counted when its answer is in, which may be a flush after its request's.
    const junk = claimed.filter((c) => c.kind === "junk mirror name").length;
    let routes: StatsRoute[] = [];
    await until(async () => {
      routes = await stats();
      const of = (id: string) => routes.find((r) => r.route === id)?.requests ?? 0;
      const mirrors = routes.find((r) => r.route === "pay")?.mirrors;
      return (
        of("pay") === claimed.length &&
        of("echo") === HUGE_KEYS &&
        of("upload") === UPLOADS &&
        mirrors?.find((m) => m.mirror === "audit")?.sent === claimed.length &&
        mirrors?.find((m) => m.mirror === NOT_ALLOWED)?.skipped.cluster_not_allowed === junk
      );
    }, 20_000);
    const pay = routes.find((r) => r.route === "pay");
    expect(pay?.requests).toBe(claimed.length);
    expect(routes.find((r) => r.route === "echo")?.requests).toBe(HUGE_KEYS);
    expect(routes.find((r) => r.route === "upload")?.requests).toBe(UPLOADS);
    const auditRow = pay?.mirrors.find((m) => m.mirror === "audit");
    expect(auditRow?.sent).toBe(claimed.length);
    expect(pay?.mirrors.find((m) => m.mirror === NOT_ALLOWED)?.skipped.cluster_not_allowed).toBe(junk);
    expect(pay?.mirrors.map((m) => m.mirror).sort()).toEqual(["audit", NOT_ALLOWED].sort());

    // The uploads: each copied whole or skipped for the budget, said so; memory near the budget.
    await until(() => mirrorOutcomes(logs).filter((o) => o.route === "upload").length >= UPLOADS, 30_000);
    const uploadOutcomes = mirrorOutcomes(logs).filter((o) => o.route === "upload");
    expect(uploadOutcomes).toHaveLength(UPLOADS);
    for (const o of uploadOutcomes)
      expect(o.kind === "sent" || o.reason === "memory_budget", JSON.stringify(o)).toBe(true);
    // The uploads alone, without the budget, grew workerd by 500–660 MiB. With it the copies hold
    // at most the budget; the rest is the tee's share, the relays and, for the huge keys, the JSON a
    // comparison parses (decoded and parsed, about twice its bytes, while it runs) and what the
    // collector has not yet reclaimed — reported below, and bounded here well short of the old peak.
    expect(peakGrowth).toBeLessThan(4 * BUDGET_MIB);
    expect(logs.filter((l) => /Uncaught|unhandled/i.test(l))).toEqual([]);

    const sentUploads = uploadOutcomes.filter((o) => o.kind === "sent").length;
    const compared = mirrorOutcomes(logs).filter((o) => o.route === "echo");
    figures.push(
      `${claimed.length} requests claimed by \`pay\`, ${audit.count} copies at the audit mirror, ${received.length === claimed.length ? "every one" : "not all"} with its method, path and body as sent; ${junk} junk names counted under \`${NOT_ALLOWED}\`.`,
      `${HUGE_KEYS} JSON bodies with a ${HUGE_KEY_BYTES / MiB} MiB key through the compared route: every answer intact, comparisons ${counts(compared.map((o) => o.compare?.verdict ?? o.kind))}, and every request of the three routes counted.`,
      `${UPLOADS} concurrent ${UPLOAD_BYTES / MiB} MiB uploads beside them: every answer intact, ${sentUploads} copied, ${UPLOADS - sentUploads} skipped as \`memory_budget\`; workerd's peak memory grew by ${peakGrowth.toFixed(0)} MiB (budget ${BUDGET_MIB} MiB).`,
    );
  });
});

function counts(values: readonly string[]): string {
  const tally = new Map<string, number>();
  for (const v of values) tally.set(v, (tally.get(v) ?? 0) + 1);
  return [...tally].map(([v, n]) => `${v}: ${n}`).join(", ") || "none";
}

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { main as replay } from "../../scripts/replay/cli.js";
import { outgoing, parseHeaderChange, parseSpeed, plannedOffsets } from "../../scripts/replay/plan.js";
import { type Clock, dispatch } from "../../scripts/replay/run.js";
import { buildRecord, type CaptureRecord, recordLine } from "../../src/capture/record.js";

/** The replayer on its own, against real origins, with capture files written here. */
const dir = mkdtempSync(join(tmpdir(), "edge-mirror-replay-"));
let origin: Awaited<ReturnType<typeof startOrigin>>;

beforeAll(async () => {
  origin = await startOrigin({
    name: "candidate",
    respond: (req, res) => {
      const status = req.url.startsWith("/fail") ? 503 : 200;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ path: req.url, price: 27, ok: true }));
    },
  });
});

afterAll(async () => {
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

const T0 = Date.UTC(2026, 10, 25, 10);
const RULES = { headers: [], jsonPaths: [], secrets: true };

function record(i: number, startedAt: number, overrides: { path?: string; body?: Uint8Array } = {}): CaptureRecord {
  const path = overrides.path ?? `/item/${i}`;
  return buildRecord({
    id: `r${i}`,
    route: "r",
    startedAt,
    latencyMs: 5 + (i % 10),
    method: overrides.body ? "POST" : "GET",
    url: `https://api.example.com${path}`,
    requestHeaders: [
      ["accept", "application/json"],
      ["x-n", String(i)],
      ["x-n", "again"],
      ["authorization", "Bearer original"],
    ],
    requestBody: overrides.body ? { bytes: overrides.body, truncated: false, size: overrides.body.byteLength } : null,
    response: {
      status: 200,
      headers: new Headers({ "content-type": "application/json" }),
      body: {
        bytes: new TextEncoder().encode(JSON.stringify({ path, price: 25, ok: true })),
        truncated: false,
        size: null,
      },
    },
    rules: RULES,
  });
}

function ndjson(name: string, records: CaptureRecord[], gzip = false): string {
  const file = join(dir, name);
  const text = records.map((r) => `${recordLine(r)}\n`).join("");
  writeFileSync(file, gzip ? gzipSync(text) : text);
  return file;
}

async function run(args: string[], io: { tty?: boolean } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  let drawn = "";
  const code = await replay(args, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    progress: { isTTY: io.tty ?? false, write: (t) => (drawn += t) },
  });
  return { code, out: out.join("\n"), err: err.join("\n"), drawn };
}

describe("the replay plan", () => {
  it("keeps the recorded gaps divided by the speed", () => {
    expect(plannedOffsets([T0, T0 + 1000, T0 + 6000], 2)).toEqual([0, 500, 3000]);
    expect(plannedOffsets([T0, T0 + 1000], 10)).toEqual([0, 100]);
    expect(plannedOffsets([T0, T0 + 1000], "max")).toBeUndefined();
    expect([parseSpeed("1"), parseSpeed("0.5"), parseSpeed("max"), parseSpeed("0"), parseSpeed("fast")]).toEqual([
      1,
      0.5,
      "max",
      undefined,
      undefined,
    ]);
  });

  it("sends the recorded headers in order but the redacted and the connection's, then --header's", () => {
    const changes = [parseHeaderChange("Authorization: Bearer test"), parseHeaderChange("accept:")];
    expect(changes).toEqual([
      { name: "authorization", value: "Bearer test" },
      { name: "accept", value: undefined },
    ]);
    const rec = record(1, T0, { path: "/a%2Fb?q=%7E&x" });
    rec.request.headers.push(["host", "api.example.com"], ["x-edge-mirror-hops", "1"], ["content-length", "3"]);
    const out = outgoing(rec, changes as Array<{ name: string; value: string | undefined }>);
    expect(out).toEqual({
      ok: true,
      request: {
        method: "GET",
        path: "/a%2Fb?q=%7E&x",
        headers: [
          ["x-n", "1"],
          ["x-n", "again"],
          ["authorization", "Bearer test"],
        ],
        body: null,
      },
    });
    expect(parseHeaderChange("no colon")).toMatch(/write it as 'name: value'/);
    expect(parseHeaderChange("host: x")).toMatch(/set by the connection/);
  });

  it("does not replay a request whose body capture cut or did not keep", () => {
    const cut = record(1, T0, { body: new Uint8Array(10) });
    (cut.request.body as { truncated: boolean }).truncated = true;
    expect(outgoing(cut, [])).toEqual({ ok: false, skip: "body cut at maxBodyBytes" });
  });

  it("sends each request when it is due, on the replayer's own clock: a 6 s capture at speed 2 takes 3 s", async () => {
    let now = 0;
    const clock: Clock = {
      now: () => now,
      sleep: async (ms) => {
        now += ms;
      },
    };
    const starts = Array.from({ length: 61 }, (_, i) => T0 + i * 100);
    const offsets = plannedOffsets(starts, 2) as number[];
    const result = await dispatch({ count: 61, offsets, concurrency: 4, clock, send: async () => {} });
    expect(result.sent.map((s) => s.sent)).toEqual(offsets);
    expect(result.durationMs).toBe(3000);
  });
});

describe("npm run replay", () => {
  it("replays a 6 s capture at speed 2 in 3 s ± 10 %, by the send times it planned and kept", async () => {
    const file = ndjson(
      "six-seconds.ndjson",
      Array.from({ length: 31 }, (_, i) => record(i, T0 + i * 200)),
    );
    const report = join(dir, "six-seconds.json");
    const before = origin.count;
    const started = performance.now();
    const result = await run([file, "--to", origin.url, "--speed", "2", "--report", report]);
    const wallMs = performance.now() - started;
    expect(result.code).toBe(0);
    expect(origin.count - before).toBe(31);
    const { schedule } = JSON.parse(readFileSync(report, "utf8"));
    expect(schedule.plannedSpanMs).toBe(3000);
    expect(schedule.sentSpanMs).toBeGreaterThanOrEqual(2700);
    expect(schedule.sentSpanMs).toBeLessThanOrEqual(3300);
    // Wall-clock time is the soak's to judge (CI runs it), where the machine is not shared.
    if (process.env.EDGE_MIRROR_SOAK) {
      expect(wallMs).toBeGreaterThanOrEqual(2700);
      expect(wallMs).toBeLessThanOrEqual(3300);
    }
  });

  it("reads gzipped NDJSON and HAR alike, sending the --header value and not the redacted one", async () => {
    const body = new TextEncoder().encode('{"qty":2}');
    const file = ndjson("gz.ndjson.gz", [record(1, T0, { path: "/posted", body })], true);
    const before = origin.requests.length;
    const result = await run([file, "--to", origin.url, "--header", "authorization: Bearer test-token"]);
    expect(result.code).toBe(0);
    const seen = origin.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: "POST", url: "/posted" });
    expect(seen[0]?.body.toString()).toBe('{"qty":2}');
    expect(seen[0]?.headers.authorization).toBe("Bearer test-token");
    expect(seen[0]?.headers["x-n"]).toBe("1, again");
    expect(result.out).not.toContain("test-token");
  });

  it("compares with the recorded answers: the changed field with its count, and the status classes", async () => {
    const records = [
      ...Array.from({ length: 8 }, (_, i) => record(i, T0 + i)),
      record(8, T0 + 8, { path: "/fail/1" }),
      record(9, T0 + 9, { path: "/fail/2" }),
    ];
    const report = join(dir, "compared.json");
    const result = await run([
      ndjson("compared.ndjson", records),
      "--to",
      origin.url,
      "--speed",
      "max",
      "--compare",
      "--report",
      report,
    ]);
    expect(result.code).toBe(0);
    const r = JSON.parse(readFileSync(report, "utf8"));
    expect(r.compare).toMatchObject({ compared: 10, match: 0, differ: 10, error: 0, diffRate: 1 });
    expect(r.compare.fields.map((f: { field: string; count: number }) => [f.field, f.count])).toEqual([
      ["$.price", 10],
      ["status", 2],
    ]);
    expect(r.statusClasses).toEqual({
      recorded: { "2xx": 10 },
      candidate: { "2xx": 8, "5xx": 2 },
      changes: { "2xx → 5xx": 2 },
      differingRate: 0.2,
    });
    expect(r.latencyMs.recorded).toMatchObject({ count: 10, p50: 9, max: 14 });
    const status = await run([
      ndjson("compared.ndjson", records),
      "--to",
      origin.url,
      "--speed",
      "max",
      "--fail-on-status-rate",
      "0.1",
    ]);
    expect(status.code).toBe(1);
    expect(status.out).toContain("FAIL status class changed for 20.0 % > 10.0 %");
  });

  it("exits 1 when a threshold is given and nothing could be compared", async () => {
    const unanswered = record(1, T0);
    unanswered.response = null;
    unanswered.error = "primary_timeout";
    const result = await run([
      ndjson("unanswered.ndjson", [unanswered]),
      "--to",
      origin.url,
      "--compare",
      "--fail-on-diff-rate",
      "0.5",
    ]);
    expect(result.code).toBe(1);
    expect(result.out).toContain("FAIL --fail-on-diff-rate: nothing was compared");
  });

  it("draws a progress bar on a terminal only", async () => {
    const file = ndjson("bar.ndjson", [record(1, T0), record(2, T0 + 1)]);
    const quiet = await run([file, "--to", origin.url, "--speed", "max"]);
    expect(quiet.drawn).toBe("");
    const tty = await run([file, "--to", origin.url, "--speed", "max"], { tty: true });
    expect(tty.drawn).toContain("\r[##############################] 2/2");
  });

  it.each([
    [[], "give the file to replay"],
    [["x.ndjson"], "--to <origin> is required"],
    [["x.ndjson", "--to", "http://a.test/path"], "--to must be an origin only"],
    [["x.ndjson", "--to", "http://a.test", "--speed", "fast"], '--speed "fast"'],
    [["x.ndjson", "--to", "http://a.test", "--concurrency", "0"], "--concurrency must be an integer from 1 to 1000"],
    [["x.ndjson", "--to", "http://a.test", "--header", "bad"], "write it as 'name: value'"],
    [["x.ndjson", "--to", "http://a.test", "--ignore-path", "$.a"], "--ignore-path goes with --compare"],
    [["x.ndjson", "--to", "http://a.test", "--compare", "--ignore-path", "a.b"], '--ignore-path "a.b"'],
    [
      ["x.ndjson", "--to", "http://a.test", "--fail-on-status-rate", "2"],
      "--fail-on-status-rate must be a number from 0 to 1",
    ],
    [["x.ndjson", "--to", "http://a.test", "--bogus"], "Unknown option '--bogus'"],
  ])("exits 2 on a usage error: %j", async (args, message) => {
    const result = await run(args);
    expect(result.code).toBe(2);
    expect(result.err).toContain(message);
    expect(result.err).toContain("usage: npm run replay");
  });

  it("exits 2 for a file it cannot read at all", async () => {
    const missing = await run([join(dir, "missing.ndjson"), "--to", origin.url]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/cannot read .*missing\.ndjson/);
    writeFileSync(join(dir, "broken.har"), '{"log":{"entries":[');
    const broken = await run([join(dir, "broken.har"), "--to", origin.url]);
    expect(broken.code).toBe(2);
    expect(broken.err).toMatch(/broken\.har is not a HAR file/);
  });
});

import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryBudget } from "../body/budget.js";
import { CaptureBuffer, LOST_LOG_MS, lineBytes, MAX_RECORD_AGE_MS } from "./batch.js";
import { type CaptureBucketReader, type ExportQuery, emptySummary, exportRecords, exportStream } from "./export.js";
import { CAPTURES_PREFIX, parseObjectKey } from "./keys.js";
import { gunzipped, ndjsonLines } from "./lines.js";
import { r2Writer } from "./r2.js";
import { buildRecord, recordLine } from "./record.js";

const bucket = env.MIRROR_CAPTURES;
const T0 = Date.UTC(2026, 10, 25, 10, 0, 0, 0);

async function clearBucket() {
  for (;;) {
    const page = await bucket.list({ prefix: CAPTURES_PREFIX });
    if (page.objects.length === 0) return;
    await bucket.delete(page.objects.map((o) => o.key));
  }
}

async function storedKeys(): Promise<string[]> {
  return (await bucket.list({ prefix: CAPTURES_PREFIX })).objects.map((o) => o.key);
}

async function storedLines(key: string): Promise<string[]> {
  const object = await bucket.get(key);
  const lines: string[] = [];
  for await (const line of ndjsonLines(await gunzipped((object as R2ObjectBody).body))) {
    if ("text" in line) lines.push(line.text);
  }
  return lines;
}

function record(route: string, startedAt: number, n = 0) {
  return buildRecord({
    id: `req-${route}-${n}`,
    route,
    startedAt,
    latencyMs: 3,
    method: "GET",
    url: `https://api.example.com/${route}?n=${n}`,
    requestHeaders: [["accept", "application/json"]],
    requestBody: null,
    response: {
      status: 200,
      headers: new Headers({ "content-type": "application/json" }),
      body: { bytes: new TextEncoder().encode(`{"n":${n}}`), truncated: false, size: 7 },
    },
    rules: { headers: [], jsonPaths: [], secrets: true },
  });
}

/** Runs `work` with a waitUntil whose promises are all awaited at the end, as a request's are. */
async function inRequest(work: (waitUntil: (p: Promise<unknown>) => void) => void): Promise<void> {
  const waiting: Promise<unknown>[] = [];
  work((p) => waiting.push(p));
  while (waiting.length > 0) await waiting.shift();
}

beforeEach(clearBucket);
afterEach(() => vi.useRealTimers());

describe("capture batches", () => {
  it("write one gzipped NDJSON object per route per batch, never one per record", async () => {
    const budget = new MemoryBudget(1 << 20);
    const buffer = new CaptureBuffer(r2Writer(bucket), budget, { flushMs: 0, now: () => T0 + 1000 });
    await inRequest((waitUntil) => {
      for (let i = 0; i < 30; i++) {
        const route = i % 3 === 0 ? "b" : "a";
        expect(buffer.add(route, T0 + i, recordLine(record(route, T0 + i, i)), waitUntil)).toBe(true);
      }
    });
    const keys = await storedKeys();
    expect(keys).toHaveLength(2);
    const byRoute = new Map(keys.map((k) => [parseObjectKey(k)?.route, k]));
    const a = await storedLines(byRoute.get("a") as string);
    expect(a).toHaveLength(20);
    expect(parseObjectKey(byRoute.get("a") as string)).toMatchObject({ firstStart: T0 + 1, lastStart: T0 + 29 });
    expect(JSON.parse(a[0] as string)).toEqual(record("a", T0 + 1, 1));
    expect(await storedLines(byRoute.get("b") as string)).toHaveLength(10);
    // The batch's bytes were given back once written.
    expect(budget.held).toBe(0);
  });

  it("write a batch at once when it is full, and take every line from the budget until written", async () => {
    const line = recordLine(record("a", T0));
    const budget = new MemoryBudget(1 << 20);
    const buffer = new CaptureBuffer(r2Writer(bucket), budget, {
      flushMs: 60_000,
      maxBatchChars: line.length * 4,
      now: () => T0,
    });
    const waiting: Promise<unknown>[] = [];
    for (let i = 0; i < 8; i++) buffer.add("a", T0 + i, recordLine(record("a", T0 + i, i)), (p) => waiting.push(p));
    // Four lines fill a batch: the first is written as the fifth arrives; the second waits for its timer.
    expect(budget.held).toBe(2 * 4 * lineBytes(line.length));
    await waiting[1];
    expect(await storedKeys()).toHaveLength(1);
  });

  it("drop what the budget cannot hold and say so, at most once a minute", async () => {
    const lines: string[] = [];
    let now = T0;
    const line = recordLine(record("a", T0));
    // Room for one line and for its gzipped object, not for a second line.
    const buffer = new CaptureBuffer(r2Writer(bucket), new MemoryBudget(lineBytes(line.length) + line.length), {
      flushMs: 0,
      log: (l) => lines.push(l),
      now: () => now,
    });
    await inRequest((waitUntil) => {
      expect(buffer.add("a", T0, line, waitUntil)).toBe(true);
      expect(buffer.add("a", T0, line, waitUntil)).toBe(false);
      expect(buffer.add("a", T0 - MAX_RECORD_AGE_MS - 1, line, waitUntil)).toBe(false);
    });
    expect(await storedKeys()).toHaveLength(1);
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { msg: "edge-mirror.capture_lost", records: 2, reasons: { memory_budget: 1, too_old: 1 } },
    ]);
    now += LOST_LOG_MS / 2;
    await inRequest((waitUntil) => {
      buffer.add("a", now, line, waitUntil);
      buffer.add("a", now, line, waitUntil);
    });
    expect(lines).toHaveLength(1);
    now += LOST_LOG_MS;
    await inRequest((waitUntil) => buffer.add("a", now, line, waitUntil));
    expect(JSON.parse(lines[1] as string)).toMatchObject({ records: 1, reasons: { memory_budget: 1 } });
  });

  it("count the records of a failed write as lost, and write the next batch", async () => {
    const lines: string[] = [];
    let fail = true;
    const flaky = {
      put: (key: string, value: Uint8Array, options: Parameters<typeof bucket.put>[2]) => {
        if (fail) return Promise.reject(new Error("R2 unavailable"));
        return bucket.put(key, value, options);
      },
    };
    const buffer = new CaptureBuffer(r2Writer(flaky), new MemoryBudget(1 << 20), {
      flushMs: 0,
      log: (l) => lines.push(l),
    });
    await inRequest((waitUntil) => {
      buffer.add("a", Date.now(), recordLine(record("a", Date.now())), waitUntil);
      buffer.add("b", Date.now(), recordLine(record("b", Date.now())), waitUntil);
    });
    expect(JSON.parse(lines[0] as string)).toEqual({
      msg: "edge-mirror.capture_lost",
      records: 2,
      reasons: { write_failed: 2 },
      error: "Error: R2 unavailable",
    });
    fail = false;
    await inRequest((waitUntil) => buffer.add("a", Date.now(), recordLine(record("a", Date.now())), waitUntil));
    expect(await storedKeys()).toHaveLength(1);
  });
});

async function writeObjects(objects: Array<{ route: string; starts: number[] }>) {
  const write = r2Writer(bucket);
  const hold = new MemoryBudget(1 << 30).hold();
  for (const { route, starts } of objects) {
    const lines = starts.map((start, i) => recordLine(record(route, start, i)));
    await write({ route, firstStart: Math.min(...starts), lastStart: Math.max(...starts), lines, chars: 0 }, hold);
  }
}

async function exported(query: Partial<ExportQuery>, reader: CaptureBucketReader = bucket) {
  const full: ExportQuery = { route: "a", from: T0, to: T0 + 3_600_000, limit: 1000, ...query };
  const summary = emptySummary(full);
  const starts: number[] = [];
  for await (const r of exportRecords(reader, full, summary)) starts.push(r.startedAt - T0);
  return { starts, summary };
}

describe("capture export", () => {
  it("reads a time range in start order across objects that overlap, and only that route", async () => {
    await writeObjects([
      { route: "a", starts: [T0 + 100, T0 + 5000, T0 + 300] },
      { route: "a", starts: [T0 + 200, T0 + 250] },
      { route: "a", starts: [T0 + 4000, T0 + 9000] },
      { route: "ab", starts: [T0 + 150] },
      { route: "a", starts: [T0 - 20 * 60_000] },
    ]);
    const all = await exported({});
    expect(all.starts).toEqual([100, 200, 250, 300, 4000, 5000, 9000]);
    expect(all.summary).toMatchObject({ records: 7, objects: 3, complete: true, invalid: [] });
    // A range inside an object: only its records; objects wholly outside are not read.
    const some = await exported({ from: T0 + 260, to: T0 + 4500 });
    expect(some.starts).toEqual([300, 4000]);
    expect(some.summary.objects).toBe(2);
  });

  it("stops at the limit and at the object cap, saying where the next page starts", async () => {
    await writeObjects([
      { route: "a", starts: [T0 + 100, T0 + 200] },
      { route: "a", starts: [T0 + 300, T0 + 400] },
      { route: "a", starts: [T0 + 500] },
    ]);
    const limited = await exported({ limit: 3 });
    expect(limited.starts).toEqual([100, 200, 300]);
    expect(limited.summary).toMatchObject({ complete: false, nextFrom: new Date(T0 + 400).toISOString() });
    const capped = await exported({ maxObjects: 2 });
    expect(capped.starts).toEqual([100, 200, 300, 400]);
    expect(capped.summary).toMatchObject({ complete: false, nextFrom: new Date(T0 + 500).toISOString() });
    const next = await exported({ from: T0 + 500 });
    expect(next.starts).toEqual([500]);
  });

  it("reports a stored line it cannot read, by object and line, and goes on", async () => {
    await writeObjects([{ route: "a", starts: [T0 + 100, T0 + 200] }]);
    const [key] = await storedKeys();
    const good = await storedLines(key as string);
    const { gzipLines } = await import("./r2.js");
    await bucket.put(key as string, await gzipLines([good[0] as string, '{"v":1,"broken', good[1] as string]));
    const read = await exported({});
    expect(read.starts).toEqual([100, 200]);
    expect(read.summary.invalid).toEqual([{ key, line: 2, error: expect.stringMatching(/^not JSON/) }]);
  });

  it("streams HAR that ends with what it holds, and NDJSON of the records as stored", async () => {
    await writeObjects([{ route: "a", starts: [T0 + 100, T0 + 200] }]);
    const query = { route: "a", from: T0, to: T0 + 1000, limit: 10 };
    const har = JSON.parse(await new Response(exportStream(bucket, query, "har")).text());
    expect(har.log.version).toBe("1.2");
    expect(har.log.entries.map((e: { request: { url: string } }) => e.request.url)).toEqual([
      "https://api.example.com/a?n=0",
      "https://api.example.com/a?n=1",
    ]);
    expect(har.log._edgeMirror).toMatchObject({ records: 2, complete: true });
    const ndjson = (await new Response(exportStream(bucket, query, "ndjson")).text()).trim().split("\n");
    expect(ndjson.map((l) => JSON.parse(l))).toEqual([record("a", T0 + 100, 0), record("a", T0 + 200, 1)]);
  });
});

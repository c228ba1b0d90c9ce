import { describe, expect, it } from "vitest";
import { parseRoute } from "../policy/index.js";
import { harEntry, recordFromHar } from "./har.js";
import { LOOKBACK_MS, listStartAfter, objectKey, parseObjectKey, parseStamp, stamp } from "./keys.js";
import { ndjsonLines } from "./lines.js";
import { gzipLines } from "./r2.js";
import { buildRecord, type CaptureRecord, parseRecord, type RecordParts } from "./record.js";
import { redactBody, redactHeaderPairs, redactUrl } from "./redact.js";
import { bodyBytes, bodyText } from "./text.js";

const RULES = { headers: [], jsonPaths: [], secrets: true };
const utf8 = new TextEncoder();
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("capture policy", () => {
  const route = (capture: unknown) => ({ id: "r", capture });

  it("fills in the defaults: 64 KiB bodies, the answer included, secrets redacted", () => {
    expect(parseRoute(route({})).capture).toEqual({
      maxBodyBytes: 65536,
      includeResponse: true,
      redact: { headers: [], jsonPaths: [], secrets: true },
    });
  });

  it("refuses a body cap over 1 MiB, percent with fraction, and unknown fields, naming each", () => {
    expect(() => parseRoute(route({ maxBodyBytes: 1048577 }))).toThrow(/capture\.maxBodyBytes: must be ≤ 1048576/);
    expect(() => parseRoute(route({ percent: 1, fraction: { numerator: 1 } }))).toThrow(
      /capture\.fraction: use either percent or fraction/,
    );
    expect(() => parseRoute(route({ redact: { paths: [] } }))).toThrow(/capture\.redact\.paths: unknown field/);
    expect(() => parseRoute(route({ redact: { jsonPaths: ["items"] } }))).toThrow(
      /capture\.redact\.jsonPaths\[0\]: must be a JSON path/,
    );
  });
});

describe("capture keys", () => {
  it("are dated by the earliest start, sort by time and read back", () => {
    const name = { route: "catalog", firstStart: Date.UTC(2026, 10, 25, 10, 15, 3, 123), isolate: "0a1b2c", seq: 7 };
    const key = objectKey({ ...name, lastStart: name.firstStart + 4000 });
    expect(key).toBe("captures/catalog/2026-11-25/10/20261125T101503123Z_20261125T101507123Z_0a1b2c-7.ndjson.gz");
    expect(parseObjectKey(key)).toEqual({ ...name, lastStart: name.firstStart + 4000 });
    expect(parseStamp(stamp(name.firstStart))).toBe(name.firstStart);
    // A later object sorts after, across an hour and a day.
    const later = objectKey({
      ...name,
      firstStart: Date.UTC(2026, 10, 26, 0, 0, 0, 0),
      lastStart: Date.UTC(2026, 10, 26),
    });
    expect([later, key].sort()).toEqual([key, later]);
    // A listing from a time starts LOOKBACK_MS before it, and before every key of that time.
    const after = listStartAfter("catalog", name.firstStart);
    expect(after < key).toBe(true);
    expect(after).toBe(`captures/catalog/2026-11-25/10/${stamp(name.firstStart - LOOKBACK_MS)}`);
  });

  it("refuse keys capture did not write", () => {
    expect(parseObjectKey("captures/catalog/2026-11-25/10/x.ndjson.gz")).toBeUndefined();
    // The date directory must be the first start's.
    expect(
      parseObjectKey("captures/catalog/2026-11-24/10/20261125T101503123Z_20261125T101507123Z_0a-1.ndjson.gz"),
    ).toBeUndefined();
    expect(parseStamp("20261345T101503123Z")).toBeUndefined();
  });
});

describe("body text", () => {
  it("keeps UTF-8 (a byte order mark too) as text and anything else as base64, byte for byte", () => {
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, 0x68, 0x69]);
    expect(bodyText(bom)).toEqual({ encoding: "utf8", text: "\ufeffhi" });
    expect(bodyBytes("utf8", "\ufeffhi")).toEqual(bom);
    const binary = new Uint8Array(70_000).map((_, i) => (i * 7919) % 256);
    const kept = bodyText(binary);
    expect(kept.encoding).toBe("base64");
    expect(bodyBytes(kept.encoding, kept.text)).toEqual(binary);
  });
});

describe("redaction", () => {
  it("hides credentials, the route's headers and secret-looking names, keeping the order", () => {
    const { pairs, redacted } = redactHeaderPairs(
      [
        ["Authorization", "Bearer abc"],
        ["x-api-key", "k"],
        ["x-tenant", "t1"],
        ["cookie", "s=1"],
        ["accept", "*/*"],
      ],
      { ...RULES, headers: ["X-Tenant"] },
    );
    expect(pairs).toEqual([
      ["authorization", "[redacted]"],
      ["x-api-key", "[redacted]"],
      ["x-tenant", "[redacted]"],
      ["cookie", "[redacted]"],
      ["accept", "*/*"],
    ]);
    expect(redacted).toEqual(["authorization", "x-api-key", "x-tenant", "cookie"]);
    // secrets: false keeps x-api-key but never the credentials.
    expect(
      redactHeaderPairs(
        [
          ["x-api-key", "k"],
          ["cookie", "c"],
        ],
        { ...RULES, secrets: false },
      ).pairs,
    ).toEqual([
      ["x-api-key", "k"],
      ["cookie", "[redacted]"],
    ]);
  });

  it("replaces secret query values and keeps every other byte of the URL", () => {
    expect(redactUrl("https://a.test/p?q=a%20b&access_token=xyz&x#f", RULES)).toEqual({
      url: "https://a.test/p?q=a%20b&access_token=%5Bredacted%5D&x#f",
      redacted: ["access_token"],
    });
    const plain = "https://a.test/p?q=%7e";
    expect(redactUrl(plain, RULES).url).toBe(plain);
    expect(redactUrl("https://a.test/?token=1", { ...RULES, secrets: false }).url).toBe("https://a.test/?token=1");
  });

  it("rewrites a JSON body only when something in it is hidden", () => {
    const spaced = utf8.encode('{ "a": 1,  "b": [1, 2] }');
    expect(redactBody(spaced, "application/json", false, RULES)).toEqual({ bytes: spaced, redacted: false });
    const secret = utf8.encode('{"user":"ann","password":"hunter2","card":{"number":"4111"}}');
    const kept = redactBody(secret, "application/json", false, { ...RULES, jsonPaths: ["$.card.number"] });
    expect("bytes" in kept && text(kept.bytes)).toBe(
      '{"user":"ann","password":"[redacted]","card":{"number":"[redacted]"}}',
    );
  });

  it("keeps no JSON it cannot search, and redacts form fields by name", () => {
    const cut = utf8.encode('{"password":"hun');
    expect(redactBody(cut, "application/json", true, RULES)).toEqual({
      omitted: "JSON cut at maxBodyBytes cannot be searched for secrets",
    });
    expect(redactBody(utf8.encode("{nope"), null, false, RULES)).toHaveProperty("omitted");
    // Binary that happens to start with "{" is no JSON: kept as it is, cut or not.
    const binary = new Uint8Array([0x7b, 0xff, 0xfe, 0x00, 0x41, 0x42, 0x43, 0x44]);
    expect(redactBody(binary, "application/octet-stream", true, RULES)).toEqual({ bytes: binary, redacted: false });
    // A JSON body cut inside a character is still known for JSON.
    expect(redactBody(utf8.encode('{"a":"é').subarray(0, 7), null, true, RULES)).toHaveProperty("omitted");
    // Without any JSON rule, JSON is kept as it is, cut or not.
    expect(redactBody(cut, "application/json", true, { ...RULES, secrets: false })).toEqual({
      bytes: cut,
      redacted: false,
    });
    const form = redactBody(
      utf8.encode("user=ann&pass%77ord=hunter2&x="),
      "application/x-www-form-urlencoded",
      false,
      RULES,
    );
    expect("bytes" in form && text(form.bytes)).toBe("user=ann&pass%77ord=%5Bredacted%5D&x=");
  });
});

function parts(overrides: Partial<RecordParts> = {}): RecordParts {
  return {
    id: "8e1f3a2b9c0d4e5f-AMS",
    route: "catalog",
    startedAt: Date.UTC(2026, 10, 25, 10, 0, 0, 5),
    latencyMs: 12,
    method: "POST",
    url: "https://api.example.com/api/catalog?page=2&token=t0k",
    requestHeaders: [
      ["content-type", "application/json"],
      ["authorization", "Bearer secret-value"],
    ],
    requestBody: { bytes: utf8.encode('{"name":"kettle","apiKey":"k-123"}'), truncated: false, size: 34 },
    response: {
      status: 201,
      headers: new Headers({ "content-type": "application/octet-stream", "set-cookie": "s=abc" }),
      body: { bytes: new Uint8Array([0xff, 0x00, 0x01]), truncated: true, size: null },
    },
    rules: RULES,
    ...overrides,
  };
}

describe("records", () => {
  it("hold the redacted request, the answer and the timings, and parse back", () => {
    const record = buildRecord(parts());
    expect(record).toEqual({
      v: 1,
      id: "8e1f3a2b9c0d4e5f-AMS",
      route: "catalog",
      startedAt: Date.UTC(2026, 10, 25, 10, 0, 0, 5),
      latencyMs: 12,
      request: {
        method: "POST",
        url: "https://api.example.com/api/catalog?page=2&token=%5Bredacted%5D",
        headers: [
          ["content-type", "application/json"],
          ["authorization", "[redacted]"],
        ],
        body: {
          size: 34,
          truncated: false,
          encoding: "utf8",
          text: '{"name":"kettle","apiKey":"[redacted]"}',
          redacted: true,
        },
        redacted: { headers: ["authorization"], query: ["token"] },
      },
      response: {
        status: 201,
        headers: [
          ["content-type", "application/octet-stream"],
          ["set-cookie", "[redacted]"],
        ],
        // Not JSON, so kept although cut; not UTF-8, so as base64.
        body: { size: null, truncated: true, encoding: "base64", text: "/wAB" },
        redacted: { headers: ["set-cookie"] },
      },
      redact: RULES,
    } satisfies CaptureRecord);
    expect(parseRecord(JSON.parse(JSON.stringify(record)))).toEqual({ ok: true, record });
  });

  it("say which field of a record read back is wrong", () => {
    const record = JSON.parse(JSON.stringify(buildRecord(parts()))) as Record<string, unknown>;
    (record.request as Record<string, unknown>).url = "/relative";
    expect(parseRecord(record)).toEqual({ ok: false, error: "request.url: must be an absolute http(s) URL" });
    expect(parseRecord({ ...record, v: 2 })).toMatchObject({ ok: false, error: expect.stringMatching(/^v: /) });
  });

  it("record a failed primary with its error code and no answer", () => {
    const record = buildRecord(parts({ response: null, latencyMs: null, error: "primary_timeout" }));
    expect(record.response).toBeNull();
    expect(record.error).toBe("primary_timeout");
  });
});

describe("HAR", () => {
  it("is HAR 1.2 with the answer as the response, and gives the record back exactly", () => {
    const record = buildRecord(parts());
    const entry = harEntry(record);
    expect(entry).toMatchObject({
      startedDateTime: "2026-11-25T10:00:00.005Z",
      time: 12,
      request: {
        method: "POST",
        url: record.request.url,
        headers: [
          { name: "content-type", value: "application/json" },
          { name: "authorization", value: "[redacted]" },
        ],
        queryString: [
          { name: "page", value: "2" },
          { name: "token", value: "[redacted]" },
        ],
        postData: { mimeType: "application/json", text: '{"name":"kettle","apiKey":"[redacted]"}' },
        bodySize: 34,
      },
      response: {
        status: 201,
        content: { mimeType: "application/octet-stream", text: "/wAB", encoding: "base64", size: -1 },
      },
      timings: { wait: 12 },
      _edgeMirror: { route: "catalog", id: "8e1f3a2b9c0d4e5f-AMS" },
    });
    expect(recordFromHar(JSON.parse(JSON.stringify(entry)))).toEqual({ ok: true, record });
  });

  it("reads a browser's entry from its standard fields", () => {
    const read = recordFromHar({
      startedDateTime: "2026-11-25T10:00:00.000Z",
      time: 30,
      request: {
        method: "GET",
        url: "https://shop.test/a?b=1",
        headers: [
          { name: ":authority", value: "shop.test" },
          { name: "Accept", value: "*/*" },
        ],
      },
      response: { status: 200, headers: [], content: { size: 2, mimeType: "text/plain", text: "ok" } },
    });
    expect(read).toMatchObject({
      ok: true,
      record: {
        startedAt: Date.UTC(2026, 10, 25, 10),
        latencyMs: 30,
        request: { headers: [["accept", "*/*"]], body: null },
        response: { status: 200, body: { encoding: "utf8", text: "ok", size: 2 } },
      },
    });
    expect(recordFromHar({ request: {} })).toEqual({ ok: false, error: "must have a request and a response" });
  });
});

function streamOf(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
}

async function collect<T>(lines: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const line of lines) out.push(line);
  return out;
}

describe("NDJSON lines", () => {
  it("are numbered across chunks; a line that is not UTF-8 or too long is reported and skipped", async () => {
    const got = await collect(
      ndjsonLines(
        streamOf(
          utf8.encode('{"a":1}\r\n{"b"'),
          utf8.encode(":2}\n\n"),
          new Uint8Array([0xff, 0x0a]),
          utf8.encode("x".repeat(20) + "\nlast"),
        ),
        10,
      ),
    );
    expect(got).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, text: '{"b":2}' },
      { line: 4, error: "not UTF-8" },
      { line: 5, error: "longer than 10 bytes" },
      { line: 6, text: "last" },
    ]);
  });

  it("say where input that ends early ends, after every whole line", async () => {
    const gz = await gzipLines(['{"a":1}', '{"b":2}']);
    const cut = gz.subarray(0, gz.byteLength - 9);
    const { gunzipped } = await import("./lines.js");
    const got = await collect(ndjsonLines(await gunzipped(streamOf(cut))));
    expect(got.slice(0, 2)).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, text: '{"b":2}' },
    ]);
    expect(got[2]).toMatchObject({ line: 3, error: expect.stringMatching(/^the input ends early, after line 2/) });
    expect(await collect(ndjsonLines(await gunzipped(streamOf(gz))))).toHaveLength(2);
  });
});

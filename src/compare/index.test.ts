import { describe, expect, it } from "vitest";
import { compareSpec, parseRoute } from "../policy/index.js";
import {
  boundSample,
  type CapturedResponse,
  clipField,
  compareResponses,
  type DiffSample,
  diffSample,
  MAX_FIELD_CHARS,
  MAX_REPORTED_FIELDS,
  MAX_SAMPLE_BYTES,
  NOISE_OBSERVATIONS,
  NOISE_TTL_MS,
  NoiseMemory,
  parseBody,
  summarizeComparison,
  utf8Bytes,
} from "./index.js";

const encoder = new TextEncoder();

function answer(body: unknown, init: { status?: number; headers?: Record<string, string> } = {}): CapturedResponse {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return {
    status: init.status ?? 200,
    headers: new Headers(init.headers ?? { "content-type": "application/json" }),
    body: encoder.encode(text),
  };
}

function spec(compare: unknown = true) {
  const route = parseRoute({ id: "r", mirrors: [{ origin: "https://m.test", compare }] });
  return compareSpec(route.mirrors[0] as { compare: (typeof route.mirrors)[0]["compare"] }) ?? expect.fail("no spec");
}

describe("compareResponses", () => {
  it("matches identical answers", () => {
    const result = compareResponses({ primary: answer({ a: 1 }), candidate: answer({ a: 1 }), spec: spec() });
    expect(result).toMatchObject({ verdict: "match", fields: [], noise: [] });
  });

  it("names the status, the selected headers and the JSON paths that differ", () => {
    const result = compareResponses({
      primary: answer({ a: 1, b: [1, 2] }, { headers: { "content-type": "application/json", etag: "1" } }),
      candidate: answer({ a: 1, b: [1, 3] }, { status: 201, headers: { "content-type": "text/json", etag: "2" } }),
      spec: spec({ headers: ["content-type"] }),
    });
    expect(result.verdict).toBe("differ");
    expect(result.fields).toEqual(["status", "headers.content-type", "$.b[1]"]);
  });

  it("compares other bodies byte for byte", () => {
    const text = (body: string) => answer(body, { headers: { "content-type": "text/plain" } });
    expect(compareResponses({ primary: text("ok"), candidate: text("ok"), spec: spec() }).verdict).toBe("match");
    expect(compareResponses({ primary: text("ok"), candidate: text("ok!"), spec: spec() }).fields).toEqual(["body"]);
  });

  it("leaves out ignored paths, wildcards included", () => {
    const result = compareResponses({
      primary: answer({ items: [{ id: 1, ts: 5 }], v: 1 }),
      candidate: answer({ items: [{ id: 1, ts: 6 }], v: 2 }),
      spec: spec({ ignorePaths: ["$.items[*].ts"] }),
    });
    expect(result.fields).toEqual(["$.v"]);
  });

  it("cancels as noise what also differs between primary and reference", () => {
    const result = compareResponses({
      primary: answer({ id: "r1", total: 3 }),
      reference: answer({ id: "r2", total: 3 }),
      candidate: answer({ id: "r3", total: 4 }),
      spec: spec(),
    });
    expect(result).toMatchObject({ verdict: "differ", fields: ["$.total"], noise: ["$.id"], referenceNoise: ["$.id"] });
  });

  it("treats fields learned as noisy on earlier requests as noise", () => {
    const memory = new NoiseMemory();
    for (let i = 0; i < NOISE_OBSERVATIONS; i++) memory.learn("r\nm", ["$.ts"]);
    const result = compareResponses({
      primary: answer({ ts: 1, v: 1 }),
      reference: answer({ ts: 1, v: 1 }),
      candidate: answer({ ts: 2, v: 1 }),
      spec: spec(),
      knownNoise: memory.known("r\nm"),
    });
    expect(result).toMatchObject({ verdict: "match", fields: [], noise: ["$.ts"] });
  });
});

describe("NoiseMemory", () => {
  it("is bounded per key and in keys", () => {
    const memory = new NoiseMemory({ maxFieldsPerKey: 2, maxKeys: 1 });
    for (let i = 0; i < NOISE_OBSERVATIONS; i++) {
      memory.learn("a", ["$.x", "$.y", "$.z"]);
      memory.learn("b", ["$.x"]);
    }
    expect(memory.known("a")).toEqual(["$.x", "$.y"]);
    expect(memory.known("b")).toEqual([]);
  });

  it("learns a field after NOISE_OBSERVATIONS comparisons, and forgets it NOISE_TTL_MS after the last", () => {
    let now = 0;
    const memory = new NoiseMemory({ now: () => now });
    for (let i = 1; i < NOISE_OBSERVATIONS; i++) {
      memory.learn("k", ["$.ts"]);
      expect(memory.known("k"), `after ${i}`).toEqual([]);
    }
    memory.learn("k", ["$.ts"]);
    expect(memory.known("k")).toEqual(["$.ts"]);
    now += NOISE_TTL_MS;
    expect(memory.known("k")).toEqual(["$.ts"]);
    now += 1;
    expect(memory.known("k")).toEqual([]);
    // Forgotten means starting again: one observation is not enough.
    memory.learn("k", ["$.ts"]);
    expect(memory.known("k")).toEqual([]);
  });

  it("makes room for new lessons by dropping expired ones", () => {
    let now = 0;
    const memory = new NoiseMemory({ maxFieldsPerKey: 1, maxKeys: 1, now: () => now });
    for (let i = 0; i < NOISE_OBSERVATIONS; i++) memory.learn("a", ["$.x"]);
    now += NOISE_TTL_MS + 1;
    for (let i = 0; i < NOISE_OBSERVATIONS; i++) memory.learn("b", ["$.y"]);
    expect([memory.known("a"), memory.known("b")]).toEqual([[], ["$.y"]]);
  });

  it("never learns status, the whole document or a whole body, however often the reference shows them", () => {
    const memory = new NoiseMemory();
    for (let i = 0; i < 10; i++) memory.learn("k", ["status", "$", "body", "headers.date"]);
    expect(memory.known("k")).toEqual(["headers.date"]);
  });
});

describe("a reference cannot poison the comparison", () => {
  const overloaded = () => answer("overloaded", { status: 503 });

  it("counts a reference of another status class as a reference error, and learns nothing from it", () => {
    const memory = new NoiseMemory();
    for (let i = 0; i < 5; i++) {
      const poisoned = compareResponses({
        primary: answer({ items: [1], total: 1 }),
        reference: overloaded(),
        candidate: answer({ items: [1], total: 1 }),
        spec: spec(),
        knownNoise: memory.known("k"),
      });
      expect(poisoned).toMatchObject({
        verdict: "error",
        error: "reference: answered 5xx where the primary answered 2xx",
        fields: [],
        referenceNoise: [],
      });
      memory.learn("k", poisoned.referenceNoise);
    }
    // The review's case: after that, a mirror's 500 against the primary's 200 is a difference.
    const later = compareResponses({
      primary: answer({ items: [1], total: 1 }),
      reference: answer({ items: [1], total: 1 }),
      candidate: answer({ error: "boom" }, { status: 500 }),
      spec: spec(),
      knownNoise: memory.known("k"),
    });
    expect(later).toMatchObject({ verdict: "differ", fields: ["status", "$.error", "$.items", "$.total"], noise: [] });
  });

  it("names both classes for a create endpoint whose reference shares the primary's database", () => {
    const created = compareResponses({
      primary: answer({ id: 7 }, { status: 201 }),
      reference: answer({ error: "exists" }, { status: 409 }),
      candidate: answer({ id: 8 }, { status: 201 }),
      spec: spec(),
    });
    expect(summarizeComparison(created)).toEqual({
      verdict: "error",
      fields: [],
      noise: [],
      error: "reference: answered 4xx where the primary answered 2xx",
    });
  });

  it("never treats status, the whole document or a whole body as noise, on this request or from memory", () => {
    // The reference differs in its status within the class and in the document's type.
    const json = compareResponses({
      primary: answer({ items: [1], total: 1 }),
      reference: answer("overloaded", { status: 202 }),
      candidate: answer({ error: "boom" }, { status: 201 }),
      spec: spec(),
      knownNoise: ["status", "$", "body"],
    });
    expect(json.referenceNoise).toEqual([]);
    expect(json).toMatchObject({ verdict: "differ", fields: ["status", "$.error", "$.items", "$.total"], noise: [] });
    const text = (body: string) => answer(body, { headers: { "content-type": "text/plain" } });
    const plain = compareResponses({
      primary: text("ok"),
      reference: text("busy"),
      candidate: text("broken"),
      spec: spec(),
    });
    expect(plain).toMatchObject({ verdict: "differ", fields: ["body"], noise: [], referenceNoise: [] });
  });

  it("still cancels, on the request itself, what the reference shows noisy in one field", () => {
    const result = compareResponses({
      primary: answer({ ts: 1, v: 1 }, { status: 201 }),
      reference: answer({ ts: 2, v: 1 }, { status: 201 }),
      candidate: answer({ ts: 3, v: 1 }, { status: 201 }),
      spec: spec(),
    });
    expect(result).toMatchObject({ verdict: "match", noise: ["$.ts"], referenceNoise: ["$.ts"] });
  });
});

describe("size limits", () => {
  const longKey = (c: string) => c.repeat(2.5 * 1024 * 1024);

  it("clips field names to MAX_FIELD_CHARS, keeping two long keys apart and short ones as they are", () => {
    const a = clipField(`$.${longKey("k")}`);
    const b = clipField(`$.${longKey("k")}x`);
    expect(a).toHaveLength(MAX_FIELD_CHARS);
    expect(b).toHaveLength(MAX_FIELD_CHARS);
    expect(a).not.toBe(b);
    expect(a).toMatch(/^\$\.k+…#[0-9a-f]{14}$/);
    expect(clipField(a)).toBe(a);
    expect(clipField(`$.${longKey("k")}`)).toBe(a);
    expect(clipField("$.items[*].price")).toBe("$.items[*].price");
    // A character is never cut in half: a clipped name stays valid UTF-16.
    const emoji = clipField(`$.a${"😀".repeat(500)}`);
    expect(emoji.length).toBeLessThanOrEqual(MAX_FIELD_CHARS);
    expect(emoji).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
  });

  it("reports and samples a 2.5 MiB key clipped, and the sample within MAX_SAMPLE_BYTES", async () => {
    const s = spec();
    const echoed = { [longKey("k")]: 1, [`${"k".repeat(1000)}2`]: 2 };
    const comparison = compareResponses({
      primary: answer(echoed),
      reference: answer({ ...echoed, ts: 1 }),
      candidate: answer({ ok: true }),
      spec: s,
    });
    const summary = summarizeComparison(comparison);
    expect(summary.fields).toHaveLength(3);
    for (const field of [...summary.fields, ...comparison.referenceNoise]) {
      expect(field.length).toBeLessThanOrEqual(MAX_FIELD_CHARS);
    }
    expect(new Set(summary.fields).size).toBe(3);
    const sample = await diffSample(comparison, s, context);
    expect(utf8Bytes(JSON.stringify(sample))).toBeLessThanOrEqual(MAX_SAMPLE_BYTES);
    expect(sample.fields).toEqual(summary.fields);
    expect(sample.differences.map((d) => d.field)).toEqual(summary.fields);
    for (const d of sample.differences) expect(d.path.length).toBeLessThanOrEqual(MAX_FIELD_CHARS);
  });

  it("remembers a long noisy key under its clipped name", () => {
    const key = longKey("t");
    const memory = new NoiseMemory();
    for (let i = 0; i < NOISE_OBSERVATIONS; i++) {
      const noisy = compareResponses({
        primary: answer({ [key]: i, v: 1 }),
        reference: answer({ [key]: i + 1, v: 1 }),
        candidate: answer({ [key]: i, v: 1 }),
        spec: spec(),
      });
      expect(noisy.referenceNoise).toEqual([clipField(`$.${key}`)]);
      memory.learn("k", noisy.referenceNoise);
    }
    const later = compareResponses({
      primary: answer({ [key]: 1, v: 1 }),
      reference: answer({ [key]: 1, v: 1 }),
      candidate: answer({ [key]: 2, v: 1 }),
      spec: spec(),
      knownNoise: memory.known("k"),
    });
    expect(summarizeComparison(later)).toEqual({ verdict: "match", fields: [], noise: [clipField(`$.${key}`)] });
  });

  it("shrinks a sample step by step: excerpts first, then values, then differences", () => {
    const side = (excerpt: string) => ({ status: 200, headers: { etag: "e" }, bodyBytes: 1, sha256: "", excerpt });
    const differences = (n: number, value: string) =>
      Array.from({ length: n }, (_, i) => ({ field: `$.f${i}`, path: `$.f${i}`, primary: value, candidate: value }));
    const sample = (n: number, value: string, excerpt: string): DiffSample => ({
      at: 1,
      route: "r",
      mirror: "m",
      requestId: "id",
      method: "GET",
      path: "/p",
      fields: differences(n, "").map((d) => d.field),
      noise: [],
      differences: differences(n, value),
      primary: side(excerpt),
      candidate: side(excerpt),
    });
    const fits = sample(3, "1", "x".repeat(3000));
    expect(boundSample(fits)).toEqual(fits);
    const excerpts = boundSample(sample(30, "v".repeat(150), "x".repeat(4000)));
    expect(excerpts.primary.excerpt).toHaveLength(1001);
    expect(excerpts.differences[0]?.primary).toHaveLength(150);
    const values = boundSample(sample(50, "v".repeat(200), "x".repeat(4000)));
    expect(values.primary.excerpt).toBe("…");
    expect(values.differences).toHaveLength(50);
    expect(values.differences[0]?.primary).toHaveLength(33);
    const multibyte = boundSample({ ...sample(50, "v", ""), differences: differences(50, "é".repeat(200)) });
    for (const s of [excerpts, values, multibyte]) {
      expect(utf8Bytes(JSON.stringify(s))).toBeLessThanOrEqual(MAX_SAMPLE_BYTES);
    }
    const wide = boundSample({
      ...sample(0, "", ""),
      fields: Array.from({ length: 50 }, (_, i) => `$.${i}${"f".repeat(300)}`),
      noise: Array.from({ length: 50 }, (_, i) => `$.${i}${"n".repeat(300)}`),
      differences: Array.from({ length: 50 }, (_, i) => ({
        field: `$.${i}${"f".repeat(300)}`,
        path: `$.${i}${"f".repeat(300)}`,
        primary: "1",
        candidate: "2",
      })),
    });
    expect(utf8Bytes(JSON.stringify(wide))).toBeLessThanOrEqual(MAX_SAMPLE_BYTES);
    expect(wide.differences).toEqual([]);
    expect(wide.fields.length).toBeGreaterThan(0);
  });
});

describe("parseBody", () => {
  it("parses JSON by content type or by shape, and falls back to bytes", () => {
    expect(parseBody(answer({ a: 1 }))).toEqual({ json: true, value: { a: 1 } });
    expect(parseBody(answer(" [1]", { headers: { "content-type": "text/plain" } }))).toEqual({
      json: true,
      value: [1],
    });
    expect(parseBody(answer("{not json", { headers: {} }))).toEqual({ json: false });
    expect(parseBody(answer("42", { headers: { "content-type": "text/plain" } }))).toEqual({ json: false });
  });
});

describe("diffSample", () => {
  it("keeps secrets out: redacted paths and headers, and no query string", async () => {
    const s = spec({
      headers: ["content-type", "set-cookie", "x-trace"],
      redactPaths: ["$.user.token"],
      redactHeaders: ["x-trace"],
    });
    const comparison = compareResponses({
      primary: answer(
        { user: { token: "p-secret", n: 1 } },
        { headers: { "content-type": "application/json", "set-cookie": "sid=1", "x-trace": "t1" } },
      ),
      candidate: answer(
        { user: { token: "c-secret", n: 2 } },
        { headers: { "content-type": "application/json", "set-cookie": "sid=2", "x-trace": "t2" } },
      ),
      spec: s,
    });
    const sample = await diffSample(comparison, s, {
      at: 1,
      route: "r",
      mirror: "m",
      requestId: "id-1",
      method: "GET",
      pathAndQuery: "/users/1?api_key=k123",
    });
    expect(sample.path).toBe("/users/1");
    expect(sample.fields).toEqual(["headers.set-cookie", "headers.x-trace", "$.user.n", "$.user.token"]);
    const text = JSON.stringify(sample);
    for (const secret of ["p-secret", "c-secret", "sid=1", "sid=2", "t1", "t2", "k123"])
      expect(text).not.toContain(secret);
    expect(sample.differences).toContainEqual({ field: "$.user.n", path: "$.user.n", primary: "1", candidate: "2" });
    expect(sample.primary.excerpt).toContain('"[redacted]"');
    expect(sample.primary.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("shows bodies compared by hash as a size and digest only", async () => {
    const s = spec();
    const plain = (body: string) => answer(body, { headers: { "content-type": "text/plain" } });
    const sample = await diffSample(compareResponses({ primary: plain("a"), candidate: plain("bb"), spec: s }), s, {
      at: 1,
      route: "r",
      mirror: "m",
      requestId: "x",
      method: "POST",
      pathAndQuery: "/p",
    });
    expect(sample.differences).toEqual([{ field: "body", path: "body", primary: "1 bytes", candidate: "2 bytes" }]);
    expect(sample.primary.excerpt).toBe("");
    expect(sample.candidate.sha256).not.toBe(sample.primary.sha256);
  });
});

const context = { at: 1, route: "r", mirror: "m", requestId: "id", method: "GET", pathAndQuery: "/p" };

describe("summarizeComparison", () => {
  it("reports every differing field once, array indexes folded", () => {
    const comparison = compareResponses({
      primary: answer({
        items: [
          { price: 1, id: 1 },
          { price: 2, id: 2 },
          { price: 3, id: 3 },
        ],
        v: 1,
      }),
      candidate: answer({
        items: [
          { price: 9, id: 1 },
          { price: 8, id: 2 },
          { price: 3, id: 4 },
        ],
        v: 2,
      }),
      spec: spec(),
    });
    expect(comparison.fields).toEqual(["$.items[0].price", "$.items[1].price", "$.items[2].id", "$.v"]);
    expect(summarizeComparison(comparison)).toEqual({
      verdict: "differ",
      fields: ["$.items[*].price", "$.items[*].id", "$.v"],
      noise: [],
    });
  });

  it("bounds the fields and says how many more there were", () => {
    const wide = (n: number) => Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`k${i}`, n]));
    const summary = summarizeComparison(
      compareResponses({ primary: answer(wide(1)), candidate: answer(wide(2)), spec: spec() }),
    );
    expect(summary.fields).toHaveLength(MAX_REPORTED_FIELDS);
    expect(summary.overflow).toEqual({ fields: 80 - MAX_REPORTED_FIELDS, noise: 0 });
  });

  it("learns noise per field: a timestamp noisy in one element is noise in every element", () => {
    const first = compareResponses({
      primary: answer({ items: [{ ts: 1 }, { ts: 1 }] }),
      reference: answer({ items: [{ ts: 2 }, { ts: 1 }] }),
      candidate: answer({ items: [{ ts: 1 }, { ts: 1 }] }),
      spec: spec(),
    });
    expect(first.referenceNoise).toEqual(["$.items[*].ts"]);
    const memory = new NoiseMemory();
    for (let i = 0; i < NOISE_OBSERVATIONS; i++) memory.learn("k", first.referenceNoise);
    const later = compareResponses({
      primary: answer({ items: [{ ts: 1 }, { ts: 1 }] }),
      reference: answer({ items: [{ ts: 1 }, { ts: 1 }] }),
      candidate: answer({ items: [{ ts: 1 }, { ts: 5 }] }),
      spec: spec(),
      knownNoise: memory.known("k"),
    });
    expect(summarizeComparison(later)).toEqual({ verdict: "match", fields: [], noise: ["$.items[*].ts"] });
  });
});

describe("diff samples", () => {
  it("fold fields as the counts do, with the first concrete path and its values", async () => {
    const s = spec();
    const comparison = compareResponses({
      primary: answer({ items: [{ price: 1 }, { price: 2 }] }),
      candidate: answer({ items: [{ price: 1 }, { price: 5 }, { price: 6 }] }),
      spec: s,
    });
    const sample = await diffSample(comparison, s, context);
    // The added third element is a difference of its own, at the element.
    expect(sample.fields).toEqual(["$.items[*].price", "$.items[*]"]);
    expect(sample.differences).toEqual([
      { field: "$.items[*].price", path: "$.items[1].price", primary: "2", candidate: "5" },
      { field: "$.items[*]", path: "$.items[2]", primary: "(absent)", candidate: '{"price":6}' },
    ]);
  });

  it("redact keys that look like secrets by default, in values and excerpts", async () => {
    const s = spec({ headers: ["content-type", "x-auth-token"] });
    const headers = (token: string) => ({ "content-type": "application/json", "x-auth-token": token });
    const comparison = compareResponses({
      primary: answer({ user: { token: "tok-primary", n: 1 }, Password: "pw-1" }, { headers: headers("h-1") }),
      candidate: answer({ user: { token: "tok-candidate", n: 2 }, Password: "pw-2" }, { headers: headers("h-2") }),
      spec: s,
    });
    const sample = await diffSample(comparison, s, context);
    expect(sample.fields).toEqual(["headers.x-auth-token", "$.Password", "$.user.n", "$.user.token"]);
    const text = JSON.stringify(sample);
    for (const secret of ["tok-primary", "tok-candidate", "pw-1", "pw-2", "h-1", "h-2"])
      expect(text).not.toContain(secret);
    expect(sample.differences).toContainEqual({
      field: "$.user.token",
      path: "$.user.token",
      primary: '"[redacted]"',
      candidate: '"[redacted]"',
    });
    expect(sample.differences).toContainEqual({ field: "$.user.n", path: "$.user.n", primary: "1", candidate: "2" });
  });

  it("show them when the route opts out with redactSecrets: false", async () => {
    const s = spec({ redactSecrets: false });
    const comparison = compareResponses({
      primary: answer({ token: "tok-primary" }),
      candidate: answer({ token: "tok-candidate" }),
      spec: s,
    });
    const sample = await diffSample(comparison, s, context);
    expect(sample.differences).toEqual([
      { field: "$.token", path: "$.token", primary: '"tok-primary"', candidate: '"tok-candidate"' },
    ]);
    expect(sample.candidate.excerpt).toContain("tok-candidate");
  });
});

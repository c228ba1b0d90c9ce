import { describe, expect, it } from "vitest";
import { compareSpec, parseRoute } from "../policy/index.js";
import {
  type CapturedResponse,
  compareResponses,
  diffSample,
  MAX_REPORTED_FIELDS,
  NOISE_OBSERVATIONS,
  NOISE_TTL_MS,
  NoiseMemory,
  parseBody,
  summarizeComparison,
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

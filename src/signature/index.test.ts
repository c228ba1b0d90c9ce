import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { countedName, MAX_FIELD_CHARS } from "../compare/index.js";
import {
  MAX_SIGNATURE_CHARS,
  MAX_SIGNATURES,
  MORE_FIELDS,
  SignatureCounter,
  SignatureFormatError,
  signatureFields,
  signatureOf,
} from "./index.js";

/**
 * Differing fields as a comparison reports them, some with indexes, which the field table folds:
 * five counted names, so 31 signatures, within a counter's 50.
 */
const FIELD = fc.constantFrom(
  "status",
  "headers.content-type",
  "$.price",
  "$.items[0].price",
  "$.items[7].price",
  "$.items[3].id",
);

/** One compared request that differed: its fields, and where it was counted (isolate batch, shard). */
const REQUEST = fc.record({
  fields: fc.array(FIELD, { minLength: 1, maxLength: 5 }),
  batch: fc.integer({ min: 0, max: 63 }),
  shard: fc.integer({ min: 0, max: 15 }),
});

describe("signatureOf", () => {
  it("is the set of fields the field table counts, in any order, each once", () => {
    expect(signatureOf({ fields: ["$.items[3].price", "status", "$.items[0].price"] })).toBe(
      "$.items[*].price\nstatus",
    );
    expect(signatureOf({ fields: ["status", "$.items[*].price"] })).toBe(
      signatureOf({ fields: ["$.items[9].price", "status"] }),
    );
    expect(signatureFields("$.items[*].price\nstatus")).toEqual(["$.items[*].price", "status"]);
    expect(signatureOf({ fields: [] })).toBeUndefined();
  });

  it("names the fields a comparison could not, past its 50, as (other)", () => {
    expect(signatureOf({ fields: ["$.a"], overflow: { fields: 12 } })).toBe(
      `$.a\n${MORE_FIELDS}`.split("\n").sort().join("\n"),
    );
    expect(signatureOf({ fields: [], overflow: { fields: 3 } })).toBe(MORE_FIELDS);
  });

  it("is at most 1,024 characters, and two long signatures stay two", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ minLength: 1, maxLength: 400, size: "max" }).map((s) => `$.${s}`),
          { minLength: 1, maxLength: 50, size: "max" },
        ),
        (fields) => {
          const key = signatureOf({ fields }) as string;
          expect(key.length).toBeLessThanOrEqual(MAX_SIGNATURE_CHARS);
          expect(signatureFields(key).length).toBeGreaterThan(0);
          for (const name of signatureFields(key)) expect(name.length).toBeLessThanOrEqual(MAX_FIELD_CHARS + 2);
        },
      ),
      { numRuns: 300 },
    );
    const long = (c: string) => Array.from({ length: 10 }, (_, i) => `$.${c.repeat(200)}${i}`);
    const a = signatureOf({ fields: long("a") }) as string;
    const b = signatureOf({ fields: [...long("a"), "$.z"] }) as string;
    expect(a).not.toBe(b);
    expect(a).toMatch(/\n…\+\d+ #[0-9a-f]{14}$/);
  });

  it("escapes a line break, so that one field never reads as two", () => {
    expect(signatureFields(signatureOf({ fields: ["$.a\n$.b"] }) as string)).toEqual(["$.a\\n$.b"]);
  });
});

describe("SignatureCounter", () => {
  it("counts, for each signature, the requests that differ in exactly its fields, merged across isolates and shards", () => {
    fc.assert(
      fc.property(fc.array(REQUEST, { minLength: 1, maxLength: 400, size: "max" }), (requests) => {
        // Every isolate's batch counts what it saw; each shard merges the batches sent to it; a read merges the shards.
        const batches = new Map<number, SignatureCounter>();
        requests.forEach((request, i) => {
          const batch = batches.get(request.batch) ?? new SignatureCounter();
          batches.set(request.batch, batch);
          batch.add(signatureOf(request) as string, `ray-${i}`, i);
        });
        const shards = Array.from({ length: 16 }, () => new SignatureCounter());
        for (const [id, batch] of batches) {
          const shard = shards[requests.find((r) => r.batch === id)?.shard ?? 0] as SignatureCounter;
          // Through storage, as a shard would keep it.
          shard.merge(SignatureCounter.fromJSON(JSON.parse(JSON.stringify(batch))));
        }
        const read = new SignatureCounter();
        for (const shard of shards) read.merge(shard);

        // What each request differed in, as a set of counted names.
        const expected = new Map<string, number>();
        for (const request of requests) {
          const set = [...new Set(request.fields.map(countedName))].sort().join("\n");
          expected.set(set, (expected.get(set) ?? 0) + 1);
        }
        const summary = read.top(MAX_SIGNATURES);
        expect(new Map(summary.signatures.map((s) => [s.signature, s.count]))).toEqual(expected);
        expect(summary.total).toBe(requests.length);
        expect(summary.other.count).toBe(0);
        for (const row of summary.signatures) {
          expect(row.exact).toBe(true);
          expect(row.share).toBeCloseTo(row.count / requests.length, 12);
          // The example is the newest request with that signature.
          const newest = requests.findLastIndex(
            (r) => [...new Set(r.fields.map(countedName))].sort().join("\n") === row.signature,
          );
          expect(row.exampleRequestId).toBe(`ray-${newest}`);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("past its capacity, keeps total exact, counts the rest under other, and says which counts are lower bounds", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            signature: fc.noBias(fc.integer({ min: 0, max: 120 })),
            shard: fc.noBias(fc.integer({ min: 0, max: 15 })),
          }),
          { minLength: 1, maxLength: 600, size: "max" },
        ),
        (requests) => {
          const shards = Array.from({ length: 16 }, () => new SignatureCounter(10));
          requests.forEach((r, i) => {
            shards[r.shard]?.add(`$.f${r.signature}`, `ray-${i}`, i);
          });
          const read = new SignatureCounter(10);
          for (const shard of shards) read.merge(shard);
          const truth = new Map<string, number>();
          for (const r of requests) truth.set(`$.f${r.signature}`, (truth.get(`$.f${r.signature}`) ?? 0) + 1);

          const summary = read.top(10);
          expect(summary.total).toBe(requests.length);
          expect(read.size).toBeLessThanOrEqual(10);
          const kept = summary.signatures.reduce((sum, s) => sum + s.count, 0);
          expect(kept + summary.other.count).toBe(requests.length);
          expect(read.other).toBe(summary.other.count);
          for (const row of summary.signatures) {
            const count = truth.get(row.signature) as number;
            expect(row.count).toBeLessThanOrEqual(count);
            if (row.exact) expect(row.count).toBe(count);
            // What is missing from a count is in other.
            expect(count - row.count).toBeLessThanOrEqual(summary.other.count);
          }
          for (let i = 1; i < summary.signatures.length; i++) {
            expect(summary.signatures[i - 1]?.count).toBeGreaterThanOrEqual(summary.signatures[i]?.count as number);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("marks a kept count that a full table elsewhere undercounted as a lower bound, in either merge order", () => {
    // One isolate's table was full when `$.c` first differed there, and counted it under other.
    const full = new SignatureCounter(2);
    full.add("$.a", "r1", 1);
    full.add("$.b", "r2", 2);
    full.add("$.c", "r3", 3);
    const another = new SignatureCounter(2);
    for (let i = 0; i < 5; i++) another.add("$.c", `r${4 + i}`, 4 + i);
    for (const order of [
      [full, another],
      [another, full],
    ]) {
      const read = new SignatureCounter(2);
      for (const counter of order) read.merge(counter);
      const rows = new Map(read.top().signatures.map((row) => [row.signature, row]));
      // $.c differed on 6 requests; 5 are counted, the sixth is in other.
      expect(rows.get("$.c")).toMatchObject({ count: 5, exact: false, exampleRequestId: "r8" });
      expect(read.top().total).toBe(8);
      expect(read.other).toBe(8 - [...rows.values()].reduce((sum, row) => sum + row.count, 0));
    }
    // Tables that never folded anything merge exactly.
    const a = new SignatureCounter(2);
    a.add("$.a", "r1", 1);
    const b = new SignatureCounter(2);
    b.add("$.b", "r2", 2);
    expect(
      a
        .merge(b)
        .top()
        .signatures.every((row) => row.exact),
    ).toBe(true);
  });

  it("shows the top 20, the rest as (other) with its share", () => {
    const counter = new SignatureCounter();
    for (let s = 0; s < 30; s++) for (let n = 0; n <= s; n++) counter.add(`$.f${s}`, `ray-${s}-${n}`, n);
    const summary = counter.top();
    expect(summary.signatures).toHaveLength(20);
    expect(summary.signatures[0]).toMatchObject({
      signature: "$.f29",
      fields: ["$.f29"],
      count: 30,
      exampleRequestId: "ray-29-29",
      exampleAt: 29,
      exact: true,
    });
    expect(summary.total).toBe(465);
    // The ten least frequent: 1 + 2 + … + 10.
    expect(summary.other).toEqual({ count: 55, share: 55 / 465 });
  });

  it("round-trips through JSON and refuses what does not add up", () => {
    const counter = new SignatureCounter(2);
    counter.add("$.a", "r1", 1);
    counter.add("$.b", "r2", 2);
    counter.add("$.c", "r3", 3);
    const json = counter.toJSON();
    expect(json).toEqual({
      total: 3,
      other: 1,
      folded: true,
      entries: [
        ["$.a", 1, "r1", 1, true],
        ["$.b", 1, "r2", 2, true],
      ],
    });
    expect(SignatureCounter.fromJSON(json, 2).toJSON()).toEqual(json);
    for (const [bad, message] of [
      [null, /not an object/],
      [{ ...json, total: 4 }, /add up to 3, not total 4/],
      [{ ...json, entries: [["$.a", 0, "r", 1, true]] }, /count must be a whole number ≥ 1/],
      [{ ...json, entries: [["x".repeat(1025), 1, "r", 1, true]] }, /1 to 1024 characters/],
      [{ ...json, folded: "yes" }, /folded must be a boolean/],
      [
        {
          ...json,
          entries: [
            ["$.a", 1, "r", 1, true],
            ["$.a", 1, "r", 1, true],
          ],
        },
        /repeats a signature/,
      ],
    ] as const) {
      expect(() => SignatureCounter.fromJSON(bad)).toThrow(SignatureFormatError);
      expect(() => SignatureCounter.fromJSON(bad)).toThrow(message);
    }
  });
});

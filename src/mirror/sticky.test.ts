import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseRoute, type RouteInput } from "../policy/index.js";
import { type SipKey, sipHash24, sipKey } from "../siphash/index.js";
import { cookieValue, MAX_STICKY_VALUE_LENGTH, planMirrors, stickyPoint } from "./plan.js";

const clusters = new Map([
  ["canary", "http://canary.test"],
  ["canary-b", "http://canary-b.test"],
]);
const USERS = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);
const never = (): number => {
  throw new Error("a sticky decision must not draw at random");
};
const utf8 = new TextEncoder();
const keyOf = (text: string): SipKey => sipKey(utf8.encode(text.padEnd(16, "-").slice(0, 16)));
/** The deployment's key in these tests; any 16 bytes. */
const KEY = keyOf("deployment-one");

/**
 * SipHash-2-4 written out from the paper with 64-bit BigInts, independently of the implementation
 * (which works on 32-bit halves).
 */
function referenceSipHash(key: Uint8Array, message: Uint8Array): bigint {
  const mask = (1n << 64n) - 1n;
  const rotl = (x: bigint, b: bigint) => ((x << b) | (x >> (64n - b))) & mask;
  const le64 = (bytes: Uint8Array, at: number) => {
    let word = 0n;
    for (let i = 7; i >= 0; i--) word = (word << 8n) | BigInt(bytes[at + i] ?? 0);
    return word;
  };
  const k0 = le64(key, 0);
  const k1 = le64(key, 8);
  let v0 = k0 ^ 0x736f6d6570736575n;
  let v1 = k1 ^ 0x646f72616e646f6dn;
  let v2 = k0 ^ 0x6c7967656e657261n;
  let v3 = k1 ^ 0x7465646279746573n;
  const round = () => {
    v0 = (v0 + v1) & mask;
    v1 = rotl(v1, 13n) ^ v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & mask;
    v3 = rotl(v3, 16n) ^ v2;
    v0 = (v0 + v3) & mask;
    v3 = rotl(v3, 21n) ^ v0;
    v2 = (v2 + v1) & mask;
    v1 = rotl(v1, 17n) ^ v2;
    v2 = rotl(v2, 32n);
  };
  const whole = message.length - (message.length % 8);
  const words: bigint[] = [];
  for (let at = 0; at < whole; at += 8) words.push(le64(message, at));
  let last = BigInt(message.length & 0xff) << 56n;
  for (let i = whole; i < message.length; i++) last |= BigInt(message[i] as number) << BigInt(8 * (i - whole));
  words.push(last);
  for (const m of words) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  v2 ^= 0xffn;
  for (let i = 0; i < 4; i++) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

/** The documented rule: the top 53 bits of SipHash-2-4 of value, NUL, label, over 2^53. */
function documentedPoint(value: string, label: string, key: Uint8Array): number {
  const message = new Uint8Array([...utf8.encode(value), 0, ...utf8.encode(label)]);
  return Number(referenceSipHash(key, message) >> 11n) / 2 ** 53;
}

function mirrored(route: RouteInput, request: { headers?: HeadersInit; query?: string }, random = never): string[] {
  const plan = planMirrors(parseRoute(route), new Headers(request.headers), clusters, random, {
    query: new URLSearchParams(request.query ?? ""),
    stickyKey: KEY,
  });
  return plan.targets.map((t) => t.label);
}

/** The users a mirror with `percent` and `sampleBy: { header: "x-user-id" }` copies. */
function chosen(percent: number, cluster = "canary", routeId = "r", stickyKey = KEY): Set<string> {
  const route = parseRoute({ id: routeId, mirrors: [{ cluster, percent, sampleBy: { header: "x-user-id" } }] });
  return new Set(
    USERS.filter(
      (user) =>
        planMirrors(route, new Headers({ "x-user-id": user }), clusters, never, { stickyKey }).targets.length === 1,
    ),
  );
}

/** Within 4 standard deviations of a binomial(n, p) mean. */
function expectBinomial(hits: number, n: number, p: number) {
  const sd = Math.sqrt(n * p * (1 - p));
  expect(hits).toBeGreaterThan(n * p - 4 * sd);
  expect(hits).toBeLessThan(n * p + 4 * sd);
}

/** SipHash-2-4 reference vectors (veorq/SipHash vectors.h): key 00…0f, message 00…(n-1), output as written out. */
const SIPHASH_VECTORS = [
  "310e0edd47db6f72",
  "fd67dc93c539f874",
  "5a4fa9d909806c0d",
  "2d7efbd796666785",
  "b7877127e09427cf",
  "8da699cd64557618",
  "cee3fe586e46c9cb",
  "37d1018bf50002ab",
  "6224939a79f5f593",
  "b0e4a90bdf82009e",
  "f3b9dd94c5bb5d7a",
  "a7ad6b22462fb3f4",
  "fbe50e86bc8f1e75",
  "903d84c02756ea14",
  "eef27a8e90ca23f7",
  "e545be4961ca29a1",
  "db9bc2577fcc2a3f",
  "9447be2cf5e99a69",
  "9cd38d96f0b3c14b",
  "bd6179a71dc96dbb",
  "98eea21af25cd6be",
  "c7673b2eb0cbf2d0",
  "883ea3e395675393",
  "c8ce5ccd8c030ca8",
  "94af49f6c650adb8",
  "eab8858ade92e1bc",
  "f315bb5bb835d817",
  "adcf6b0763612e2f",
  "a5c91da7acaa4dde",
  "716595876650a2a6",
  "28ef495c53a387ad",
  "42c341d8fa92d832",
  "ce7cf2722f512771",
  "e37859f94623f3a7",
  "381205bb1ab0e012",
  "ae97a10fd434e015",
  "b4a31508beff4d31",
  "81396229f0907902",
  "4d0cf49ee5d4dcca",
  "5c73336a76d8bf9a",
  "d0a704536ba93e0e",
  "925958fcd6420cad",
  "a915c29bc8067318",
  "952b79f3bc0aa6d4",
  "f21df2e41d4535f9",
  "87577519048f53a9",
  "10a56cf5dfcd9adb",
  "eb75095ccd986cd0",
  "51a9cb9ecba312e6",
  "96afadfc2ce666c7",
  "72fe52975a4364ee",
  "5a1645b276d592a1",
  "b274cb8ebf87870a",
  "6f9bb4203de7b381",
  "eaecb2a30b22a87f",
  "9924a43cc1315724",
  "bd838d3aafbf8db7",
  "0b1a2a3265d51aea",
  "135079a3231ce660",
  "932b2846e4d70666",
  "e1915f5cb1eca46c",
  "f325965ca16d629f",
  "575ff28e60381be5",
  "724506eb4c328a95",
];

/** A 64-bit result as the reference writes it out: little-endian bytes, in hex. */
function writtenOut({ high, low }: { high: number; low: number }): string {
  const bytes = new Uint8Array(8);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, low, true);
  view.setUint32(4, high, true);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

describe("sipHash24", () => {
  const referenceKey = Uint8Array.from({ length: 16 }, (_, i) => i);

  it("gives the reference vectors for messages of 0 to 63 bytes", () => {
    const key = sipKey(referenceKey);
    const outputs = SIPHASH_VECTORS.map((_, n) =>
      writtenOut(
        sipHash24(
          key,
          Uint8Array.from({ length: n }, (_, i) => i),
        ),
      ),
    );
    expect(outputs).toEqual(SIPHASH_VECTORS);
  });

  it("agrees with a 64-bit reference for any key and message, and reads only `length` bytes", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ maxLength: 100 }),
        (key, message) => {
          const expected = referenceSipHash(key, message);
          const padded = new Uint8Array([...message, 0xaa, 0xbb]);
          const { high, low } = sipHash24(sipKey(key), padded, message.length);
          expect((BigInt(high) << 32n) | BigInt(low)).toBe(expected);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("refuses a key that is not 16 bytes", () => {
    expect(() => sipKey(new Uint8Array(15))).toThrow(/16 bytes/);
  });
});

/** Points under KEY, times 2^53: what a release that changed the hash would move. */
const PINNED_USER_1 = 225967198619115 / 2 ** 53;
const PINNED_AUDIT = 64507399740462 / 2 ** 53;
const PINNED_UNICODE = 8156869069436384 / 2 ** 53;

describe("stickyPoint", () => {
  const keyBytes = utf8.encode("deployment-one--");

  it("is the documented keyed hash of value, NUL, label, for any text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 64 }), fc.string({ maxLength: 32 }), (value, label) => {
        expect(stickyPoint(value, label, KEY)).toBe(documentedPoint(value, label, keyBytes));
      }),
      { numRuns: 2000 },
    );
  });

  it("never changes between releases for one key: pinned values", () => {
    expect(stickyPoint("user-1", "canary", KEY)).toBe(PINNED_USER_1);
    expect(stickyPoint("8e1f3a2b-9c0d-4e5f", "https://audit.example.net", KEY)).toBe(PINNED_AUDIT);
    expect(stickyPoint("héllo ✓", "canary", KEY)).toBe(PINNED_UNICODE);
  });

  it("is keyed: another deployment's key puts the same users in other buckets", () => {
    const other = chosen(20, "canary", "r", keyOf("deployment-two"));
    const mine = chosen(20);
    const both = [...mine].filter((user) => other.has(user)).length;
    expectBinomial(other.size, USERS.length, 0.2);
    // Independent draws: a fifth of a fifth in common, not the same fifth.
    expectBinomial(both, USERS.length, 0.04);
  });

  it("decides the same on every call under one key", () => {
    expect([...chosen(20)]).toEqual([...chosen(20)]);
    for (const user of USERS.slice(0, 100)) {
      expect(stickyPoint(user, "canary", keyOf("deployment-one"))).toBe(stickyPoint(user, "canary", KEY));
    }
  });

  it("samples at random while the deployment's key is not known", () => {
    const route = parseRoute({
      id: "r",
      mirrors: [{ cluster: "canary", percent: 30, sampleBy: { header: "x-user-id" } }],
    });
    const unkeyed = (random: () => number) =>
      planMirrors(route, new Headers({ "x-user-id": "user-1" }), clusters, random, {}).targets.length;
    expect(unkeyed(() => 0)).toBe(1);
    expect(unkeyed(() => 0.99)).toBe(0);
  });
});

describe("sticky sampling over 20,000 users", () => {
  const at = new Map([10, 20, 50].map((percent) => [percent, chosen(percent)]));

  it.each([10, 20, 50])("chooses %i %% of them, within binomial bounds", (percent) => {
    expectBinomial(at.get(percent)?.size ?? 0, USERS.length, percent / 100);
  });

  it("only adds users when the percentage rises: 10 % ⊂ 20 % ⊂ 50 %", () => {
    const [ten, twenty, fifty] = [10, 20, 50].map((p) => at.get(p) ?? new Set<string>());
    for (const user of ten ?? []) expect(twenty?.has(user)).toBe(true);
    for (const user of twenty ?? []) expect(fifty?.has(user)).toBe(true);
  });

  it("decides the same way every time, and on every route that copies to the same mirror", () => {
    expect([...chosen(20, "canary", "checkout")]).toEqual([...(at.get(20) ?? [])]);
  });

  it("decides independently for another mirror (salted by the mirror's label)", () => {
    const other = chosen(50, "canary-b");
    const both = [...(at.get(50) ?? [])].filter((user) => other.has(user)).length;
    expectBinomial(other.size, USERS.length, 0.5);
    expectBinomial(both, USERS.length, 0.25);
  });

  it("treats a fraction like the same percentage", () => {
    const route = parseRoute({
      id: "f",
      mirrors: [{ cluster: "canary", fraction: { numerator: 1, denominator: 5 }, sampleBy: { header: "x-user-id" } }],
    });
    const byFraction = USERS.filter(
      (user) =>
        planMirrors(route, new Headers({ "x-user-id": user }), clusters, never, { stickyKey: KEY }).targets.length ===
        1,
    );
    expect(byFraction).toEqual([...(at.get(20) ?? [])]);
  });
});

describe("where the sticky value comes from", () => {
  const user = USERS.find((u) => stickyPoint(u, "canary", KEY) < 0.3) as string;
  const other = USERS.find((u) => stickyPoint(u, "canary", KEY) >= 0.3) as string;
  const route = (sampleBy: object) => ({ id: "r", mirrors: [{ cluster: "canary", percent: 30, sampleBy }] });

  it("a header, a cookie or a query parameter", () => {
    expect(mirrored(route({ header: "x-user-id" }), { headers: { "x-user-id": user } })).toEqual(["canary"]);
    expect(mirrored(route({ header: "x-user-id" }), { headers: { "x-user-id": other } })).toEqual([]);
    expect(mirrored(route({ cookie: "session" }), { headers: { cookie: `theme=dark; session=${user}` } })).toEqual([
      "canary",
    ]);
    expect(mirrored(route({ cookie: "session" }), { headers: { cookie: `session=${other}; x=${user}` } })).toEqual([]);
    expect(mirrored(route({ query: "user" }), { query: `?a=1&user=${user}` })).toEqual(["canary"]);
    expect(mirrored(route({ query: "user" }), { query: `?user=${other}&user=${user}` })).toEqual([]);
  });

  it("takes the first pair of a cookie that appears twice, in one Cookie field or across two", () => {
    const cookie = route({ cookie: "session" });
    expect(mirrored(cookie, { headers: { cookie: `session=${user}; session=${other}` } })).toEqual(["canary"]);
    expect(mirrored(cookie, { headers: { cookie: `session=${other}; session=${user}` } })).toEqual([]);
    const twoFields = new Headers([
      ["cookie", `session=${other}`],
      ["cookie", `theme=dark; session=${user}`],
    ]);
    expect(mirrored(cookie, { headers: twoFields })).toEqual([]);
  });

  it("decodes a query value before hashing it, as the application reads it", () => {
    const spaced = USERS.map((u) => `${u} x`).find((u) => stickyPoint(u, "canary", KEY) < 0.3) as string;
    expect(mirrored(route({ query: "user" }), { query: `user=${spaced.replace(" ", "+")}` })).toEqual(["canary"]);
    expect(mirrored(route({ query: "user" }), { query: `user=${encodeURIComponent(spaced)}` })).toEqual(["canary"]);
  });

  it.each([
    ["no value", {}],
    ["an empty value", { headers: { "x-user-id": "" } }],
    ["a value longer than the bound", { headers: { "x-user-id": "u".repeat(MAX_STICKY_VALUE_LENGTH + 1) } }],
  ])("a request with %s is sampled at random", (_, request) => {
    expect(mirrored(route({ header: "x-user-id" }), request, () => 0)).toEqual(["canary"]);
    expect(mirrored(route({ header: "x-user-id" }), request, () => 0.99)).toEqual([]);
  });

  it("hashes a value of exactly the bound", () => {
    const long = "u".repeat(MAX_STICKY_VALUE_LENGTH);
    const expected = stickyPoint(long, "canary", KEY) < 0.3 ? ["canary"] : [];
    expect(mirrored(route({ header: "x-user-id" }), { headers: { "x-user-id": long } })).toEqual(expected);
  });

  it("draws nothing for 0 % and 100 %", () => {
    const sticky = (percent: number) => ({
      id: "r",
      mirrors: [{ cluster: "canary", percent, sampleBy: { header: "x-user-id" } }],
    });
    expect(mirrored(sticky(100), { headers: { "x-user-id": user } })).toEqual(["canary"]);
    expect(mirrored(sticky(0), { headers: { "x-user-id": user } })).toEqual([]);
  });
});

describe("cookieValue", () => {
  it.each([
    ["session=abc", "abc"],
    ["theme=dark; session=abc; lang=en", "abc"],
    ["theme=dark;session=abc", "abc"],
    ["xsession=1; session=2", "2"],
    ["a=session=3", undefined],
    ["session=1; session=2", "1"],
    ["session=1, session=2", "1"],
    ["theme=dark, session=abc", "abc"],
    ["session=; other=1", ""],
    ['session="quoted"', '"quoted"'],
    ["other=1", undefined],
  ])("%s → %s", (header, expected) => {
    expect(cookieValue(header, "session")).toBe(expected);
  });

  it("reads no header as no value", () => {
    expect(cookieValue(null, "session")).toBeUndefined();
  });
});

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseRoute, type RouteInput } from "../policy/index.js";
import { cookieValue, MAX_STICKY_VALUE_LENGTH, planMirrors, stickyPoint } from "./plan.js";

const clusters = new Map([
  ["canary", "http://canary.test"],
  ["canary-b", "http://canary-b.test"],
]);
const USERS = Array.from({ length: 20_000 }, (_, i) => `user-${i}`);
const never = (): number => {
  throw new Error("a sticky decision must not draw at random");
};

/** The documented rule, written out independently of the implementation. */
function documentedPoint(value: string, label: string): number {
  const bytes = [...new TextEncoder().encode(value), 0, ...new TextEncoder().encode(label)];
  let h = 0x811c9dc5;
  for (const byte of bytes) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 2 ** 32;
}

function mirrored(route: RouteInput, request: { headers?: HeadersInit; query?: string }, random = never): string[] {
  const plan = planMirrors(parseRoute(route), new Headers(request.headers), clusters, random, {
    query: new URLSearchParams(request.query ?? ""),
  });
  return plan.targets.map((t) => t.label);
}

/** The users a mirror with `percent` and `sampleBy: { header: "x-user-id" }` copies. */
function chosen(percent: number, cluster = "canary", routeId = "r"): Set<string> {
  const route = parseRoute({ id: routeId, mirrors: [{ cluster, percent, sampleBy: { header: "x-user-id" } }] });
  return new Set(
    USERS.filter(
      (user) => planMirrors(route, new Headers({ "x-user-id": user }), clusters, never).targets.length === 1,
    ),
  );
}

/** Within 4 standard deviations of a binomial(n, p) mean. */
function expectBinomial(hits: number, n: number, p: number) {
  const sd = Math.sqrt(n * p * (1 - p));
  expect(hits).toBeGreaterThan(n * p - 4 * sd);
  expect(hits).toBeLessThan(n * p + 4 * sd);
}

describe("stickyPoint", () => {
  it("is the documented FNV-1a + fmix32 of value, NUL, label, for any text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 64 }), fc.string({ maxLength: 32 }), (value, label) => {
        expect(stickyPoint(value, label)).toBe(documentedPoint(value, label));
      }),
      { numRuns: 2000 },
    );
  });

  it("never changes between releases: pinned values", () => {
    expect(stickyPoint("user-1", "canary")).toBe(1177975176 / 2 ** 32);
    expect(stickyPoint("8e1f3a2b-9c0d-4e5f", "https://audit.example.net")).toBe(1002544873 / 2 ** 32);
    expect(stickyPoint("héllo ✓", "canary")).toBe(1800390093 / 2 ** 32);
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
      (user) => planMirrors(route, new Headers({ "x-user-id": user }), clusters, never).targets.length === 1,
    );
    expect(byFraction).toEqual([...(at.get(20) ?? [])]);
  });
});

describe("where the sticky value comes from", () => {
  const user = USERS.find((u) => stickyPoint(u, "canary") < 0.3) as string;
  const other = USERS.find((u) => stickyPoint(u, "canary") >= 0.3) as string;
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

  it("decodes a query value before hashing it, as the application reads it", () => {
    const spaced = USERS.map((u) => `${u} x`).find((u) => stickyPoint(u, "canary") < 0.3) as string;
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
    const expected = stickyPoint(long, "canary") < 0.3 ? ["canary"] : [];
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

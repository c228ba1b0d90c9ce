import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PolicyValidationError } from "../errors/index.js";
import { compileRoutes } from "../match/index.js";
import { compareSpec, parseRoute } from "./index.js";
import { regexProblem } from "./safe-regex.js";

/**
 * Property tests over generated policies: each is either accepted and behaves per its fields,
 * or refused with an error located at the field that was broken.
 */
const name = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/);
const path = fc.array(fc.stringMatching(/^[a-z0-9-]{1,8}$/), { maxLength: 4 }).map((p) => `/${p.join("/")}`);
const validMirror = fc.record(
  {
    cluster: name,
    percent: fc.double({ min: 0, max: 100, noNaN: true }),
    timeoutMs: fc.integer({ min: 1, max: 30_000 }),
    hostSuffix: fc.stringMatching(/^[a-z0-9-]{0,10}$/),
    compare: fc.oneof(
      fc.boolean(),
      fc.record(
        {
          ignorePaths: fc.array(
            fc
              .array(
                fc.oneof(
                  name.map((k) => `.${k.replace(/[^a-z0-9_-]/g, "_").replace(/^[0-9-]/, "k")}`),
                  fc.constant("[*]"),
                  fc.nat(99).map((i) => `[${i}]`),
                ),
                { maxLength: 4 },
              )
              .map((steps) => `$${steps.join("")}`),
            { maxLength: 3 },
          ),
          maxBodyBytes: fc.integer({ min: 0, max: 8 * 1024 * 1024 }),
          reference: name.map((cluster) => ({ cluster })),
        },
        { requiredKeys: [] },
      ),
    ),
  },
  { requiredKeys: ["cluster"] },
);
const validRoute = fc.record(
  {
    id: name,
    priority: fc.integer({ min: -1000, max: 1000 }),
    match: fc.record(
      {
        path: fc.oneof(
          path.map((value) => ({ type: "Exact", value })),
          path.map((value) => ({ type: "PathPrefix", value })),
        ),
        methods: fc.uniqueArray(fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"), { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    timeoutMs: fc.integer({ min: 1, max: 300_000 }),
    mirrors: fc.array(validMirror, { maxLength: 4 }),
    maxMirrorBodyBytes: fc.integer({ min: 0, max: 10_000_000 }),
  },
  { requiredKeys: ["id"] },
);

/** One way to break a valid route, and the path the error must name. */
const breakage = fc.constantFrom(
  { path: "timeoutMs", value: 0 },
  { path: "timeoutMs", value: "fast" },
  { path: "priority", value: 1.5 },
  { path: "maxMirrorBodyBytes", value: -1 },
  { path: "id", value: "" },
  { path: "id", value: "has space" },
  { path: "match", value: { path: { type: "Glob", value: "/x" } } },
  { path: "mirrors", value: [{ cluster: "c", percent: 100.5 }] },
  { path: "mirrors", value: [{ origin: "gopher://x.test" }] },
  { path: "mirrors", value: [{ cluster: "c", origin: "https://x.test" }] },
  { path: "mirrors", value: [{ cluster: "c", timeoutMs: 30_001 }] },
  { path: "mirrors", value: [{ cluster: "c", compare: { ignorePaths: ["no-dollar"] } }] },
  { path: "mirrors", value: [{ cluster: "c", compare: { reference: { cluster: "r", origin: "https://r.test" } } }] },
  { path: "mirrors", value: [{ cluster: "c", compare: 1 }] },
  { path: "requestHeaders", value: { set: { "x-a": "line\nbreak" } } },
  { path: "surprise", value: true },
);

describe("generated policies", () => {
  it("valid ones are accepted and keep their fields; the table compiles and matches their own paths", () => {
    fc.assert(
      fc.property(validRoute, (input) => {
        const route = parseRoute(input);
        expect(route.id).toBe(input.id);
        expect(route.mirrors.map((m) => m.percent)).toEqual((input.mirrors ?? []).map((m) => m.percent));
        expect(route.mirrors.map((m) => compareSpec(m) !== undefined)).toEqual(
          (input.mirrors ?? []).map((m) => m.compare !== undefined && m.compare !== false),
        );
        expect(route.timeoutMs).toBe(input.timeoutMs ?? 15_000);
        const table = compileRoutes([route]);
        const p = route.match.path.value;
        const method = route.match.methods[0] ?? "GET";
        const found = table.find({ method, host: "h", path: p, headers: new Headers(), query: new URLSearchParams() });
        expect(found?.id).toBe(route.id);
      }),
      { numRuns: 5000 },
    );
  });

  it("broken ones are refused with an error at the broken field, and never with anything else", () => {
    fc.assert(
      fc.property(validRoute, breakage, (input, broken) => {
        const mutated = { ...input, [broken.path]: broken.value };
        try {
          parseRoute(mutated);
        } catch (err) {
          expect(err).toBeInstanceOf(PolicyValidationError);
          const paths = (err as PolicyValidationError).issues.map((i) => i.path);
          expect(
            paths.some((p) => p === broken.path || p.startsWith(`${broken.path}.`) || p.startsWith(`${broken.path}[`)),
          ).toBe(true);
          return;
        }
        throw new Error(`accepted a route broken at ${broken.path}`);
      }),
      { numRuns: 5000 },
    );
  });

  it("arbitrary JSON never crashes the parser", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          parseRoute(value);
        } catch (err) {
          expect(err).toBeInstanceOf(PolicyValidationError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("regular expressions", () => {
  it.each([
    "(a+)+",
    "(a*)*",
    "(a|aa)+",
    "(a|a?)+",
    "(.*a){12}",
    "([a-zA-Z]+)*",
    "(\\w+\\s?)+$",
    "(\\d|\\w)*x",
    "^(([a-z])+.)+[A-Z]([a-z])+$",
    "(x+x+)+y",
    "(.*){2,}",
    "((ab)*)+",
    "(a)\\1",
    "^(a+)+$",
    ".*.*.*.*=",
  ])("refuses the classic catastrophic pattern %s", (pattern) => {
    expect(regexProblem(pattern)).toBeDefined();
  });

  const atom = fc.constantFrom("a", "b", ".", "\\d", "[a-z]", "x");
  const quant = fc.constantFrom("", "", "*", "+", "?", "{2}", "{1,3}");
  const pattern: fc.Arbitrary<string> = fc.letrec<{ p: string }>((tie) => ({
    p: fc.oneof(
      { depthSize: "small" },
      fc.tuple(atom, quant).map(([a, q]) => a + q),
      fc
        .tuple(fc.array(tie("p"), { minLength: 1, maxLength: 3 }), quant)
        .map(([parts, q]) => `(${parts.join("|")})${q}`),
      fc.array(tie("p"), { minLength: 1, maxLength: 3 }).map((parts) => parts.join("")),
    ),
  })).p;

  it("never throws, and every pattern it accepts compiles", () => {
    fc.assert(
      fc.property(pattern, (p) => {
        const problem = regexProblem(p);
        if (problem === undefined) expect(() => new RegExp(p)).not.toThrow();
      }),
      { numRuns: 5000 },
    );
  });
});

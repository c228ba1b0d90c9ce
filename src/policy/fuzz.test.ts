import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileRoutes } from "../match/index.js";
import { rewritePathAndQuery } from "../mirror/rewrite.js";
import { regexProblem } from "../regex/index.js";
import { REDOS_ACCEPTED, REDOS_REFUSED } from "../regex/redos-corpus.js";
import { PolicyValidationError } from "./errors.js";
import { compareSpec, parseRoute } from "./index.js";

/**
 * Property tests over generated policies: each is either accepted and behaves per its fields,
 * or refused with an error located at the field that was broken.
 */
const name = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/);
const path = fc.array(fc.stringMatching(/^[a-z0-9-]{1,8}$/), { maxLength: 4 }).map((p) => `/${p.join("/")}`);
const escapeRegex = (literal: string) => literal.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
/** A pattern that matches `literal`: escaped as is, its letters widened to a class, or one branch of two. */
const regexMatching = (literal: string) =>
  fc.constantFrom(
    escapeRegex(literal),
    escapeRegex(literal).replace(/[a-z]+/g, "[a-z]+"),
    `(?:${escapeRegex(literal)}|x+)`,
  );

/** A match field and a request value it accepts, so that the compiled table can be asked about it. */
interface Witnessed<Spec> {
  spec: Spec;
  accepts: string;
}
const pathMatch = path.chain((p) =>
  fc.oneof(
    fc.constant({ spec: { type: "Exact", value: p }, accepts: p }),
    fc.constant({ spec: { type: "PathPrefix", value: p }, accepts: p }),
    regexMatching(p).map((value) => ({ spec: { type: "RegularExpression", value }, accepts: p })),
  ),
);
/** Header or query conditions, Exact (the default) or RegularExpression, one per name. */
const valueConditions = (conditionName: fc.Arbitrary<string>) =>
  fc.uniqueArray(
    fc.tuple(conditionName, fc.stringMatching(/^[a-z0-9.-]{0,12}$/)).chain(([n, v]) =>
      fc.oneof(
        fc.constant({ spec: { name: n, value: v }, accepts: v }),
        regexMatching(v).map((value) => ({ spec: { name: n, type: "RegularExpression", value }, accepts: v })),
      ),
    ),
    { maxLength: 3, selector: (c) => c.spec.name },
  );
const specs = <Spec>(conditions: readonly Witnessed<Spec>[] | undefined) => conditions?.map((c) => c.spec);
const accepted = <Spec extends { name: string }>(conditions: readonly Witnessed<Spec>[] | undefined) =>
  (conditions ?? []).map((c): [string, string] => [c.spec.name, c.accepts]);
const compare = fc.oneof(
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
);
const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,40}$/);
const sampleBy = fc.oneof(
  token.map((header) => ({ header })),
  token.map((cookie) => ({ cookie })),
  fc.string({ minLength: 1, maxLength: 256 }).map((query) => ({ query })),
);
/** Replacement paths: URL path characters and escapes, never a '.' or '..' segment. */
const replacement = fc
  .array(fc.stringMatching(/^(?:[A-Za-z0-9_~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}){1,8}$/), { maxLength: 4 })
  .chain((segments) => fc.constantFrom(`/${segments.join("/")}`, `/${segments.join("/")}/`));
/** ReplacePrefixMatch is valid on PathPrefix routes only. */
const urlRewrite = (prefixMatch: boolean) =>
  fc.oneof(
    replacement.map((value) => ({ path: { type: "ReplaceFullPath", replaceFullPath: value } })),
    ...(prefixMatch
      ? [
          fc
            .oneof(fc.constant(""), replacement)
            .map((value) => ({ path: { type: "ReplacePrefixMatch", replacePrefixMatch: value } })),
        ]
      : []),
  );
const hostSuffix = fc.stringMatching(/^[a-z0-9-]{0,10}$/);
const copySettings = (prefixMatch: boolean) => ({
  timeoutMs: fc.integer({ min: 1, max: 30_000 }),
  hostSuffix,
  compare,
  urlRewrite: urlRewrite(prefixMatch),
});
const validMirror = (prefixMatch: boolean) =>
  fc.record(
    {
      cluster: name,
      percent: fc.double({ min: 0, max: 100, noNaN: true }),
      sampleBy,
      ...copySettings(prefixMatch),
    },
    { requiredKeys: ["cluster"] },
  );
const validMirrorFromHeader = (prefixMatch: boolean) =>
  fc.record(
    { header: token, allow: fc.array(name, { maxLength: 4 }), ...copySettings(prefixMatch) },
    { requiredKeys: ["header", "allow"] },
  );
const copies = (prefixMatch: boolean) => ({
  mirrors: fc.array(validMirror(prefixMatch), { maxLength: 4 }),
  mirrorFromHeader: validMirrorFromHeader(prefixMatch),
});
/** Built once per kind of match: building arbitraries inside `chain` would cost more than running them. */
const copiesFor = { prefix: copies(true), other: copies(false) };
const headerConditions = valueConditions(fc.stringMatching(/^x-[a-z0-9-]{1,10}$/));
const queryConditions = valueConditions(fc.stringMatching(/^[a-z0-9_]{1,8}$/));
/** A valid route input, and the path, headers and query of a request it matches. */
const validRoute = fc
  .option(pathMatch, { nil: undefined })
  .chain((matchPath) => {
    const { mirrors, mirrorFromHeader } =
      matchPath === undefined || matchPath.spec.type === "PathPrefix" ? copiesFor.prefix : copiesFor.other;
    return fc.record(
      {
        id: name,
        priority: fc.integer({ min: -1000, max: 1000 }),
        match: fc.record(
          {
            ...(matchPath ? { path: fc.constant(matchPath) } : {}),
            methods: fc.uniqueArray(fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"), { maxLength: 3 }),
            headers: headerConditions,
            query: queryConditions,
          },
          { requiredKeys: [] },
        ),
        timeoutMs: fc.integer({ min: 1, max: 300_000 }),
        mirrors,
        mirrorFromHeader,
        maxMirrorBodyBytes: fc.integer({ min: 0, max: 32 * 1024 * 1024 }),
      },
      { requiredKeys: ["id"] },
    );
  })
  .map(({ match, ...rest }) => ({
    input: {
      ...rest,
      ...(match && {
        match: {
          ...match,
          ...(match.path && { path: match.path.spec }),
          ...(match.headers && { headers: specs(match.headers) }),
          ...(match.query && { query: specs(match.query) }),
        },
      }),
    },
    request: {
      path: match?.path?.accepts ?? "/",
      headers: accepted(match?.headers),
      query: accepted(match?.query),
    },
  }));

/** One way to break a valid route (with `also` changed alongside), and the path the error must name. */
const exactMatch = { path: { type: "Exact", value: "/x" } };
const prefixRewrite = { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } };
const breakage = fc.constantFrom<{ path: string; value: unknown; also?: object }>(
  { path: "timeoutMs", value: 0 },
  { path: "timeoutMs", value: "fast" },
  { path: "priority", value: 1.5 },
  { path: "maxMirrorBodyBytes", value: -1 },
  { path: "maxMirrorBodyBytes", value: 32 * 1024 * 1024 + 1 },
  { path: "id", value: "" },
  { path: "id", value: "has space" },
  { path: "match", value: { path: { type: "Glob", value: "/x" } } },
  { path: "match", value: { path: { type: "RegularExpression", value: "/(a)\\1" } } },
  { path: "match", value: { headers: [{ name: "x-a", type: "RegularExpression", value: "(" }] } },
  { path: "match", value: { query: [{ name: "q", type: "RegularExpression", value: "a(?=b)" }] } },
  { path: "mirrors", value: [{ cluster: "c", percent: 100.5 }] },
  { path: "mirrors", value: [{ origin: "gopher://x.test" }] },
  { path: "mirrors", value: [{ cluster: "c", origin: "https://x.test" }] },
  { path: "mirrors", value: [{ cluster: "c", timeoutMs: 30_001 }] },
  { path: "mirrors", value: [{ cluster: "c", compare: { ignorePaths: ["no-dollar"] } }] },
  { path: "mirrors", value: [{ cluster: "c", compare: { reference: { cluster: "r", origin: "https://r.test" } } }] },
  { path: "mirrors", value: [{ cluster: "c", compare: 1 }] },
  { path: "mirrors", value: [{ cluster: "c", percent: 5, sampleBy: {} }] },
  { path: "mirrors", value: [{ cluster: "c", percent: 5, sampleBy: { header: "x-user", query: "user" } }] },
  { path: "mirrors", value: [{ cluster: "c", percent: 5, sampleBy: { cookie: "bad cookie" } }] },
  { path: "mirrors", value: [{ cluster: "c", percent: 5, sampleBy: { session: "s" } }] },
  {
    path: "mirrors",
    value: [{ cluster: "c", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/a?b" } } }],
  },
  {
    path: "mirrors",
    value: [{ cluster: "c", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/a/.." } } }],
  },
  {
    path: "mirrors",
    value: [{ cluster: "c", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "v2" } } }],
  },
  { path: "mirrors", value: [{ cluster: "c", urlRewrite: { path: { type: "Rewrite" } } }] },
  { path: "mirrors", value: [{ cluster: "c", urlRewrite: prefixRewrite }], also: { match: exactMatch } },
  { path: "mirrorFromHeader", value: { header: "x-m" } },
  { path: "mirrorFromHeader", value: { header: "x-m", allow: ["c"], compare: 7 } },
  { path: "mirrorFromHeader", value: { header: "x-m", allow: ["c"], compare: { ignorePaths: ["no-dollar"] } } },
  {
    path: "mirrorFromHeader",
    value: { header: "x-m", allow: ["c"], urlRewrite: prefixRewrite },
    also: { match: exactMatch },
  },
  { path: "requestHeaders", value: { set: { "x-a": "line\nbreak" } } },
  { path: "surprise", value: true },
);

/** Thousands of generated policies, each compiling its patterns twice: CPU-bound work a shared machine may stretch. */
const PROPERTY_TIMEOUT_MS = 120_000;

describe("generated policies", { timeout: PROPERTY_TIMEOUT_MS }, () => {
  it("valid ones are accepted and keep their fields; the table compiles and matches their own requests", () => {
    fc.assert(
      fc.property(validRoute, ({ input, request }) => {
        const route = parseRoute(input);
        const compared = (copy: { compare?: unknown } | undefined) =>
          copy !== undefined && copy.compare !== undefined && copy.compare !== false;
        // One comparison per run: the property runs thousands of times.
        expect({
          id: route.id,
          timeoutMs: route.timeoutMs,
          mirrors: route.mirrors.map((m) => [m.percent, compareSpec(m) !== undefined, m.sampleBy, m.urlRewrite]),
          dynamic: [
            route.mirrorFromHeader && compareSpec(route.mirrorFromHeader) !== undefined,
            route.mirrorFromHeader?.urlRewrite,
          ],
        }).toEqual({
          id: input.id,
          timeoutMs: input.timeoutMs ?? 15_000,
          mirrors: (input.mirrors ?? []).map((m) => [m.percent, compared(m), m.sampleBy, m.urlRewrite]),
          dynamic: [input.mirrorFromHeader && compared(input.mirrorFromHeader), input.mirrorFromHeader?.urlRewrite],
        });
        const dynamic = route.mirrorFromHeader;
        // Whatever the rewrite, the rest of the path and the query arrive unchanged.
        const prefix = route.match.path.value.replace(/\/$/, "");
        for (const copy of [...route.mirrors, ...(dynamic ? [dynamic] : [])]) {
          const modifier = copy.urlRewrite?.path;
          if (modifier?.type !== "ReplacePrefixMatch") continue;
          const rewritten = rewritePathAndQuery(`${prefix}/r%2Fest?q=%20&q`, {
            replacePrefixMatch: modifier.replacePrefixMatch,
            prefix: route.match.path.value,
          });
          expect(rewritten).toBe(`${modifier.replacePrefixMatch.replace(/\/+$/, "")}/r%2Fest?q=%20&q`);
        }
        const table = compileRoutes([route]);
        const method = route.match.methods[0] ?? "GET";
        const headers = new Headers(request.headers);
        const query = new URLSearchParams(request.query);
        expect(table.find({ method, host: "h", path: request.path, headers, query })?.id).toBe(route.id);
      }),
      { numRuns: 5000 },
    );
  });

  it("broken ones are refused with an error at the broken field, and never with anything else", () => {
    fc.assert(
      fc.property(validRoute, breakage, ({ input }, broken) => {
        const mutated = { ...input, ...broken.also, [broken.path]: broken.value };
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
  /** Where a pattern can appear, and the field an error about it must name. */
  const PLACES = [
    ["match.path.value", (value: string) => ({ path: { type: "RegularExpression", value } })],
    ["match.headers[0].value", (value: string) => ({ headers: [{ name: "x-a", type: "RegularExpression", value }] })],
    ["match.query[0].value", (value: string) => ({ query: [{ name: "q", type: "RegularExpression", value }] })],
  ] as const;

  /** The engine's verdict, at each place: [] when accepted, else one issue at that field. */
  function expectJudgedAlikeEverywhere(pattern: string): void {
    const problem = regexProblem(pattern);
    for (const [field, match] of PLACES) {
      let issues: string[] = [];
      try {
        parseRoute({ id: "r", match: match(pattern) });
      } catch (err) {
        expect(err).toBeInstanceOf(PolicyValidationError);
        issues = (err as PolicyValidationError).issues.map((i) => `${i.path}: ${i.message}`);
      }
      expect(issues).toEqual(problem === undefined ? [] : [`${field}: ${problem}`]);
    }
  }

  it.each([...new Set([...REDOS_ACCEPTED.map((c) => c.pattern), ...REDOS_REFUSED.map(([p]) => p)])])(
    "the ReDoS pattern %s gets the engine's verdict (accepted, or refused saying why) in path, header and query",
    expectJudgedAlikeEverywhere,
  );

  const atom = fc.constantFrom("a", "b", ".", "\\d", "[a-z]", "x", "\\/", "(?=a)", "\\b", "(");
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

  it("every generated pattern gets the engine's verdict, at its own field, in path, header and query", () => {
    fc.assert(fc.property(pattern, expectJudgedAlikeEverywhere), { numRuns: 1000 });
  });
});

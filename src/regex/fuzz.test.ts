import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RegexError } from "./error.js";
import { compileRegex, regexProblem } from "./index.js";

/**
 * Differential tests against the JavaScript engine, the reference: for every pattern the engine
 * accepts, `compileRegex(p).test(s)` must equal `new RegExp("^(?:" + p + ")$").test(s)`.
 * Inputs stay short, because the reference backtracks.
 */
const jsFullMatch = (pattern: string, input: string) => new RegExp(`^(?:${pattern})$`).test(input);
const MAX_INPUT = 14;
/**
 * The reference backtracks through every way nested quantifiers can split an input that fails
 * near its end: `(?:(?:\/*?)+?)+?[-a]` on fourteen slashes took JavaScript 40 s. Patterns whose
 * quantifiers nest (star height 2, 3 or more) are tried on shorter inputs.
 */
const inputLimit = (height: number) => (height >= 3 ? 7 : height === 2 ? 10 : MAX_INPUT);
const RUNS = 2000;

/**
 * A generated pattern, the same pattern as JavaScript is asked (see `quantify`) and, from a list
 * of choices, a string built to match it.
 */
interface Generated {
  pattern: string;
  reference: string;
  /** How deep its quantifiers nest (star height). */
  height: number;
  sample(choices: Chooser): string;
}

class Chooser {
  private at = 0;
  constructor(private readonly choices: readonly number[]) {}
  pick(n: number): number {
    if (n <= 1 || this.choices.length === 0) return 0;
    return (this.choices[this.at++ % this.choices.length] as number) % n;
  }
}

/** Atoms of the supported subset, each with code units it matches. */
const ATOMS: ReadonlyArray<[string, string[]]> = [
  ["a", ["a"]],
  ["b", ["b"]],
  ["/", ["/"]],
  ["é", ["é"]],
  ["\\.", ["."]],
  ["\\/", ["/"]],
  ["\\-", ["-"]],
  ["\\x61", ["a"]],
  ["\\u0062", ["b"]],
  ["\\n", ["\n"]],
  ["\\t", ["\t"]],
  [".", ["a", "é", ".", "\u0085"]],
  ["\\d", ["0", "7"]],
  ["\\D", ["a", "-"]],
  ["\\w", ["a", "_", "Z"]],
  ["\\W", ["-", " ", "\n"]],
  ["\\s", [" ", "\t", "\u2028", "\u00a0"]],
  ["\\S", ["a", "/"]],
  ["[ab]", ["a", "b"]],
  ["[^a]", ["b", "/", "\n"]],
  ["[a-c]", ["a", "c"]],
  ["[\\d-]", ["-", "5"]],
  ["[^\\s/]", ["a", "é"]],
  ["[-a]", ["-", "a"]],
  ["[a\\-z]", ["-", "z"]],
  ["[\\w.]", [".", "q"]],
  ["[]", []],
  ["[^]", ["\n", "a"]],
  ["]", ["]"]],
  ["}", ["}"]],
];
const QUANTIFIERS: ReadonlyArray<[string, number, number]> = [
  ["*", 0, 3],
  ["+", 1, 3],
  ["?", 0, 1],
  ["{2}", 2, 2],
  ["{0,2}", 0, 2],
  ["{1,}", 1, 3],
  ["{1,3}", 1, 3],
];
const INPUT_UNITS = ["a", "b", "c", "/", "-", ".", "é", "\n", "1", " ", "_", "\u2028", "x", "]"];

const atom: fc.Arbitrary<Generated> = fc.constantFrom(...ATOMS).map(([pattern, units]) => ({
  pattern,
  reference: pattern,
  height: 0,
  sample: (c) => (units.length === 0 ? "" : (units[c.pick(units.length)] as string)),
}));

const anchor: fc.Arbitrary<Generated> = fc
  .constantFrom("^", "$")
  .map((pattern) => ({ pattern, reference: pattern, height: 0, sample: () => "" }));

/**
 * The V8 in workerd answers some lazy quantifiers without an upper bound wrongly:
 * `/(?:[^]*?a^|)/.exec("")` is null where the empty alternative matches (Node's V8 answers
 * `[""]`), and `(?:[^]+?a^||\/*)*` and `(?:[^]{1,}?a^||\/*)*` miss "////". So JavaScript is asked
 * for a lazy `*`, `+` or `{n,}` with `MAX_INPUT` as its upper bound, which means the same on
 * inputs no longer than that.
 */
function quantify(body: Generated, [quantifier, min, max]: [string, number, number], lazy: boolean): Generated {
  const unbounded = quantifier === "*" || quantifier === "+" || quantifier.endsWith(",}");
  const bounded = lazy && unbounded ? `{${min},${MAX_INPUT}}` : quantifier;
  return {
    pattern: `${body.pattern}${quantifier}${lazy ? "?" : ""}`,
    reference: `${body.reference}${bounded}${lazy ? "?" : ""}`,
    height: body.height + 1,
    sample: (c) => {
      let out = "";
      for (let i = min + c.pick(max - min + 1); i > 0; i--) out += body.sample(c);
      return out;
    },
  };
}

const sequence = (parts: Generated[]): Generated => ({
  pattern: parts.map((p) => p.pattern).join(""),
  reference: parts.map((p) => p.reference).join(""),
  height: Math.max(0, ...parts.map((p) => p.height)),
  sample: (c) => parts.map((p) => p.sample(c)).join(""),
});

const alternation = (parts: Generated[]): Generated => ({
  pattern: parts.map((p) => p.pattern).join("|"),
  reference: parts.map((p) => p.reference).join("|"),
  height: Math.max(0, ...parts.map((p) => p.height)),
  sample: (c) => (parts[c.pick(parts.length)] as Generated).sample(c),
});

const group = (open: string, body: Generated): Generated => ({
  pattern: `${open}${body.pattern})`,
  reference: `${open}${body.reference})`,
  height: body.height,
  sample: body.sample,
});

const { pattern: generatedPattern } = fc.letrec<{ pattern: Generated; term: Generated; quantifiable: Generated }>(
  (tie) => ({
    pattern: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      tie("term"),
      fc.array(tie("term"), { minLength: 2, maxLength: 4 }).map(sequence),
      fc.array(fc.array(tie("term"), { maxLength: 3 }).map(sequence), { minLength: 2, maxLength: 3 }).map(alternation),
    ),
    quantifiable: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      atom,
      fc.tuple(fc.constantFrom("(?:", "(", "(?<g>"), tie("pattern")).map(([open, body]) => group(open, body)),
    ),
    term: fc.oneof(
      atom,
      anchor,
      fc
        .tuple(tie("quantifiable"), fc.constantFrom(...QUANTIFIERS), fc.boolean())
        .map(([body, quantifier, lazy]) => quantify(body, quantifier, lazy)),
    ),
  }),
);

/** The sample itself, and near misses: a code unit inserted, or one dropped; none longer than `limit`. */
function inputsFor(sample: string, edits: readonly number[], limit: number): string[] {
  const inputs = [sample];
  for (let i = 0; i + 1 < edits.length; i += 2) {
    const at = (edits[i] as number) % (sample.length + 1);
    const unit = INPUT_UNITS[(edits[i + 1] as number) % INPUT_UNITS.length] as string;
    const insert = i % 4 === 0;
    inputs.push(sample.slice(0, at) + (insert ? unit : "") + sample.slice(insert ? at : at + 1));
  }
  return inputs.map((input) => input.slice(0, limit));
}

describe("generated patterns of the supported subset", () => {
  it("match exactly like JavaScript, on strings built to match them and on near misses", () => {
    let compared = 0;
    let matched = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        generatedPattern,
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.array(fc.constantFrom(...INPUT_UNITS), { maxLength: 8 }),
        (generated, choices, edits, randomUnits) => {
          const problem = regexProblem(generated.pattern);
          if (problem !== undefined) {
            refused++;
            // Only what JavaScript refuses, or the size caps, may refuse a pattern of this grammar.
            expect(problem).toMatch(/^(is not a valid regular expression|is too (large|complex))/);
            return;
          }
          const matcher = compileRegex(generated.pattern);
          const sample = generated.sample(new Chooser(choices));
          const limit = inputLimit(generated.height);
          for (const input of [...inputsFor(sample, edits, limit), randomUnits.join("").slice(0, limit)]) {
            const expected = jsFullMatch(generated.reference, input);
            expect(matcher.test(input), `${generated.pattern} on ${JSON.stringify(input)}`).toBe(expected);
            compared++;
            if (expected) matched++;
          }
        },
      ),
      { numRuns: RUNS },
    );
    // The generator must reach matches often, or the comparison proves little.
    expect(matched).toBeGreaterThan(compared / 10);
    expect(refused).toBeLessThan(RUNS / 4);
  }, 30_000);
});

describe("arbitrary strings as patterns", () => {
  const syntax = fc.constantFrom(
    ..."ab.\\()[]{}?*+|^$-,:=!<>0123dDwWsSbBkuxcpn/é".split(""),
    "(?:",
    "(?<n>",
    "\\u00e9",
    "{1,2}",
  );
  const soup = fc.oneof(
    fc.array(syntax, { maxLength: 24 }).map((parts) => parts.join("")),
    fc.string({ unit: "binary", maxLength: 40 }),
  );

  it("never crash the checker; what it accepts compiles and matches like JavaScript", () => {
    fc.assert(
      fc.property(soup, fc.array(fc.nat(), { maxLength: 8 }), (pattern, picks) => {
        let problem: string | undefined;
        expect(() => {
          problem = regexProblem(pattern);
        }).not.toThrow();
        if (problem !== undefined) {
          expect(() => compileRegex(pattern)).toThrow(RegexError);
          return;
        }
        const matcher = compileRegex(pattern);
        // Inputs from the pattern's own characters, where matches live.
        const units = [...pattern, "a", "\n"];
        const input = picks.map((p) => units[p % units.length]).join("");
        expect(matcher.test(input), `${pattern} on ${JSON.stringify(input)}`).toBe(jsFullMatch(pattern, input));
        expect(matcher.test("")).toBe(jsFullMatch(pattern, ""));
      }),
      { numRuns: RUNS },
    );
  }, 30_000);
});

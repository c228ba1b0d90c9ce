/**
 * @module regex
 * edge-mirror's own regular expression engine, for the patterns of route policies. Pure: no I/O,
 * no global state. Workers have no RE2, and JavaScript's RegExp backtracks: `(a+)+` against 24
 * `a`s and a `!` takes about 100 ms, and every extra `a` doubles it. This engine never
 * backtracks. A pattern is parsed (a subset of JavaScript syntax, see `parse.ts`), compiled to a
 * Thompson NFA, then to a DFA built whole and capped in size (see `dfa.ts`); matching walks that
 * DFA once, one table lookup per UTF-16 code unit, so its time is linear in the input whatever
 * the pattern.
 *
 * Matching is always whole-input: `compileRegex(p).test(s)` equals
 * `new RegExp("^(?:" + p + ")$").test(s)` for every pattern the engine accepts.
 *
 * Supported: literals and escapes (`\.`, `\/`, `\t`, `\xHH`, `\uHHHH`, …), `.`, `\d \w \s` and
 * their negations, classes with ranges and negation, groups `(…)`, `(?:…)`, `(?<name>…)` (which
 * only group), `|`, greedy and lazy `* + ? {n} {n,} {n,m}`, `^` and `$`. Refused, saying which:
 * backreferences, lookaround, `\b` and `\B`, inline modifiers, `\c`, octal and unknown letter
 * escapes, counts over 1,000, and patterns whose automata would pass the size caps.
 */

import { buildDfa, type Dfa, matchesWhole } from "./dfa.js";
import { RegexError } from "./error.js";
import { buildNfa } from "./nfa.js";
import { parsePattern } from "./parse.js";

export { RegexError } from "./error.js";

export const MAX_PATTERN_LENGTH = 512;

export interface FullMatcher {
  /** True when the whole of `input` matches the pattern. */
  test(input: string): boolean;
}

/**
 * What compiling a pattern costs besides the work counted while building its automata: checking
 * it with `RegExp`, parsing it and allocating its tables (a few microseconds, about what 100
 * units of counted work take).
 */
export const PATTERN_BASE_COST = 100;

/**
 * A compiled pattern. `stateCount` is its DFA's size, for diagnostics and tests; `compileCost` is
 * what compiling it took, in units of the engine's counted work (`PATTERN_BASE_COST`, one per
 * character, NFA state, alphabet piece visited, build step and table cell): the same on every
 * machine, so that budgets built on it are deterministic (see `src/match`).
 */
export class DfaMatcher implements FullMatcher {
  constructor(
    private readonly dfa: Dfa,
    readonly compileCost: number,
  ) {}

  get stateCount(): number {
    return this.dfa.stateCount;
  }

  test(input: string): boolean {
    return matchesWhole(this.dfa, input);
  }
}

/** Compiles `pattern` for whole-input matching, or throws a `RegexError` saying why it is refused. */
export function compileRegex(pattern: string): DfaMatcher {
  // A refused pattern is charged what it cost too, so that budgets bound refusals as well.
  let spent = PATTERN_BASE_COST + Math.min(pattern.length, MAX_PATTERN_LENGTH);
  try {
    if (pattern.length > MAX_PATTERN_LENGTH) throw new RegexError(`must be at most ${MAX_PATTERN_LENGTH} characters`);
    try {
      new RegExp(pattern);
    } catch (err) {
      throw new RegexError(`is not a valid regular expression (${(err as Error).message})`);
    }
    const nfa = buildNfa(parsePattern(pattern));
    spent += nfa.size;
    const dfa = buildDfa(nfa);
    return new DfaMatcher(dfa, spent + dfa.buildWork);
  } catch (err) {
    if (err instanceof RegexError) throw new RegexError(err.message, spent + err.compileCost);
    throw err;
  }
}

/** Why `pattern` is refused (invalid, unsupported, too long or too large), or `undefined`. */
export function regexProblem(pattern: string): string | undefined {
  try {
    compileRegex(pattern);
    return undefined;
  } catch (err) {
    if (err instanceof RegexError) return err.message;
    throw err;
  }
}

/**
 * @module regex/redos-corpus
 * Test data: patterns known for catastrophic backtracking in JavaScript's RegExp, and what
 * edge-mirror does with each. The engine, the policy validation and the route matcher are all
 * held to it. Not imported by the worker.
 */

const A16K = "a".repeat(16 * 1024);

export interface HostileCase {
  pattern: string;
  /** 16 KB aimed at the pattern's backtracking: near misses that a backtracking engine retries. */
  input: string;
  /** The whole-input answer, as JavaScript would give it if it ever finished. */
  matches: boolean;
}

/** Accepted: the DFA answers these in one pass over the input. */
export const REDOS_ACCEPTED: readonly HostileCase[] = [
  { pattern: "(a+)+", input: `${A16K}!`, matches: false },
  { pattern: "(a*)*", input: `${A16K}!`, matches: false },
  { pattern: "(a|aa)+", input: `${A16K}!`, matches: false },
  { pattern: "(a|a?)+", input: `${A16K}!`, matches: false },
  { pattern: "(.*a){20}", input: `${A16K}!`, matches: false },
  { pattern: "(.*a){20}", input: A16K, matches: true },
  { pattern: "([a-zA-Z]+)*", input: `${A16K}!`, matches: false },
  { pattern: "(\\w+\\s?)+", input: `${A16K}!`, matches: false },
  { pattern: "(\\d|\\w)*x", input: A16K, matches: false },
  { pattern: "(\\w|\\d)*", input: `${A16K}!`, matches: false },
  { pattern: "(x+x+)+y", input: "x".repeat(16 * 1024), matches: false },
  { pattern: "(.*){2,}", input: `${A16K}!`, matches: true },
  { pattern: "((ab)*)+", input: `${"ab".repeat(8 * 1024)}a`, matches: false },
  { pattern: "^(([a-z])+.)+[A-Z]([a-z])+$", input: `${A16K}!`, matches: false },
  { pattern: "/c.*.*.*x", input: `/c${A16K}`, matches: false },
  { pattern: "/c.*.*.*x", input: `/c${A16K}x`, matches: true },
  { pattern: ".*.*.*.*=", input: A16K, matches: false },
  { pattern: "/p(.{0,8}){8}x", input: `/p${A16K}x`, matches: false },
  { pattern: "/p(.{0,8}){8}x", input: `/p${"a".repeat(62)}x`, matches: true },
];

/** Refused at validation, each with the reason the engine gives. */
export const REDOS_REFUSED: ReadonlyArray<[pattern: string, reason: RegExp]> = [
  ["(a)\\1", /^must not use backreferences/],
  ["(a)+\\1", /^must not use backreferences/],
  [".*a.{20}", /^is too complex to match in linear time/],
  ["/p(.{0,16}){16}x", /^is too complex to match in linear time/],
];

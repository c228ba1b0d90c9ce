/**
 * @module regex/nfa
 * Thompson construction: the tree becomes a graph of states joined by ε-edges, with counted
 * repetition expanded into copies of its body. The size of that expansion is computed from the
 * tree, and capped, before a single state is built.
 */

import type { CodeUnitSet } from "./charset.js";
import { RegexError } from "./error.js";
import type { RegexNode } from "./parse.js";

/** Consumes one code unit of `sets[state]`, then goes to `next`. */
export const CHAR = 0;
/** ε to `next` and to `alt`. */
export const SPLIT = 1;
/** ε to `next`, only at the start of the input (`^`). */
export const START = 2;
/** ε to `next`, only at the end of the input (`$`). */
export const END = 3;
export const MATCH = 4;

/** Enough for any realistic route pattern; every DFA state is a subset of these. */
export const MAX_NFA_STATES = 4000;

export interface Nfa {
  readonly size: number;
  readonly start: number;
  readonly kind: readonly number[];
  readonly next: readonly number[];
  readonly alt: readonly number[];
  /** The code units a CHAR state consumes; undefined for the other kinds. */
  readonly sets: ReadonlyArray<CodeUnitSet | undefined>;
}

export function buildNfa(tree: RegexNode): Nfa {
  if (expandedSize(tree) > MAX_NFA_STATES) {
    throw new RegexError(
      `is too large: counted repetition ({n,m}) expands it to more than ${MAX_NFA_STATES} automaton states`,
    );
  }
  const builder = new Builder();
  const match = builder.add(MATCH, -1);
  const start = builder.compile(tree, match);
  return {
    size: builder.kind.length,
    start,
    kind: builder.kind,
    next: builder.next,
    alt: builder.alt,
    sets: builder.sets,
  };
}

/**
 * How many states `Builder.compile` makes for `node` (mirroring it rule for rule), saturated just
 * above the cap so that nested counts never reach Infinity (and `0 × Infinity` never gives NaN).
 */
export function expandedSize(node: RegexNode): number {
  return Math.min(unsaturatedSize(node), MAX_NFA_STATES + 1);
}

function unsaturatedSize(node: RegexNode): number {
  switch (node.kind) {
    case "chars":
    case "start":
    case "end":
      return 1;
    case "sequence":
      return node.items.reduce((sum, item) => sum + expandedSize(item), 0);
    case "alternation":
      return node.items.reduce((sum, item) => sum + expandedSize(item), node.items.length - 1);
    case "repeat": {
      const body = expandedSize(node.body);
      if (body === 0) return 0;
      if (node.max === Number.POSITIVE_INFINITY) return node.min === 0 ? body + 1 : node.min * body + 1;
      return node.min * body + (node.max - node.min) * (body + 1);
    }
  }
}

/** Builds back to front: each piece is compiled knowing the state that follows it. */
class Builder {
  readonly kind: number[] = [];
  readonly next: number[] = [];
  readonly alt: number[] = [];
  readonly sets: Array<CodeUnitSet | undefined> = [];

  add(kind: number, next: number, alt = -1, set?: CodeUnitSet): number {
    this.kind.push(kind);
    this.next.push(next);
    this.alt.push(alt);
    this.sets.push(set);
    return this.kind.length - 1;
  }

  /** Returns the entry state of `node`, whose exits all lead to `next`. */
  compile(node: RegexNode, next: number): number {
    switch (node.kind) {
      case "chars":
        return this.add(CHAR, next, -1, node.set);
      case "start":
        return this.add(START, next);
      case "end":
        return this.add(END, next);
      case "sequence":
        return node.items.reduceRight((following, item) => this.compile(item, following), next);
      case "alternation": {
        const entries = node.items.map((item) => this.compile(item, next));
        return entries.reduceRight((rest, entry) => this.add(SPLIT, entry, rest));
      }
      case "repeat":
        return this.repeat(node.body, node.min, node.max, next);
    }
  }

  private repeat(body: RegexNode, min: number, max: number, next: number): number {
    if (expandedSize(body) === 0) return next;
    let entry: number;
    let mandatory = min;
    if (max === Number.POSITIVE_INFINITY) {
      // One copy loops on itself; with min ≥ 1 it is also the last mandatory copy (`a+` = a, loop).
      const loop = this.add(SPLIT, -1, next);
      const bodyEntry = this.compile(body, loop);
      this.next[loop] = bodyEntry;
      entry = min === 0 ? loop : bodyEntry;
      mandatory = Math.max(0, min - 1);
    } else {
      // `a{2,4}` = a a (?:a (?:a)?)?: each optional copy may leave straight to `next`.
      entry = next;
      for (let i = min; i < max; i++) entry = this.add(SPLIT, this.compile(body, entry), next);
    }
    for (let i = 0; i < mandatory; i++) entry = this.compile(body, entry);
    return entry;
  }
}

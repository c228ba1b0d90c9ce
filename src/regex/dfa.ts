/**
 * @module regex/dfa
 * The whole DFA, built by subset construction when the pattern is compiled, over alphabet
 * equivalence classes (code units that no part of the pattern tells apart share a column), and
 * the full-match walk over it: one table lookup per UTF-16 code unit of the input.
 *
 * Why all of it up front rather than lazily: a lazily built DFA whose cache is cleared when it
 * fills stays linear, but a pattern such as `.*a.{20}` has 2^21 reachable states, and hostile
 * input then makes every code unit a fresh subset construction (microseconds each: tens of
 * milliseconds on 16 KB). Building the DFA at compile time, under caps on its states, its table
 * and the work spent, turns those patterns into a clear refusal at validation instead, and
 * leaves matching with nothing but table lookups.
 */

import { type CodeUnitSet, MAX_CODE_UNIT } from "./charset.js";
import { RegexError } from "./error.js";
import { CHAR, END, MATCH, type Nfa, SPLIT, START } from "./nfa.js";

/*
 * Caps on one pattern's DFA. Route patterns need far less (a 20-word alternation of API paths:
 * 250 states; a UUID: 40); the caps keep building one pattern, which happens at validation and
 * again when the route table is compiled, within a few milliseconds, and its table within 128 KB.
 */
export const MAX_DFA_STATES = 1000;
/** 16-bit cells: states × alphabet classes. */
export const MAX_TABLE_CELLS = 64 * 1024;
/** NFA states visited and transitions gathered while building. */
export const MAX_BUILD_STEPS = 100_000;

const ASCII_LIMIT = 128;
const DEAD = 0;
const INITIAL = 1;

export interface Dfa {
  readonly stateCount: number;
  /**
   * The work that building it took, counted rather than timed so that it is the same on every
   * machine: alphabet pieces and the pieces visited while cutting it, states visited and
   * transitions gathered (the steps that `MAX_BUILD_STEPS` caps), and table cells filled.
   */
  readonly buildWork: number;
  readonly classCount: number;
  /** The class of each ASCII code unit. */
  readonly ascii: Uint16Array;
  /** Above ASCII: the first code unit of each run of one class, ascending, and that class. */
  readonly wideStarts: readonly number[];
  readonly wideClasses: readonly number[];
  /** `table[state * classCount + class]` is the next state; state 0 is dead, state 1 initial. */
  readonly table: Uint16Array;
  /** 1 where ending the input in that state is a full match. */
  readonly accepting: Uint8Array;
}

/** True when the whole of `input` matches: one table step per code unit, stopping at the dead state. */
export function matchesWhole(dfa: Dfa, input: string): boolean {
  const { table, classCount, ascii } = dfa;
  let state = INITIAL;
  for (let i = 0; i < input.length; i++) {
    const unit = input.charCodeAt(i);
    const column = unit < ASCII_LIMIT ? (ascii[unit] as number) : wideClassOf(dfa, unit);
    state = table[state * classCount + column] as number;
    if (state === DEAD) return false;
  }
  return dfa.accepting[state] === 1;
}

function wideClassOf(dfa: Dfa, unit: number): number {
  const starts = dfa.wideStarts;
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] as number) <= unit) lo = mid;
    else hi = mid - 1;
  }
  return dfa.wideClasses[lo] as number;
}

interface Alphabet {
  classCount: number;
  ascii: Uint16Array;
  wideStarts: number[];
  wideClasses: number[];
  /** For each distinct set, the classes it contains. */
  classesOfSet: number[][];
  /** Pieces cut and visited: what building the alphabet cost. */
  work: number;
}

/**
 * Cuts the code units at every range boundary of every set (and at 128, so that ASCII has a
 * table of its own), then merges the pieces that belong to exactly the same sets.
 */
function buildAlphabet(sets: readonly CodeUnitSet[]): Alphabet {
  const cuts = new Set<number>([0, ASCII_LIMIT]);
  for (const set of sets) {
    for (let i = 0; i < set.length; i += 2) {
      cuts.add(set[i] as number);
      if ((set[i + 1] as number) < MAX_CODE_UNIT) cuts.add((set[i + 1] as number) + 1);
    }
  }
  const pieceStarts = [...cuts].sort((a, b) => a - b);
  const pieceAt = new Map(pieceStarts.map((start, piece) => [start, piece]));
  let work = pieceStarts.length;
  const forEachPiece = (set: CodeUnitSet, visit: (piece: number) => void) => {
    for (let i = 0; i < set.length; i += 2) {
      const hi = set[i + 1] as number;
      for (let piece = pieceAt.get(set[i] as number) as number; (pieceStarts[piece] ?? Infinity) <= hi; piece++) {
        work++;
        visit(piece);
      }
    }
  };
  const setsOfPiece: number[][] = pieceStarts.map(() => []);
  sets.forEach((set, id) => {
    forEachPiece(set, (piece) => {
      (setsOfPiece[piece] as number[]).push(id);
    });
  });
  const classBySignature = new Map<string, number>();
  const classOfPiece = setsOfPiece.map((ids) => internedId(classBySignature, ids.join(",")));

  const ascii = new Uint16Array(ASCII_LIMIT);
  let piece = 0;
  for (let unit = 0; unit < ASCII_LIMIT; unit++) {
    while ((pieceStarts[piece + 1] as number) <= unit) piece++;
    ascii[unit] = classOfPiece[piece] as number;
  }
  const wideStarts: number[] = [];
  const wideClasses: number[] = [];
  pieceStarts.forEach((start, p) => {
    const cls = classOfPiece[p] as number;
    if (start >= ASCII_LIMIT && wideClasses[wideClasses.length - 1] !== cls) {
      wideStarts.push(start);
      wideClasses.push(cls);
    }
  });
  // The pieces of one class may be scattered through a set: the mark keeps each class once.
  const lastSetOfClass: number[] = new Array(classBySignature.size).fill(-1);
  const classesOfSet = sets.map((set, id) => {
    const classes: number[] = [];
    forEachPiece(set, (piece) => {
      const cls = classOfPiece[piece] as number;
      if (lastSetOfClass[cls] === id) return;
      lastSetOfClass[cls] = id;
      classes.push(cls);
    });
    return classes;
  });
  return { classCount: classBySignature.size, ascii, wideStarts, wideClasses, classesOfSet, work };
}

const ascending = (a: number, b: number) => a - b;

/** The id of `key` in `ids`, numbered in order of first sight. */
function internedId<K>(ids: Map<K, number>, key: K): number {
  let id = ids.get(key);
  if (id === undefined) {
    id = ids.size;
    ids.set(key, id);
  }
  return id;
}

/** `spent`: the work counted until the pattern was refused (see `Dfa.buildWork`). */
function tooComplex(need: string, spent: number): RegexError {
  return new RegexError(
    `is too complex to match in linear time: its automaton needs ${need} (a counted repeat after .* or after a wide class, as in .*a.{20}, multiplies states)`,
    spent,
  );
}

export function buildDfa(nfa: Nfa): Dfa {
  // Sets are told apart by identity: always sound, and the parser shares one array per literal
  // and per class escape, so that few are distinct.
  const setIds = new Map<CodeUnitSet, number>();
  const setIdOfState = nfa.sets.map((set) => (set === undefined ? -1 : internedId(setIds, set)));
  const alphabet = buildAlphabet([...setIds.keys()]);
  const classesOfState = setIdOfState.map((id) => (id < 0 ? [] : (alphabet.classesOfSet[id] as number[])));
  const built = new SubsetConstruction(nfa, alphabet.classCount, classesOfState, alphabet.work).run();
  return {
    stateCount: built.accepting.length,
    buildWork: built.work,
    classCount: alphabet.classCount,
    ascii: alphabet.ascii,
    wideStarts: alphabet.wideStarts,
    wideClasses: alphabet.wideClasses,
    table: built.table,
    accepting: built.accepting,
  };
}

/**
 * A DFA state is the set of "important" NFA states reachable without consuming anything: CHAR
 * states, MATCH, and END states waiting for the end of the input. `^` is only crossed from the
 * initial state; `$` only when deciding whether a state accepts.
 */
class SubsetConstruction {
  private readonly visited: number[];
  private visit = 0;
  private readonly stack: number[] = [];
  private steps = 0;
  private readonly sets: number[][] = [];
  private readonly idByKey = new Map<string, number>();
  /** The DFA state each bucket of NFA states leads to, by the bucket's members. */
  private readonly stateAfterBucket = new Map<string, number>();
  /** Per class, the NFA states that follow on it from the state being filled; reused row to row. */
  private readonly buckets: Array<number[] | undefined>;
  private readonly table: number[] = [];
  private readonly accepting: number[] = [];

  constructor(
    private readonly nfa: Nfa,
    private readonly classCount: number,
    private readonly classesOfState: readonly number[][],
    /** What building the alphabet took. */
    private readonly alphabetWork: number,
  ) {
    this.visited = new Array(nfa.size).fill(0);
    this.buckets = new Array(classCount);
  }

  run(): { table: Uint16Array; accepting: Uint8Array; work: number } {
    this.addState([], false); // DEAD: every transition leads back to it, and it never accepts
    // The initial state is never looked up by key: the same set reached later has no `^` to cross.
    const start = [this.nfa.start];
    this.addState(this.closure(start, true, false), this.hasMatch(this.closure(start, true, true)));
    for (let state = INITIAL; state < this.sets.length; state++) this.fillRow(state);
    return {
      table: Uint16Array.from(this.table),
      accepting: Uint8Array.from(this.accepting),
      work: this.work(),
    };
  }

  private fillRow(state: number): void {
    const { kind, next } = this.nfa;
    const touched: number[] = [];
    for (const nfaState of this.sets[state] as number[]) {
      if (kind[nfaState] !== CHAR) continue;
      const classes = this.classesOfState[nfaState] as number[];
      this.count(classes.length);
      for (const cls of classes) {
        const bucket = this.buckets[cls];
        if (bucket) bucket.push(next[nfaState] as number);
        else {
          this.buckets[cls] = [next[nfaState] as number];
          touched.push(cls);
        }
      }
    }
    for (const cls of touched) {
      const bucket = this.buckets[cls] as number[];
      this.buckets[cls] = undefined;
      this.table[state * this.classCount + cls] = this.stateAfter(bucket);
    }
  }

  /** Classes and rows often share a bucket (every letter that both `.` and `[a-z]` take): one closure for all. */
  private stateAfter(bucket: readonly number[]): number {
    const bucketKey = bucket.join(",");
    let target = this.stateAfterBucket.get(bucketKey);
    if (target === undefined) {
      target = this.stateFor(this.closure(bucket, false, false));
      this.stateAfterBucket.set(bucketKey, target);
    }
    return target;
  }

  private stateFor(important: number[]): number {
    if (important.length === 0) return DEAD;
    const key = important.join(",");
    return this.idByKey.get(key) ?? this.addState(important, this.acceptsAtEnd(important), key);
  }

  private addState(important: number[], accepts: boolean, key?: string): number {
    const id = this.sets.length;
    if (id >= MAX_DFA_STATES) throw tooComplex(`more than ${MAX_DFA_STATES} states`, this.work());
    if ((id + 1) * this.classCount > MAX_TABLE_CELLS) {
      throw tooComplex(`more than ${MAX_TABLE_CELLS} transitions`, this.work());
    }
    for (let cls = 0; cls < this.classCount; cls++) this.table.push(DEAD);
    this.sets.push(important);
    if (key !== undefined) this.idByKey.set(key, id);
    this.accepting.push(accepts ? 1 : 0);
    return id;
  }

  /** Whether ending the input here is a match: MATCH is in the set, or behind one of its `$`. */
  private acceptsAtEnd(important: readonly number[]): boolean {
    if (this.hasMatch(important)) return true;
    const waitingForEnd = important.filter((state) => this.nfa.kind[state] === END);
    return waitingForEnd.length > 0 && this.hasMatch(this.closure(waitingForEnd, false, true));
  }

  private hasMatch(states: readonly number[]): boolean {
    return states.some((state) => this.nfa.kind[state] === MATCH);
  }

  /** The important states reachable from `seeds` through ε-edges, ascending. */
  private closure(seeds: readonly number[], atStart: boolean, atEnd: boolean): number[] {
    const { kind, next, alt } = this.nfa;
    const mark = ++this.visit;
    const important: number[] = [];
    const stack = this.stack;
    for (const seed of seeds) stack.push(seed);
    while (stack.length > 0) {
      const state = stack.pop() as number;
      if (this.visited[state] === mark) continue;
      this.visited[state] = mark;
      this.count(1);
      switch (kind[state]) {
        case SPLIT:
          stack.push(alt[state] as number, next[state] as number);
          break;
        case START:
          if (atStart) stack.push(next[state] as number);
          break;
        case END:
          if (atEnd) stack.push(next[state] as number);
          else important.push(state);
          break;
        default:
          important.push(state);
      }
    }
    return important.length > 1 ? important.sort(ascending) : important;
  }

  private count(steps: number): void {
    this.steps += steps;
    if (this.steps > MAX_BUILD_STEPS) throw tooComplex(`more than ${MAX_BUILD_STEPS} steps to build`, this.work());
  }

  /** The alphabet's work, the steps counted and the table cells filled so far. */
  private work(): number {
    return this.alphabetWork + this.steps + this.table.length;
  }
}

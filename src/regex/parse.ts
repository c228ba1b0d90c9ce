/**
 * @module regex/parse
 * Parses the supported subset of JavaScript regular expression syntax (no flags, Annex B rules
 * for lone `{`, `}` and `]`) into a tree. The caller has already checked the pattern with
 * `new RegExp`, so anything this parser does not recognise is refused as unsupported rather
 * than guessed at: a refused pattern can be rewritten, a misread one would silently match
 * something else than the JavaScript engine would.
 */

import { type CodeUnitSet, complementOf, DIGIT, DOT, EMPTY_SET, SPACE, singleton, unionOf, WORD } from "./charset.js";
import { RegexError } from "./error.js";

/** Groups only group: nothing is captured, so every group kind becomes its content. */
export type RegexNode =
  | { kind: "chars"; set: CodeUnitSet }
  | { kind: "sequence"; items: readonly RegexNode[] }
  | { kind: "alternation"; items: readonly RegexNode[] }
  /** `max` is `Infinity` for `*`, `+` and `{n,}`; laziness does not change whether a full match exists. */
  | { kind: "repeat"; body: RegexNode; min: number; max: number }
  /** `^` and `$` without the `m` flag: the very start and the very end of the input. */
  | { kind: "start" }
  | { kind: "end" };

/** Larger counts are refused outright: they could only ever blow the automaton size cap. */
export const MAX_REPEAT_COUNT = 1000;

const CLASS_ESCAPES: Readonly<Record<string, CodeUnitSet>> = Object.assign(Object.create(null), {
  d: DIGIT,
  D: complementOf(DIGIT),
  w: WORD,
  W: complementOf(WORD),
  s: SPACE,
  S: complementOf(SPACE),
});

const CONTROL_ESCAPES: Readonly<Record<string, number>> = Object.assign(Object.create(null), {
  t: 0x09,
  n: 0x0a,
  v: 0x0b,
  f: 0x0c,
  r: 0x0d,
});

const BRACED_QUANTIFIER = /\{(\d+)(?:(,)(\d*))?\}/y;
const HEX2 = /[0-9A-Fa-f]{2}/y;
const HEX4 = /[0-9A-Fa-f]{4}/y;

export function parsePattern(pattern: string): RegexNode {
  return new Parser(pattern).parse();
}

/** One class atom: a set, and the code unit it stands for when it can end a range (`a` in `a-z`). */
interface ClassAtom {
  set: CodeUnitSet;
  codeUnit: number | undefined;
}

class Parser {
  private pos = 0;
  private readonly literals = new Map<number, CodeUnitSet>();

  constructor(private readonly source: string) {}

  parse(): RegexNode {
    const node = this.disjunction();
    if (this.pos < this.source.length) throw this.unsupported("an unmatched ')'");
    return node;
  }

  private disjunction(): RegexNode {
    const items = [this.alternative()];
    while (this.peek() === "|") {
      this.pos++;
      items.push(this.alternative());
    }
    return items.length === 1 ? (items[0] as RegexNode) : { kind: "alternation", items };
  }

  private alternative(): RegexNode {
    const items: RegexNode[] = [];
    while (this.pos < this.source.length && this.peek() !== "|" && this.peek() !== ")") items.push(this.term());
    return items.length === 1 ? (items[0] as RegexNode) : { kind: "sequence", items };
  }

  private term(): RegexNode {
    const ch = this.peek();
    if (ch === "^" || ch === "$") {
      this.pos++;
      return { kind: ch === "^" ? "start" : "end" };
    }
    return this.quantified(this.atom());
  }

  private atom(): RegexNode {
    const at = this.pos;
    const ch = this.source[this.pos++] as string;
    switch (ch) {
      case ".":
        return { kind: "chars", set: DOT };
      case "[":
        return { kind: "chars", set: this.characterClass() };
      case "(":
        return this.group(at);
      case "\\":
        return this.atomEscape(at);
      case "*":
      case "+":
      case "?":
        throw this.unsupported(`a quantifier with nothing to repeat at index ${at}`);
      default:
        if (ch === "{" && this.bracedQuantifierAt(at)) {
          throw this.unsupported(`a quantifier with nothing to repeat at index ${at}`);
        }
        // Annex B: a `{` that does not start a quantifier, a lone `}` or `]` is a literal.
        return { kind: "chars", set: this.literal(ch.charCodeAt(0)) };
    }
  }

  private group(at: number): RegexNode {
    if (this.source.startsWith("?", this.pos)) {
      const head = this.source.slice(at, at + 4);
      if (head.startsWith("(?:")) this.pos += 2;
      else if (/^\(\?(?:[=!]|<[=!])/.test(head)) {
        throw new RegexError(
          `must not use lookahead or lookbehind (${head.slice(0, head[2] === "<" ? 4 : 3)} at index ${at})`,
        );
      } else if (head.startsWith("(?<")) {
        const close = this.source.indexOf(">", at);
        if (close < 0) throw this.unsupported(`an unterminated group name at index ${at}`);
        this.pos = close + 1;
      } else {
        throw new RegexError(`must not use inline modifiers such as (?i:…) (found at index ${at})`);
      }
    }
    const body = this.disjunction();
    if (this.peek() !== ")") throw this.unsupported(`an unterminated group at index ${at}`);
    this.pos++;
    return body;
  }

  private quantified(atom: RegexNode): RegexNode {
    const at = this.pos;
    const ch = this.peek();
    let min: number;
    let max: number;
    if (ch === "*" || ch === "+" || ch === "?") {
      this.pos++;
      min = ch === "+" ? 1 : 0;
      max = ch === "?" ? 1 : Number.POSITIVE_INFINITY;
    } else {
      const braced = this.bracedQuantifierAt(at);
      if (!braced) return atom;
      this.pos += braced[0].length;
      min = Number(braced[1]);
      max = braced[2] === undefined ? min : braced[3] === "" ? Number.POSITIVE_INFINITY : Number(braced[3]);
      if (max < min) throw this.unsupported(`a quantifier out of order at index ${at}`);
      if (min > MAX_REPEAT_COUNT || (max !== Number.POSITIVE_INFINITY && max > MAX_REPEAT_COUNT)) {
        throw new RegexError(`must not repeat more than ${MAX_REPEAT_COUNT} times (${braced[0]} at index ${at})`);
      }
    }
    if (this.peek() === "?") this.pos++; // lazy: same language, so the same full-match answer
    return { kind: "repeat", body: atom, min, max };
  }

  private bracedQuantifierAt(at: number): RegExpExecArray | null {
    BRACED_QUANTIFIER.lastIndex = at;
    return BRACED_QUANTIFIER.exec(this.source);
  }

  private atomEscape(at: number): RegexNode {
    const ch = this.source[this.pos];
    if (ch === "b" || ch === "B") throw new RegexError(`must not use word boundaries (\\${ch} at index ${at})`);
    return { kind: "chars", set: this.characterEscape(at, false) };
  }

  /** The escape after a `\` at `at`, inside a class or not; class escapes (`\d`) give their set. */
  private characterEscape(at: number, inClass: boolean): CodeUnitSet {
    const ch = this.source[this.pos++];
    if (ch === undefined) throw this.unsupported("a trailing '\\'");
    const classEscape = CLASS_ESCAPES[ch];
    if (classEscape) return classEscape;
    const control = CONTROL_ESCAPES[ch];
    if (control !== undefined) return this.literal(control);
    if (inClass && ch === "b") return this.literal(0x08);
    if (ch === "x") return this.literal(this.hexDigits(HEX2, at, "\\x as \\xHH, with two hex digits"));
    if (ch === "u") return this.literal(this.hexDigits(HEX4, at, "\\u as \\uHHHH, with four hex digits"));
    if (ch === "0" && !/[0-9]/.test(this.peek())) return this.literal(0);
    if (/[0-9]/.test(ch)) {
      throw new RegexError(`must not use backreferences or octal escapes (\\${ch} at index ${at}); write \\xHH`);
    }
    if (ch === "k") throw new RegexError(`must not use backreferences (\\k at index ${at})`);
    if (ch === "c") throw new RegexError(`must not use control escapes (\\c at index ${at}); write \\xHH`);
    if (ch === "p" || ch === "P") {
      throw new RegexError(`must not use unicode property escapes (\\${ch} at index ${at}); they need the u flag`);
    }
    if (/[A-Za-z]/.test(ch)) throw new RegexError(`must not use the unknown escape \\${ch} (at index ${at})`);
    return this.literal(ch.charCodeAt(0)); // `\.`, `\/`, `\-`, …: the character itself
  }

  private hexDigits(digits: RegExp, at: number, rule: string): number {
    digits.lastIndex = this.pos;
    const found = digits.exec(this.source);
    if (!found) throw new RegexError(`must write ${rule} (at index ${at})`);
    this.pos += found[0].length;
    return Number.parseInt(found[0], 16);
  }

  /** After the `[`: `[^…]`, ranges, escapes; Annex B reads `[\d-z]` as `\d`, `-` and `z`. */
  private characterClass(): CodeUnitSet {
    const start = this.pos - 1;
    const negated = this.peek() === "^";
    if (negated) this.pos++;
    const parts: CodeUnitSet[] = [];
    while (this.peek() !== "]") {
      if (this.pos >= this.source.length) throw this.unsupported(`an unterminated character class at index ${start}`);
      const from = this.classAtom();
      if (this.peek() === "-" && this.source[this.pos + 1] !== "]" && this.pos + 1 < this.source.length) {
        this.pos++;
        const to = this.classAtom();
        if (from.codeUnit === undefined || to.codeUnit === undefined) parts.push(from.set, this.literal(0x2d), to.set);
        else if (from.codeUnit > to.codeUnit) throw this.unsupported(`a reversed range at index ${start}`);
        else parts.push([from.codeUnit, to.codeUnit]);
      } else {
        parts.push(from.set);
      }
    }
    this.pos++;
    const set = parts.length === 0 ? EMPTY_SET : unionOf(...parts);
    return negated ? complementOf(set) : set;
  }

  private classAtom(): ClassAtom {
    const at = this.pos;
    const ch = this.source[this.pos++] as string;
    if (ch !== "\\") return { set: this.literal(ch.charCodeAt(0)), codeUnit: ch.charCodeAt(0) };
    const set = this.characterEscape(at, true);
    // Every escape but a class escape (`\d`, `\W`, …) stands for one code unit.
    const isClassEscape = CLASS_ESCAPES[this.source[at + 1] as string] !== undefined;
    return { set, codeUnit: isClassEscape ? undefined : (set[0] as number) };
  }

  /** One shared set per distinct literal, so that the automaton sees each character once. */
  private literal(codeUnit: number): CodeUnitSet {
    let set = this.literals.get(codeUnit);
    if (!set) {
      set = singleton(codeUnit);
      this.literals.set(codeUnit, set);
    }
    return set;
  }

  private peek(): string {
    return this.source[this.pos] ?? "";
  }

  /** Syntax the JavaScript engine itself refuses; kept as a safety net behind the `new RegExp` check. */
  private unsupported(what: string): RegexError {
    return new RegexError(`is not a supported regular expression (${what})`);
  }
}

/**
 * @module regex/charset
 * Sets of UTF-16 code units, as JavaScript regular expressions without the `u` flag see a string:
 * sorted, disjoint, non-adjacent inclusive ranges `[lo0, hi0, lo1, hi1, …]`.
 */

/** Sorted, disjoint, non-adjacent inclusive ranges: `[lo0, hi0, lo1, hi1, …]`. */
export type CodeUnitSet = readonly number[];

export const MAX_CODE_UNIT = 0xffff;

export const EMPTY_SET: CodeUnitSet = [];
export const ANY_CODE_UNIT: CodeUnitSet = [0, MAX_CODE_UNIT];

export function singleton(codeUnit: number): CodeUnitSet {
  return [codeUnit, codeUnit];
}

/** Merges any ranges, given as `[lo, hi, lo, hi, …]` pairs in any order, into a normal set. */
export function unionOf(...sets: readonly CodeUnitSet[]): CodeUnitSet {
  const pairs: Array<[number, number]> = [];
  for (const set of sets) {
    for (let i = 0; i < set.length; i += 2) pairs.push([set[i] as number, set[i + 1] as number]);
  }
  pairs.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of pairs) {
    const last = out.length - 1;
    if (last > 0 && lo <= (out[last] as number) + 1) out[last] = Math.max(out[last] as number, hi);
    else out.push(lo, hi);
  }
  return out;
}

export function complementOf(set: CodeUnitSet): CodeUnitSet {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < set.length; i += 2) {
    const lo = set[i] as number;
    if (lo > next) out.push(next, lo - 1);
    next = (set[i + 1] as number) + 1;
  }
  if (next <= MAX_CODE_UNIT) out.push(next, MAX_CODE_UNIT);
  return out;
}

export function contains(set: CodeUnitSet, codeUnit: number): boolean {
  for (let i = 0; i < set.length; i += 2) {
    if (codeUnit < (set[i] as number)) return false;
    if (codeUnit <= (set[i + 1] as number)) return true;
  }
  return false;
}

const code = (ch: string) => ch.charCodeAt(0);

/** `\d` */
export const DIGIT: CodeUnitSet = [code("0"), code("9")];
/** `\w`: ASCII only without the `u` and `i` flags. */
export const WORD: CodeUnitSet = unionOf(DIGIT, [code("A"), code("Z")], [code("_"), code("_")], [code("a"), code("z")]);
/** LineTerminator: what `.` never matches without the `s` flag. */
export const LINE_TERMINATOR: CodeUnitSet = unionOf([0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]);
/** `\s`: WhiteSpace (TAB, VT, FF, ZWNBSP and the Zs category) and LineTerminator. */
export const SPACE: CodeUnitSet = unionOf(
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
);
/** `.` without the `s` flag. */
export const DOT: CodeUnitSet = complementOf(LINE_TERMINATOR);

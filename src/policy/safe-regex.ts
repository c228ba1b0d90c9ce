/**
 * @module policy/safe-regex
 * Workers have no RE2: a pattern with catastrophic backtracking would burn the request's CPU
 * budget and fail the client. Patterns are therefore checked statically before they are accepted.
 */

export const MAX_PATTERN_LENGTH = 512;

/** Returns why `pattern` is refused, or `undefined` when it is safe to compile and run. */
export function regexProblem(pattern: string): string | undefined {
  if (pattern.length > MAX_PATTERN_LENGTH) {
    return `must be at most ${MAX_PATTERN_LENGTH} characters`;
  }
  try {
    new RegExp(pattern);
  } catch (err) {
    return `is not a valid regular expression (${(err as Error).message})`;
  }
  return backtrackingProblem(pattern);
}

interface GroupState {
  hasUnboundedQuantifier: boolean;
  hasAlternation: boolean;
  /** The first atom of each alternative, to tell `(foo|bar)+` (safe) from `(a|aa)+` (not). */
  branchStarts: string[];
  atBranchStart: boolean;
}

const newGroup = (): GroupState => ({
  hasUnboundedQuantifier: false,
  hasAlternation: false,
  branchStarts: [],
  atBranchStart: true,
});

/**
 * Scans the pattern once, tracking groups. Refuses backreferences, any repeated group whose
 * body can itself repeat without bound (`(a+)+`, `(a*)*`, `(.*a){20}`), and any repeated group
 * whose alternatives may start alike (`(a|aa)+`, `(\w|\d)*`): the shapes with exponential or
 * high-polynomial backtracking. Deliberately conservative: a refused pattern can be rewritten.
 */
function backtrackingProblem(pattern: string): string | undefined {
  const stack: GroupState[] = [newGroup()];
  let unbounded = 0;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    const top = stack[stack.length - 1] as GroupState;
    if (ch === "\\") {
      const next = pattern[i + 1] ?? "";
      if (/[1-9]/.test(next) || next === "k") {
        return "must not use backreferences";
      }
      noteAtom(top, /[A-Za-z]/.test(next) ? `\\${next}` : next);
      i++;
      continue;
    }
    if (ch === "[") {
      noteAtom(top, "[class]");
      i = skipCharacterClass(pattern, i);
      continue;
    }
    if (ch === "(") {
      noteAtom(top, "(group)");
      stack.push(newGroup());
      // Skip `?:`, `?=`, `?!`, `?<name>` so that they are not read as quantifiers.
      const head = /^\(\?(?:<[A-Za-z_]\w*>|[:=!]|<[=!])?/.exec(pattern.slice(i));
      if (head && head[0].length > 1) i += head[0].length - 1;
      continue;
    }
    if (ch === "|") {
      top.hasAlternation = true;
      top.atBranchStart = true;
      continue;
    }
    if (ch === ")") {
      const closed = stack.pop() as GroupState;
      const parent = stack[stack.length - 1] as GroupState;
      const quantifier = readQuantifier(pattern, i + 1);
      if (quantifier.repeats && closed.hasUnboundedQuantifier) {
        return "must not nest unbounded quantifiers such as (a+)+ (catastrophic backtracking)";
      }
      if (quantifier.repeats && closed.hasAlternation && !distinctLiterals(closed.branchStarts)) {
        return "must not repeat alternatives that can start alike, such as (a|aa)+ (catastrophic backtracking)";
      }
      if (quantifier.unbounded) {
        unbounded++;
        parent.hasUnboundedQuantifier = true;
      }
      if (closed.hasUnboundedQuantifier) parent.hasUnboundedQuantifier = true;
      i += quantifier.length;
      continue;
    }
    const quantifier = readQuantifier(pattern, i);
    if (quantifier.length > 0) {
      if (quantifier.unbounded) {
        unbounded++;
        top.hasUnboundedQuantifier = true;
      }
      i += quantifier.length - 1;
      continue;
    }
    noteAtom(top, ch === "." ? "." : ch);
  }
  if (unbounded > 3) {
    return "must not use more than 3 unbounded quantifiers (*, +, {n,})";
  }
  return undefined;
}

function noteAtom(group: GroupState, atom: string): void {
  if (!group.atBranchStart) return;
  group.branchStarts.push(atom);
  group.atBranchStart = false;
}

/** Every alternative starts with a different plain character (a letter, digit or escaped literal). */
function distinctLiterals(starts: readonly string[]): boolean {
  const plain = starts.every((s) => s.length === 1 && s !== ".");
  return plain && new Set(starts).size === starts.length;
}

function skipCharacterClass(pattern: string, start: number): number {
  for (let i = start + 1; i < pattern.length; i++) {
    if (pattern[i] === "\\") i++;
    else if (pattern[i] === "]") return i;
  }
  return pattern.length;
}

interface Quantifier {
  length: number;
  /** May match more than once (`*`, `+`, `{2}`, `{1,5}`): repeating a group multiplies its paths. */
  repeats: boolean;
  /** No upper bound (`*`, `+`, `{n,}`), or one so large it is as good as none. */
  unbounded: boolean;
}

function readQuantifier(pattern: string, at: number): Quantifier {
  const ch = pattern[at];
  if (ch === "*" || ch === "+") return { length: lazySuffix(pattern, at + 1) + 1, repeats: true, unbounded: true };
  if (ch === "?") return { length: lazySuffix(pattern, at + 1) + 1, repeats: false, unbounded: false };
  if (ch === "{") {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(at));
    if (m) {
      const max = m[2] === undefined ? Number(m[1]) : m[3] === "" ? Number.POSITIVE_INFINITY : Number(m[3]);
      return { length: m[0].length + lazySuffix(pattern, at + m[0].length), repeats: max > 1, unbounded: max > 16 };
    }
  }
  return { length: 0, repeats: false, unbounded: false };
}

function lazySuffix(pattern: string, at: number): number {
  return pattern[at] === "?" ? 1 : 0;
}

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
}

/**
 * Scans the pattern once, tracking groups. Refuses backreferences and any quantified group
 * whose body can itself repeat without bound (`(a+)+`, `(a*)*`, `(?:x|y+)*`): those are the
 * shapes with exponential backtracking.
 */
function backtrackingProblem(pattern: string): string | undefined {
  const stack: GroupState[] = [{ hasUnboundedQuantifier: false, hasAlternation: false }];
  let unbounded = 0;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === "\\") {
      const next = pattern[i + 1] ?? "";
      if (/[1-9]/.test(next) || next === "k") {
        return "must not use backreferences";
      }
      i++;
      continue;
    }
    if (ch === "[") {
      i = skipCharacterClass(pattern, i);
      continue;
    }
    const top = stack[stack.length - 1] as GroupState;
    if (ch === "(") {
      stack.push({ hasUnboundedQuantifier: false, hasAlternation: false });
      continue;
    }
    if (ch === "|") {
      top.hasAlternation = true;
      continue;
    }
    if (ch === ")") {
      const closed = stack.pop() as GroupState;
      const parent = stack[stack.length - 1] as GroupState;
      const quantifier = readQuantifier(pattern, i + 1);
      if (quantifier.unbounded && closed.hasUnboundedQuantifier) {
        return "must not nest unbounded quantifiers such as (a+)+ (catastrophic backtracking)";
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
    if (quantifier.length > 0 && quantifier.unbounded) {
      unbounded++;
      top.hasUnboundedQuantifier = true;
      i += quantifier.length - 1;
    }
  }
  if (unbounded > 3) {
    return "must not use more than 3 unbounded quantifiers (*, +, {n,})";
  }
  return undefined;
}

function skipCharacterClass(pattern: string, start: number): number {
  for (let i = start + 1; i < pattern.length; i++) {
    if (pattern[i] === "\\") i++;
    else if (pattern[i] === "]") return i;
  }
  return pattern.length;
}

function readQuantifier(pattern: string, at: number): { length: number; unbounded: boolean } {
  const ch = pattern[at];
  if (ch === "*" || ch === "+") return { length: lazySuffix(pattern, at + 1) + 1, unbounded: true };
  if (ch === "?") return { length: lazySuffix(pattern, at + 1) + 1, unbounded: false };
  if (ch === "{") {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(at));
    if (m) {
      const unbounded = m[2] !== undefined && (m[3] === "" || Number(m[3]) > 16);
      return { length: m[0].length + lazySuffix(pattern, at + m[0].length), unbounded };
    }
  }
  return { length: 0, unbounded: false };
}

function lazySuffix(pattern: string, at: number): number {
  return pattern[at] === "?" ? 1 : 0;
}

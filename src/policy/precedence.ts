/**
 * @module policy/precedence
 * Pure: which route is preferred when several could match, and what compiling a snapshot's
 * patterns may cost, spent in that order. The worker's route table (src/match) and the
 * cross-checks (policy/cross-check) both take their order and their budget from here, so that a
 * route the worker would skip is the one the checks warn of.
 */
import type { FullMatcher } from "../regex/index.js";
import { normalizePath } from "../url/index.js";
import {
  compileRoutePatterns,
  formatPath,
  MAX_ROUTE_PATTERN_COST,
  PolicyValidationError,
  type Route,
  routePatterns,
} from "./index.js";

const PATH_KIND_ORDER = { Exact: 0, PathPrefix: 1, RegularExpression: 2 } as const;

/**
 * Precedence: higher `priority` first; on a tie the most specific path (Exact, then the
 * longest PathPrefix, then RegularExpression; a case-sensitive path before the same one with
 * `ignoreCase`), then more methods/headers/query conditions, then route id so that the order
 * never depends on KV listing order.
 */
export function comparePrecedence(a: Route, b: Route): number {
  return (
    b.priority - a.priority ||
    PATH_KIND_ORDER[a.match.path.type] - PATH_KIND_ORDER[b.match.path.type] ||
    normalizePath(b.match.path.value).length - normalizePath(a.match.path.value).length ||
    Number(a.match.path.ignoreCase === true) - Number(b.match.path.ignoreCase === true) ||
    conditionCount(b) - conditionCount(a) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

function conditionCount(route: Route): number {
  const m = route.match;
  return (m.methods.length ? 1 : 0) + (m.hosts.length ? 1 : 0) + m.headers.length + m.query.length;
}

/**
 * What compiling the patterns of one snapshot's routes may cost, in `src/regex`'s units (about
 * 0.1 µs each in workerd: some 100 ms). Every new isolate compiles them before its first request,
 * and so does every refresh that finds the policies changed. Four routes at
 * `MAX_ROUTE_PATTERN_COST` fit, and so do a thousand routes with two UUID patterns each (about 400
 * apiece; a twenty-word alternation costs about 3,800).
 */
export const SNAPSHOT_PATTERN_BUDGET = 1_000_000;

/** A route left out of a policy snapshot because the routes before it used the snapshot's compile budget. */
export class CompileBudgetError extends Error {
  readonly code = "compile_budget";
  constructor(message: string) {
    super(message);
    this.name = "CompileBudgetError";
  }
}

/** One route in precedence order: its compiled patterns (by pattern), or why it is left out. */
export type RankedRoute =
  | { kind: "compiled"; route: Route; rank: number; patterns: ReadonlyMap<string, FullMatcher> | undefined }
  | { kind: "rejected"; route: Route; rank: number; error: unknown };

/**
 * `routes` in precedence order (`rank`, lower wins), each route's patterns compiled and charged
 * to `patternBudget` (refused patterns included, so that the budget bounds the work whatever is
 * stored). A route whose patterns are refused carries a `PolicyValidationError`; the route whose
 * patterns take the total past the budget, and every later route that has patterns, carry a
 * `CompileBudgetError`: the least preferred go first, and routes without patterns, which cost
 * nothing to compile, are kept. The work done is at most the budget plus one route's
 * (`MAX_ROUTE_PATTERN_COST`, and one more pattern).
 */
export function compileInPrecedence(routes: readonly Route[], patternBudget = SNAPSHOT_PATTERN_BUDGET): RankedRoute[] {
  const ordered = [...routes].sort(comparePrecedence);
  let spent = 0;
  let budgetSpentAt: string | undefined;
  return ordered.map((route, rank): RankedRoute => {
    try {
      if (routePatterns(route.match).length === 0) return { kind: "compiled", route, rank, patterns: undefined };
      if (budgetSpentAt !== undefined)
        return { kind: "rejected", route, rank, error: budgetSpent(patternBudget, budgetSpentAt) };
      const compiled = compileRoutePatterns(route.match);
      spent += compiled.cost;
      // A route refused for its own patterns has spent the budget all the same.
      if (spent > patternBudget) budgetSpentAt = route.id;
      if (compiled.issues.length > 0) {
        const issues = compiled.issues.map((issue) => ({ path: formatPath(issue.at), message: issue.message }));
        return { kind: "rejected", route, rank, error: new PolicyValidationError(issues) };
      }
      if (budgetSpentAt !== undefined)
        return { kind: "rejected", route, rank, error: budgetSpent(patternBudget, budgetSpentAt) };
      return { kind: "compiled", route, rank, patterns: compiled.matchers };
    } catch (error) {
      // A route written around the validator: whatever it holds, it costs only itself.
      return { kind: "rejected", route, rank, error };
    }
  });
}

function budgetSpent(budget: number, at: string): CompileBudgetError {
  return new CompileBudgetError(
    `skipped: a policy snapshot's patterns may cost at most ${budget} to compile, and routes of higher precedence spent it (it ran out at route "${at}"); each route may cost at most ${MAX_ROUTE_PATTERN_COST}: use fewer or simpler patterns, or raise the priority of the routes that matter`,
  );
}

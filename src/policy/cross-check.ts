/**
 * @module policy/cross-check
 * Rules that span documents, shared by the CLI (`policy validate`/`apply`) and the admin API:
 * a route may only name defined clusters, route ids are unique, and a route that can never
 * match (an identical, higher-ranked match exists) or that the worker would skip (past the
 * snapshot's compile budget) is reported as a warning.
 */
import type { Mirror, PolicyIssue, Route } from "./index.js";
import { CompileBudgetError, comparePrecedence, compileInPrecedence } from "./precedence.js";

export interface CrossCheckResult {
  errors: PolicyIssue[];
  warnings: PolicyIssue[];
}

/** Where each route came from, for messages: `routes[2]` in a file, `route:x` in KV. */
export interface LocatedRoute {
  route: Route;
  at: string;
}

/** Every cluster a route refers to, with the path of the reference. */
export function clusterReferences(route: Route): Array<{ cluster: string; path: string }> {
  const refs: Array<{ cluster: string; path: string }> = [];
  route.backends?.forEach((b, i) => {
    if (b.cluster !== undefined) refs.push({ cluster: b.cluster, path: `backends[${i}].cluster` });
  });
  const referenceOf = (copy: Pick<Mirror, "compare">, at: string) => {
    const reference = typeof copy.compare === "object" ? copy.compare.reference?.cluster : undefined;
    if (reference !== undefined) refs.push({ cluster: reference, path: `${at}.compare.reference.cluster` });
  };
  route.mirrors.forEach((m, i) => {
    if (m.cluster !== undefined) refs.push({ cluster: m.cluster, path: `mirrors[${i}].cluster` });
    referenceOf(m, `mirrors[${i}]`);
  });
  const dynamic = route.mirrorFromHeader;
  if (dynamic) {
    dynamic.allow.forEach((name, i) => {
      refs.push({ cluster: name, path: `mirrorFromHeader.allow[${i}]` });
    });
    referenceOf(dynamic, "mirrorFromHeader");
  }
  return refs;
}

export function crossCheck(routes: readonly LocatedRoute[], clusters: ReadonlySet<string>): CrossCheckResult {
  const result: CrossCheckResult = { errors: [], warnings: [] };
  const firstAt = new Map<string, string>();
  for (const { route, at } of routes) {
    const earlier = firstAt.get(route.id);
    if (earlier !== undefined) {
      result.errors.push({ path: `${at}.id`, message: `duplicate route id "${route.id}" (also at ${earlier})` });
    } else {
      firstAt.set(route.id, at);
    }
    for (const ref of clusterReferences(route)) {
      if (!clusters.has(ref.cluster)) {
        result.errors.push({ path: `${at}.${ref.path}`, message: `names undefined cluster "${ref.cluster}"` });
      }
    }
  }
  const ranked = [...routes].sort((a, b) => comparePrecedence(a.route, b.route));
  const seen = new Map<string, LocatedRoute>();
  for (const located of ranked) {
    const key = JSON.stringify(located.route.match);
    const winner = seen.get(key);
    if (winner) {
      result.warnings.push({
        path: located.at,
        message: `route "${located.route.id}" can never match: route "${winner.route.id}" (${winner.at}) has the same match and wins`,
      });
    } else {
      seen.set(key, located);
    }
  }
  // Bounded like the worker's own snapshot: nothing is compiled once the budget is spent.
  const locations = new Map(routes.map((located) => [located.route, located.at]));
  for (const ranked of compileInPrecedence([...locations.keys()])) {
    if (ranked.kind !== "rejected" || !(ranked.error instanceof CompileBudgetError)) continue;
    const { route } = ranked;
    result.warnings.push({
      path: locations.get(route) ?? route.id,
      message: `route "${route.id}" would not be served: ${ranked.error.message}`,
    });
  }
  return result;
}

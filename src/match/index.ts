/**
 * @module match
 * Compiles routes once into a lookup table and finds the route for a request.
 * Exact and PathPrefix routes are indexed in a segment trie, so a lookup walks the request's
 * path segments instead of scanning every route; only RegularExpression routes are scanned.
 * Paths are matched in their normal form (`normalizePath`): `/%70ay` is `/pay`, as the origin
 * routes it. Routes with `ignoreCase` have a trie of their own, keyed in lower case and walked
 * only when such routes exist, so that case-sensitive lookups cost what they did.
 *
 * Compiling is bounded: a snapshot's patterns may cost at most `SNAPSHOT_PATTERN_BUDGET` to
 * compile, spent in precedence order (see `compileRoutes`).
 */
import type { Route } from "../policy/index.js";
import { compileInPrecedence, SNAPSHOT_PATTERN_BUDGET } from "../policy/precedence.js";
import type { FullMatcher } from "../regex/index.js";
import { normalizePath } from "../url/index.js";

/** What a route is matched against; built once per request from the URL and headers. */
export interface RequestFacts {
  method: string;
  /** Host without port, lower-case. */
  host: string;
  /**
   * The path in its normal form (`normalizePath`): dot segments resolved, encoded unreserved
   * characters decoded, other escapes kept (upper-cased).
   */
  path: string;
  headers: Headers;
  query: URLSearchParams;
}

export interface CompiledRoute {
  route: Route;
  /** Position in precedence order: lower wins. */
  rank: number;
  matches(facts: RequestFacts): boolean;
}

interface TrieNode {
  children: Map<string, TrieNode>;
  prefix: CompiledRoute[];
  exact: CompiledRoute[];
}

export interface RouteTable {
  readonly size: number;
  find(facts: RequestFacts): Route | undefined;
  /** The routes whose path could match `path` (normalised), in precedence order; undefined when none. */
  candidates(path: string): CompiledRoute[] | undefined;
}

/** What the table's builder is told of routes it cannot serve (it serves the others). */
export interface RouteProblems {
  /**
   * A route left out: a pattern the engine refuses, one past the snapshot's compile budget
   * (`CompileBudgetError`), or a policy written around the validator.
   */
  rejected?: (route: Route, error: unknown) => void;
  /** A route whose check threw on a request: skipped for that request; told once per route. */
  failed?: (route: Route, error: unknown) => void;
}

/**
 * Compiles every route inside its own guard: a route that cannot be compiled is left out and
 * reported through `problems.rejected`, and the others keep working. Patterns are compiled in
 * precedence order within `patternBudget` (`compileInPrecedence`, src/policy/precedence).
 */
export function compileRoutes(
  routes: readonly Route[],
  problems: RouteProblems = {},
  patternBudget = SNAPSHOT_PATTERN_BUDGET,
): RouteTable {
  const caseSensitive = newNode();
  // Only a table with ignoreCase routes lower-cases request paths.
  let anyCase: TrieNode | undefined;
  const scanned: CompiledRoute[] = [];
  let size = 0;
  for (const ranked of compileInPrecedence(routes, patternBudget)) {
    const { route, rank } = ranked;
    let compiled: CompiledRoute;
    try {
      if (ranked.kind === "rejected") throw ranked.error;
      compiled = { route, rank, matches: guarded(route, compileConditions(route, ranked.patterns), problems.failed) };
    } catch (err) {
      problems.rejected?.(route, err);
      continue;
    }
    size++;
    const path = route.match.path;
    if (path.type === "RegularExpression") {
      scanned.push(compiled);
      continue;
    }
    const value = normalizePath(path.value);
    if (path.ignoreCase) {
      anyCase ??= newNode();
      insert(anyCase, value.toLowerCase(), path.type, compiled);
    } else {
      insert(caseSensitive, value, path.type, compiled);
    }
  }

  const candidates = (path: string) => {
    let found = collectCandidates(caseSensitive, path, undefined);
    if (anyCase) found = collectCandidates(anyCase, path.toLowerCase(), found);
    if (scanned.length > 0) found = append(found, scanned);
    if (found && found.length > 1) found.sort((a, b) => a.rank - b.rank);
    return found;
  };
  return {
    size,
    candidates,
    find: (facts) => firstMatch(candidates(facts.path), facts),
  };
}

function insert(root: TrieNode, path: string, type: "Exact" | "PathPrefix", compiled: CompiledRoute): void {
  let node = root;
  for (const segment of segments(path)) {
    let child = node.children.get(segment);
    if (!child) {
      child = newNode();
      node.children.set(segment, child);
    }
    node = child;
  }
  (type === "Exact" ? node.exact : node.prefix).push(compiled);
}

/** The first candidate whose conditions hold. */
export function firstMatch(candidates: readonly CompiledRoute[] | undefined, facts: RequestFacts): Route | undefined {
  if (!candidates) return undefined;
  for (const c of candidates) {
    if (c.matches(facts)) return c.route;
  }
  return undefined;
}

/** A route whose check throws on some request is skipped for that request, and said so once. */
function guarded(
  route: Route,
  matches: (facts: RequestFacts) => boolean,
  failed: RouteProblems["failed"],
): (facts: RequestFacts) => boolean {
  let reported = false;
  return (facts) => {
    try {
      return matches(facts);
    } catch (err) {
      if (!reported) {
        reported = true;
        failed?.(route, err);
      }
      return false;
    }
  };
}

function newNode(): TrieNode {
  return { children: new Map(), prefix: [], exact: [] };
}

/** `/a/b/` → ["a", "b"]: a trailing slash does not make a new segment, as in Gateway API. */
function segments(path: string): string[] {
  return path.split("/").filter((s) => s !== "");
}

const SLASH = 47;

/** `found` with `list` added; allocated only when there is something to add. */
function append(found: CompiledRoute[] | undefined, list: readonly CompiledRoute[]): CompiledRoute[] | undefined {
  if (list.length === 0) return found;
  const into = found ?? [];
  for (const c of list) into.push(c);
  return into;
}

/**
 * Walks the trie along `path` without splitting it: most of a zone's requests leave the trie at
 * their first segment, and then nothing is allocated but that segment.
 */
function collectCandidates(
  root: TrieNode,
  path: string,
  found: CompiledRoute[] | undefined,
): CompiledRoute[] | undefined {
  found = append(found, root.prefix);
  let node: TrieNode = root;
  let at = 0;
  for (;;) {
    while (at < path.length && path.charCodeAt(at) === SLASH) at++;
    if (at >= path.length) return append(found, node.exact);
    if (node.children.size === 0) return found;
    let end = path.indexOf("/", at);
    if (end === -1) end = path.length;
    const child = node.children.get(path.slice(at, end));
    if (!child) return found;
    node = child;
    found = append(found, node.prefix);
    at = end;
  }
}

/** `patterns`: the route's compiled patterns, by pattern (see `compileRoutePatterns`). */
function compileConditions(
  route: Route,
  patterns: ReadonlyMap<string, FullMatcher> = new Map(),
): (facts: RequestFacts) => boolean {
  const compiled = (pattern: string): FullMatcher => {
    const matcher = patterns.get(pattern);
    if (!matcher) throw new Error(`pattern ${JSON.stringify(pattern)} was not compiled`);
    return matcher;
  };
  const m = route.match;
  const checks: Array<(facts: RequestFacts) => boolean> = [];
  const path = m.path;
  if (path.type === "Exact") {
    const want = normalizePath(path.value);
    if (path.ignoreCase) {
      const lower = want.toLowerCase();
      checks.push((f) => f.path.length === lower.length && f.path.toLowerCase() === lower);
    } else {
      checks.push((f) => f.path === want);
    }
  } else if (path.type === "RegularExpression") {
    const re = compiled(path.value);
    checks.push((f) => re.test(f.path));
  }
  if (m.methods.length) {
    const methods = new Set<string>(m.methods);
    checks.push((f) => methods.has(f.method));
  }
  if (m.hosts.length) {
    const hostChecks = m.hosts.map(compileHost);
    checks.push((f) => hostChecks.some((check) => check(f.host)));
  }
  for (const h of m.headers) checks.push(valueCondition(h, compiled, (f) => f.headers.get(h.name)));
  for (const q of m.query) checks.push(valueCondition(q, compiled, (f) => f.query.get(q.name)));
  return (facts) => {
    for (const check of checks) if (!check(facts)) return false;
    return true;
  };
}

/** A header or query condition: the value must be present and match. */
function valueCondition(
  condition: { type: "Exact" | "RegularExpression"; value: string },
  compiled: (pattern: string) => FullMatcher,
  read: (facts: RequestFacts) => string | null,
): (facts: RequestFacts) => boolean {
  const test = compileValue(condition.type, condition.value, compiled);
  return (facts) => {
    const actual = read(facts);
    return actual !== null && test(actual);
  };
}

/** `*.example.com` matches one or more labels before `.example.com`, never `example.com` itself. */
function compileHost(pattern: string): (host: string) => boolean {
  const lower = pattern.toLowerCase();
  if (lower.startsWith("*.")) {
    const suffix = lower.slice(1);
    return (host) => host.length > suffix.length && host.endsWith(suffix);
  }
  return (host) => host === lower;
}

function compileValue(
  type: "Exact" | "RegularExpression",
  value: string,
  compiled: (pattern: string) => FullMatcher,
): (actual: string) => boolean {
  if (type === "Exact") return (actual) => actual === value;
  const re = compiled(value);
  return (actual) => re.test(actual);
}

/**
 * The route that claims this request, if any: the first step of every request. The request's
 * facts are read only when some route's path could match.
 */
export function matchRoute(table: RouteTable, request: Request, url: URL): Route | undefined {
  if (table.size === 0) return undefined;
  const path = normalizePath(url.pathname);
  const candidates = table.candidates(path);
  return candidates && firstMatch(candidates, requestFacts(request, url, path));
}

/** Reads the facts the matcher needs; never throws, whatever the URL holds. */
export function requestFacts(request: Request, url: URL, path = normalizePath(url.pathname)): RequestFacts {
  return {
    method: request.method,
    host: url.hostname.toLowerCase(),
    path,
    headers: request.headers,
    // Read only by routes with query conditions: most requests never build it.
    get query() {
      return url.searchParams;
    },
  };
}

/**
 * @module match
 * Compiles routes once into a lookup table and finds the route for a request.
 * Exact and PathPrefix routes are indexed in a segment trie, so a lookup walks the request's
 * path segments instead of scanning every route; only RegularExpression routes are scanned.
 */
import type { Route } from "../policy/index.js";
import { compileRegex } from "../regex/index.js";

/** What a route is matched against; built once per request from the URL and headers. */
export interface RequestFacts {
  method: string;
  /** Host without port, lower-case. */
  host: string;
  /** Path as received (percent-encoding untouched). */
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
}

const PATH_KIND_ORDER = { Exact: 0, PathPrefix: 1, RegularExpression: 2 } as const;

/**
 * Precedence: higher `priority` first; on a tie the most specific path (Exact, then the
 * longest PathPrefix, then RegularExpression), then more methods/headers/query conditions,
 * then route id so that the order never depends on KV listing order.
 */
export function comparePrecedence(a: Route, b: Route): number {
  return (
    b.priority - a.priority ||
    PATH_KIND_ORDER[a.match.path.type] - PATH_KIND_ORDER[b.match.path.type] ||
    b.match.path.value.length - a.match.path.value.length ||
    conditionCount(b) - conditionCount(a) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

function conditionCount(route: Route): number {
  const m = route.match;
  return (m.methods.length ? 1 : 0) + (m.hosts.length ? 1 : 0) + m.headers.length + m.query.length;
}

export function compileRoutes(routes: readonly Route[]): RouteTable {
  const ordered = [...routes].sort(comparePrecedence);
  const root = newNode();
  const scanned: CompiledRoute[] = [];
  ordered.forEach((route, rank) => {
    const compiled: CompiledRoute = { route, rank, matches: compileConditions(route) };
    const path = route.match.path;
    if (path.type === "RegularExpression") {
      scanned.push(compiled);
      return;
    }
    let node = root;
    for (const segment of segments(path.value)) {
      let child = node.children.get(segment);
      if (!child) {
        child = newNode();
        node.children.set(segment, child);
      }
      node = child;
    }
    (path.type === "Exact" ? node.exact : node.prefix).push(compiled);
  });

  return {
    size: ordered.length,
    find(facts) {
      const candidates = collectCandidates(root, facts.path);
      for (const c of scanned) candidates.push(c);
      candidates.sort((a, b) => a.rank - b.rank);
      for (const c of candidates) {
        if (c.matches(facts)) return c.route;
      }
      return undefined;
    },
  };
}

function newNode(): TrieNode {
  return { children: new Map(), prefix: [], exact: [] };
}

/** `/a/b/` → ["a", "b"]: a trailing slash does not make a new segment, as in Gateway API. */
function segments(path: string): string[] {
  return path.split("/").filter((s) => s !== "");
}

function collectCandidates(root: TrieNode, path: string): CompiledRoute[] {
  const found: CompiledRoute[] = [...root.prefix];
  const parts = segments(path);
  let node: TrieNode | undefined = root;
  for (const part of parts) {
    node = node.children.get(part);
    if (!node) return found;
    for (const c of node.prefix) found.push(c);
  }
  for (const c of node.exact) found.push(c);
  return found;
}

function compileConditions(route: Route): (facts: RequestFacts) => boolean {
  const m = route.match;
  const checks: Array<(facts: RequestFacts) => boolean> = [];
  const path = m.path;
  if (path.type === "Exact") {
    const want = path.value;
    checks.push((f) => f.path === want);
  } else if (path.type === "RegularExpression") {
    const re = compileRegex(path.value);
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
  for (const h of m.headers) checks.push(valueCondition(h, (f) => f.headers.get(h.name)));
  for (const q of m.query) checks.push(valueCondition(q, (f) => f.query.get(q.name)));
  return (facts) => {
    for (const check of checks) if (!check(facts)) return false;
    return true;
  };
}

/** A header or query condition: the value must be present and match. */
function valueCondition(
  condition: { type: "Exact" | "RegularExpression"; value: string },
  read: (facts: RequestFacts) => string | null,
): (facts: RequestFacts) => boolean {
  const test = compileValue(condition.type, condition.value);
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

function compileValue(type: "Exact" | "RegularExpression", value: string): (actual: string) => boolean {
  if (type === "Exact") return (actual) => actual === value;
  const re = compileRegex(value);
  return (actual) => re.test(actual);
}

/** Reads the facts the matcher needs; never throws, whatever the URL holds. */
export function requestFacts(request: Request, url: URL): RequestFacts {
  return {
    method: request.method,
    host: url.hostname.toLowerCase(),
    path: url.pathname,
    headers: request.headers,
    query: url.searchParams,
  };
}

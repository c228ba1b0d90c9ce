/**
 * @module store
 * Reads policies from Workers KV (`route:<id>`, `cluster:<name>`) into an immutable snapshot,
 * and keeps that snapshot in the isolate so that the steady state does no KV read per request:
 * a stale snapshot is served while a refresh runs in the background (stale-while-revalidate).
 * An invalid stored policy is skipped and logged; an unreachable KV keeps the last good
 * snapshot, or an empty one, so that the primary is always served.
 */
import { PolicyValidationError } from "../errors/index.js";
import { compileRoutes, type RouteTable } from "../match/index.js";
import { parseCluster, parseRoute, type Route } from "../policy/index.js";

export const ROUTE_PREFIX = "route:";
export const CLUSTER_PREFIX = "cluster:";
/** Workers KV bulk get accepts at most 100 keys per call. */
const BULK_GET_LIMIT = 100;

export interface InvalidEntry {
  key: string;
  error: string;
}

export interface PolicySnapshot {
  routes: RouteTable;
  /** Cluster name → origin (`https://host:port`, no trailing slash). */
  clusters: ReadonlyMap<string, string>;
  invalid: readonly InvalidEntry[];
  /** False when KV could not be read and no earlier snapshot exists. */
  available: boolean;
  loadedAt: number;
}

export const EMPTY_SNAPSHOT: PolicySnapshot = {
  routes: compileRoutes([]),
  clusters: new Map(),
  invalid: [],
  available: false,
  loadedAt: 0,
};

/** Lists every key under `prefix`, following KV's 1,000-key pages. */
export async function listKeys(kv: KVNamespace, prefix: string): Promise<string[]> {
  const names: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await kv.list({ prefix, ...(cursor ? { cursor } : {}) });
    for (const key of page.keys) names.push(key.name);
    if (page.list_complete) return names;
    cursor = page.cursor;
  }
}

export async function getTexts(kv: KVNamespace, keys: readonly string[]): Promise<Map<string, string | null>> {
  const chunks: string[][] = [];
  for (let i = 0; i < keys.length; i += BULK_GET_LIMIT) chunks.push(keys.slice(i, i + BULK_GET_LIMIT));
  const maps = await Promise.all(chunks.map((chunk) => kv.get(chunk, "text")));
  const all = new Map<string, string | null>();
  for (const map of maps) for (const [k, v] of map) all.set(k, v);
  return all;
}

/** Parses one stored value; the route's `id` must equal its key's suffix. */
export function parseStoredRoute(key: string, text: string): Route {
  const route = parseRoute(parseJson(text));
  const expected = key.slice(ROUTE_PREFIX.length);
  if (route.id !== expected) {
    throw new PolicyValidationError([{ path: "id", message: `must equal the key suffix "${expected}"` }]);
  }
  return route;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PolicyValidationError([{ path: "", message: `is not valid JSON (${(err as Error).message})` }]);
  }
}

/** Every stored policy text, keyed by KV key (`null`: deleted between list and get). */
async function readTexts(kv: KVNamespace): Promise<Map<string, string | null>> {
  const [routeKeys, clusterKeys] = await Promise.all([listKeys(kv, ROUTE_PREFIX), listKeys(kv, CLUSTER_PREFIX)]);
  return getTexts(kv, [...routeKeys, ...clusterKeys]);
}

function sameTexts(a: ReadonlyMap<string, string | null>, b: ReadonlyMap<string, string | null>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, text] of a) if (b.get(key) !== text) return false;
  return true;
}

export async function loadSnapshot(kv: KVNamespace, now: number): Promise<PolicySnapshot> {
  return buildSnapshot(await readTexts(kv), now);
}

function buildSnapshot(texts: ReadonlyMap<string, string | null>, now: number): PolicySnapshot {
  const invalid: InvalidEntry[] = [];
  const routes: Route[] = [];
  const clusters = new Map<string, string>();
  for (const [key, text] of texts) {
    if (text === null) continue; // deleted between list and get
    try {
      if (key.startsWith(ROUTE_PREFIX)) routes.push(parseStoredRoute(key, text));
      else clusters.set(key.slice(CLUSTER_PREFIX.length), parseCluster(parseJson(text)).origin);
    } catch (err) {
      invalid.push({ key, error: (err as Error).message });
    }
  }
  const table = compileRoutes(routes, (route, err) =>
    invalid.push({ key: `${ROUTE_PREFIX}${route.id}`, error: `cannot be compiled: ${(err as Error)?.message ?? err}` }),
  );
  return { routes: table, clusters, invalid, available: true, loadedAt: now };
}

export interface CacheOptions {
  ttlMs: number;
  now?: () => number;
  log?: (line: string) => void;
}

/**
 * One per isolate. `get` returns at once whenever any snapshot exists; only the very first
 * request of an isolate (or every request with `ttlMs` 0) waits for KV.
 */
export class PolicyCache {
  private snapshot: PolicySnapshot | undefined;
  private inflight: Promise<PolicySnapshot> | undefined;
  private lastInvalid = "";
  /** The texts behind `snapshot`: an unchanged refresh reuses it instead of re-parsing. */
  private lastTexts: ReadonlyMap<string, string | null> | undefined;
  /** Counts KV loads, so that tests and benchmarks can prove the hot path does none. */
  loads = 0;

  constructor(private readonly options: CacheOptions) {}

  /** Forget the snapshot: the next request waits for a fresh one (after an admin write). */
  invalidate(): void {
    this.snapshot = undefined;
  }

  /**
   * The snapshot when it is still fresh, without a promise: the hot path of every request.
   * Undefined when `get` has to be asked (first request, expired, or `ttlMs` 0).
   */
  fresh(now: number): PolicySnapshot | undefined {
    const current = this.snapshot;
    return current && this.options.ttlMs > 0 && now - current.loadedAt < this.options.ttlMs ? current : undefined;
  }

  async get(kv: KVNamespace, waitUntil: (p: Promise<unknown>) => void): Promise<PolicySnapshot> {
    const now = (this.options.now ?? Date.now)();
    const current = this.snapshot;
    if (this.options.ttlMs <= 0) return this.refresh(kv, now);
    if (current && now - current.loadedAt < this.options.ttlMs) return current;
    if (current) {
      if (!this.inflight) waitUntil(this.refresh(kv, now));
      return current;
    }
    return this.inflight ?? this.refresh(kv, now);
  }

  private refresh(kv: KVNamespace, now: number): Promise<PolicySnapshot> {
    this.loads++;
    const run = readTexts(kv).then(
      (texts) => {
        // Parsing and compiling 1,000 routes blocks the isolate for tens of milliseconds; a
        // refresh that finds nothing changed (the usual case) skips both.
        const previous = this.snapshot;
        if (previous?.available && this.lastTexts && sameTexts(texts, this.lastTexts)) {
          this.snapshot = { ...previous, loadedAt: now };
          return this.snapshot;
        }
        const fresh = buildSnapshot(texts, now);
        this.reportInvalid(fresh.invalid);
        this.snapshot = fresh;
        this.lastTexts = texts;
        return fresh;
      },
      (err: unknown) => {
        this.write({ msg: "edge-mirror.policy_store_unavailable", error: String(err) });
        // Keep serving what we had; retry after one more TTL instead of on every request.
        const fallback = this.snapshot ?? EMPTY_SNAPSHOT;
        this.snapshot = { ...fallback, loadedAt: now };
        return this.snapshot;
      },
    );
    this.inflight = run.finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private reportInvalid(invalid: readonly InvalidEntry[]): void {
    const signature = JSON.stringify(invalid);
    if (signature === this.lastInvalid) return;
    this.lastInvalid = signature;
    for (const entry of invalid) this.write({ msg: "edge-mirror.invalid_policy", ...entry });
  }

  private write(fields: Record<string, unknown>): void {
    (this.options.log ?? console.error)(JSON.stringify(fields));
  }
}

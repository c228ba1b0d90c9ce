/**
 * @module store
 * Reads the route and cluster policies from Workers KV (through a `PolicyStore`) into an
 * immutable snapshot, and keeps that snapshot in the isolate so that the steady state does no KV read per request:
 * a stale snapshot is served while a refresh runs in the background (stale-while-revalidate).
 * An invalid stored policy is skipped and logged; an unreachable KV keeps the last good
 * snapshot, or an empty one, so that the primary is always served.
 */
import { compileRoutes, type RouteTable } from "../match/index.js";
import { PolicyValidationError, type Route } from "../policy/index.js";
import { CompileBudgetError } from "../policy/precedence.js";
import { routeKey } from "./keys.js";
import { type InvalidEntry, parseStoredPolicies } from "./parse.js";
import { kvPolicyStore, type PolicyStore } from "./policy-store.js";

export interface PolicySnapshot {
  routes: RouteTable;
  /** Cluster name → origin (`https://host:port`, no trailing slash). */
  clusters: ReadonlyMap<string, string>;
  invalid: readonly InvalidEntry[];
  /** Backends that name a cluster the snapshot lacks: their share goes to the default primary. */
  unknownBackends: readonly UnknownBackend[];
  /** False when KV could not be read and no earlier snapshot exists. */
  available: boolean;
  loadedAt: number;
}

export const EMPTY_SNAPSHOT: PolicySnapshot = {
  routes: compileRoutes([]),
  clusters: new Map(),
  invalid: [],
  unknownBackends: [],
  available: false,
  loadedAt: 0,
};

/** A route's backend naming a cluster that is not defined. */
export interface UnknownBackend {
  route: string;
  cluster: string;
}

/** Every backend that can take traffic (weight > 0) and names a cluster not in `clusters`. */
function unknownBackends(routes: Iterable<Route>, clusters: ReadonlyMap<string, string>): UnknownBackend[] {
  const found: UnknownBackend[] = [];
  for (const route of routes) {
    for (const { cluster, weight } of route.backends ?? []) {
      if (cluster !== undefined && weight > 0 && !clusters.has(cluster)) found.push({ route: route.id, cluster });
    }
  }
  return found;
}

function sameTexts(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, text] of a) if (b.get(key) !== text) return false;
  return true;
}

export async function loadSnapshot(store: PolicyStore, now: number): Promise<PolicySnapshot> {
  return buildSnapshot(await store.readAll(), now);
}

/**
 * Parses and compiles the stored texts. The routes' patterns are compiled once, by the route
 * table, in precedence order and under its budget (`compileRoutes`): a pattern it refuses is
 * reported as validation would report it, and a route past the budget is skipped, saying so.
 */
function buildSnapshot(texts: ReadonlyMap<string, string>, now: number): PolicySnapshot {
  const stored = parseStoredPolicies(texts, { compilePatterns: false });
  const clusters = new Map<string, string>();
  for (const [name, cluster] of stored.clusters) clusters.set(name, cluster.origin);
  const invalid = [...stored.invalid];
  const routes = compileRoutes([...stored.routes.values()], {
    rejected: (route, err) => invalid.push({ key: routeKey(route.id), error: rejection(err) }),
    failed: (route, err) =>
      console.error(
        JSON.stringify({
          msg: "edge-mirror.invalid_policy",
          key: routeKey(route.id),
          error: `match failed: ${String(err)}`,
        }),
      ),
  });
  const unknown = unknownBackends(stored.routes.values(), clusters);
  return { routes, clusters, invalid, unknownBackends: unknown, available: true, loadedAt: now };
}

function rejection(err: unknown): string {
  if (err instanceof PolicyValidationError || err instanceof CompileBudgetError) return err.message;
  return `cannot be compiled: ${(err as Error)?.message ?? err}`;
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
  private lastTexts: ReadonlyMap<string, string> | undefined;
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
    const run = kvPolicyStore(kv)
      .readAll()
      .then(
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
          // Once per snapshot, not per request: a busy route would otherwise log on every request.
          for (const { route, cluster } of fresh.unknownBackends) {
            this.write({ msg: "edge-mirror.unknown_backend_cluster", route, cluster, servedBy: "default primary" });
          }
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

/**
 * @module store
 * Reads the route and cluster policies from Workers KV (through a `PolicyStore`) into an
 * immutable snapshot, and keeps that snapshot in the isolate so that the steady state does no KV read per request:
 * a stale snapshot is served while a refresh runs in the background (stale-while-revalidate). A
 * refresh reads the published marker, one key, and the published snapshot only when the marker
 * moved (store/published, store/publish), so that it costs the same for 10 policies or 10,000.
 * An invalid stored policy is skipped and logged; an unreachable KV keeps the last good
 * snapshot, or an empty one, so that the primary is always served.
 */
import { compileRoutes, type RouteTable } from "../match/index.js";
import { PolicyValidationError, type Route } from "../policy/index.js";
import { CompileBudgetError } from "../policy/precedence.js";
import { routeKey } from "./keys.js";
import { type InvalidEntry, parseStoredPolicies } from "./parse.js";
import { kvPolicyStore, type PolicyStore } from "./policy-store.js";
import { decodeMarker, decodeSnapshot, hashEntries, policyVersion, textsOf } from "./published.js";

export interface PolicySnapshot {
  routes: RouteTable;
  /**
   * Every valid route by id, those the table leaves out (past the compile budget) included: what
   * the admin surface judges verdicts by and lists as configured, without reading KV again.
   */
  routeById: ReadonlyMap<string, Route>;
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
  routeById: new Map(),
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
  return {
    routes,
    routeById: stored.routes,
    clusters,
    invalid,
    unknownBackends: unknown,
    available: true,
    loadedAt: now,
  };
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

/** What a refresh found: the texts to serve and their version, or nothing new. */
type Loaded = { texts: ReadonlyMap<string, string>; version: string } | "unchanged";

/**
 * One per isolate. `get` returns at once whenever any snapshot exists; only the very first
 * request of an isolate (or every request with `ttlMs` 0, or the first after `invalidate`) waits
 * for KV.
 *
 * A refresh reads the published marker (one key, store/published) and, only when it names
 * another version than the one served, the published snapshot (one more): two key reads at most,
 * whatever the number of policies. A new isolate reads the snapshot alone. Every policy key is
 * read only when nothing is published yet, after `invalidate` (this isolate's own admin write,
 * which the snapshot may not hold yet), and with `ttlMs` 0 (no cache: tests and development). A
 * refresh that fails, or finds the marker naming a snapshot it cannot read, keeps what it served.
 */
export class PolicyCache {
  private snapshot: PolicySnapshot | undefined;
  private inflight: Promise<PolicySnapshot> | undefined;
  private lastInvalid = "";
  /** The version of the texts behind `snapshot` (store/published): what the marker is compared with. */
  private version: string | undefined;
  /** Set by `invalidate`: the next load reads every policy key, and the next request waits for it. */
  private readEveryKey = false;
  private waitForNext = false;
  /** The marker version whose snapshot could not be read, logged once. */
  private unreadableVersion: string | undefined;
  /** Counts KV loads, so that tests and benchmarks can prove the hot path does none. */
  loads = 0;

  constructor(private readonly options: CacheOptions) {}

  /**
   * After a write through this isolate (the admin API): the next request waits for a load of
   * every policy key, so that it serves the write, which the published snapshot may not hold yet.
   * The snapshot served so far is kept for when that load fails.
   */
  invalidate(): void {
    this.readEveryKey = true;
    this.waitForNext = true;
  }

  /**
   * The snapshot when it is still fresh, without a promise: the hot path of every request.
   * Undefined when `get` has to be asked (first request, expired, invalidated, or `ttlMs` 0).
   */
  fresh(now: number): PolicySnapshot | undefined {
    const current = this.snapshot;
    if (!current || this.waitForNext || this.options.ttlMs <= 0) return undefined;
    return now - current.loadedAt < this.options.ttlMs ? current : undefined;
  }

  async get(kv: KVNamespace, waitUntil: (p: Promise<unknown>) => void): Promise<PolicySnapshot> {
    const now = (this.options.now ?? Date.now)();
    const current = this.snapshot;
    if (this.options.ttlMs <= 0) return this.refresh(kv, now);
    if (!current || this.waitForNext) return this.inflight ?? this.refresh(kv, now);
    if (now - current.loadedAt < this.options.ttlMs) return current;
    if (!this.inflight) waitUntil(this.refresh(kv, now));
    return current;
  }

  private refresh(kv: KVNamespace, now: number): Promise<PolicySnapshot> {
    this.loads++;
    this.waitForNext = false;
    const run = this.load(kvPolicyStore(kv)).then(
      (loaded) => this.adopt(loaded, now),
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

  private async load(store: PolicyStore): Promise<Loaded> {
    if (this.options.ttlMs <= 0 || this.readEveryKey) return readEveryKey(store);
    if (!this.snapshot?.available) {
      // A new isolate: the published snapshot alone, one read; the next refresh compares markers.
      const published = decodeSnapshot(await store.readSnapshot());
      return published ? { texts: textsOf(published), version: published.version } : readEveryKey(store);
    }
    const marker = decodeMarker(await store.readMarker());
    if (marker && marker.version === this.version) return "unchanged";
    const published = decodeSnapshot(await store.readSnapshot());
    // A snapshot older than the marker (KV shows a key's new value in each location up to 60 s
    // after the write, each key on its own) is served if it is new here, and the version served
    // stays its own: the next refresh reads the snapshot again until it is the marker's.
    if (published) return { texts: textsOf(published), version: published.version };
    if (marker) {
      // Published, but unreadable here: keep serving, and let the reconcile rewrite it. Reading
      // every key instead would cost every isolate a read per policy on every refresh.
      if (this.unreadableVersion !== marker.version) {
        this.unreadableVersion = marker.version;
        this.write({ msg: "edge-mirror.policy_snapshot_unreadable", version: marker.version, servedAs: "last good" });
      }
      return "unchanged";
    }
    // Nothing published yet (a namespace written before publishing, or by hand): every key.
    return readEveryKey(store);
  }

  private adopt(loaded: Loaded, now: number): PolicySnapshot {
    const previous = this.snapshot;
    if (loaded === "unchanged") {
      this.snapshot = { ...(previous ?? EMPTY_SNAPSHOT), loadedAt: now };
      return this.snapshot;
    }
    this.readEveryKey = false;
    // Parsing and compiling 1,000 routes blocks the isolate for tens of milliseconds; texts of
    // the version already served (the usual case after a full read) skip both.
    if (previous?.available && loaded.version === this.version) {
      this.snapshot = { ...previous, loadedAt: now };
      return this.snapshot;
    }
    const fresh = buildSnapshot(loaded.texts, now);
    this.reportInvalid(fresh.invalid);
    // Once per snapshot, not per request: a busy route would otherwise log on every request.
    for (const { route, cluster } of fresh.unknownBackends) {
      this.write({ msg: "edge-mirror.unknown_backend_cluster", route, cluster, servedBy: "default primary" });
    }
    this.snapshot = fresh;
    this.version = loaded.version;
    return fresh;
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

/** Every policy key, listed and read (a read per key), with the version its texts make. */
async function readEveryKey(store: PolicyStore): Promise<Loaded> {
  const texts = await store.readAll();
  return { texts, version: await policyVersion(await hashEntries(texts)) };
}

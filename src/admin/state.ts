/**
 * @module admin/state
 * What the admin surface keeps per isolate, built once by the isolate (src/isolate) and handed to
 * every admin handler as the `admin` context variable: its settings, the worker's policy cache (a
 * write is served at once by the isolate that made it; the stats and verdict endpoints read the
 * policies from it rather than from KV), the publisher that publishes each write to
 * every other isolate (store/publish), the dashboard's session epoch and key (admin/session), and
 * the addresses the token's rate limit admitted lately.
 */
import type { PolicySnapshot } from "../store/index.js";
import type { PolicyStore } from "../store/policy-store.js";
import { SessionEpochCache, SessionKeys } from "./session.js";
import { LOGIN_LIMIT_PERIOD_SECONDS } from "./settings.js";

/**
 * Addresses that showed the right bearer token while under the limit, each remembered for one
 * period of the limit. Only the token's holders get in, so it stays small; at `max` the oldest
 * goes, which costs that address one more count, never a refusal.
 */
export class AdmittedAddresses {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly ttlMs = LOGIN_LIMIT_PERIOD_SECONDS * 1000,
    private readonly max = 256,
  ) {}

  has(address: string, now: number): boolean {
    return (this.until.get(address) ?? 0) > now;
  }

  add(address: string, now: number): void {
    this.until.delete(address);
    this.until.set(address, now + this.ttlMs);
    if (this.until.size > this.max) this.until.delete(this.until.keys().next().value as string);
  }

  delete(address: string): void {
    this.until.delete(address);
  }
}

export interface AdminState {
  /** `ADMIN_PREFIX`, checked (admin/settings). */
  readonly prefix: string;
  /** The token that opens the surface; undefined while it stays closed (admin/settings). */
  readonly token: string | undefined;
  /** How many stats shards `api/stats` reads and clears (`STATS_SHARDS`). */
  readonly statsShards: number;
  /** The worker's policy cache, forgotten after a write so that this isolate serves it at once. */
  readonly policies: {
    invalidate(): void;
    get(kv: KVNamespace, waitUntil: (p: Promise<unknown>) => void): Promise<PolicySnapshot>;
  };
  /**
   * Publishes a write (the text written, or null for a delete) to every isolate, inside
   * `waitUntil`: the snapshot and marker are rewritten, a burst of writes coalesced (store/publish).
   */
  readonly publisher: {
    changed(store: PolicyStore, key: string, text: string | null, waitUntil: (p: Promise<unknown>) => void): void;
  };
  /** The dashboard's session epoch, as this isolate last read it. */
  readonly sessionEpoch: SessionEpochCache;
  /** The dashboard session cookie's HMAC key, derived from ADMIN_TOKEN once. */
  readonly sessionKeys: SessionKeys;
  /** Addresses whose right bearer token the rate limit admitted lately (admin/limits). */
  readonly admittedAddresses: AdmittedAddresses;
}

/** One isolate's admin state, its caches empty. */
export function adminState(
  settings: Pick<AdminState, "prefix" | "token" | "statsShards">,
  policies: AdminState["policies"],
  publisher: AdminState["publisher"],
): AdminState {
  return {
    ...settings,
    policies,
    publisher,
    sessionEpoch: new SessionEpochCache(),
    sessionKeys: new SessionKeys(),
    admittedAddresses: new AdmittedAddresses(),
  };
}

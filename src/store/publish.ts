/**
 * @module store/publish
 * Publishing the policies: the snapshot that holds every route and cluster text and the marker
 * that names its version (store/published), written from what a `PolicyStore` holds. The admin
 * API, the CLI, `npm run policy -- touch` and the worker's scheduled reconcile all publish
 * through `publishPolicies`; it writes only when what is stored differs from what is published.
 *
 * It reads as little as it can: a listing of the policy keys with their metadata tells which
 * texts the published snapshot already holds (the SHA-256 of each text is stored with it), and
 * only the others are read — every key once for a namespace written without metadata, none when
 * nothing changed. `PolicyPublisher` runs publications for one isolate's admin writes: a burst is
 * coalesced into few publications, and one that KV refuses (one write per second per key) is
 * retried a little later with whatever was written meanwhile; what still fails, the next scheduled
 * reconcile repairs.
 */
import type { PolicyStore } from "./policy-store.js";
import {
  decodeMarker,
  decodeSnapshot,
  encodeMarker,
  encodeSnapshot,
  hashEntries,
  MAX_SNAPSHOT_BYTES,
  type PublishedEntry,
  publishedPolicies,
  sha256Hex,
} from "./published.js";

export interface PublishOptions {
  /** Every policy text, when the caller has just read them all (the CLI): nothing is listed or read. */
  texts?: ReadonlyMap<string, string>;
  /**
   * Writes the caller has just made, laid over what the store lists (a listing may not show them
   * yet): the text written, or null for a key deleted.
   */
  changes?: ReadonlyMap<string, string | null>;
  /** Reads every policy text, whatever the metadata says (`policy touch`). */
  full?: boolean;
  now: number;
}

export interface PublishResult {
  /** False when the published snapshot and marker already held these policies: nothing was written. */
  written: boolean;
  /** Whether the snapshot was written (false: only the marker). */
  snapshotWritten: boolean;
  version: string;
  routes: number;
  clusters: number;
  /** Policy texts read to build the snapshot. */
  keysRead: number;
}

/** The snapshot would not fit in one KV value. */
export class SnapshotTooLargeError extends Error {
  override readonly name = "SnapshotTooLargeError";
}

/**
 * Publishes what the store holds when it differs from what is published: the snapshot (when its
 * version changed), then the marker. Rejects when KV cannot be read or written; nothing that was
 * published before is lost then, since the marker is written last and names a whole snapshot.
 */
export async function publishPolicies(store: PolicyStore, options: PublishOptions): Promise<PublishResult> {
  const published = await store.readPublished();
  const previous = decodeSnapshot(published.snapshot);
  const marker = decodeMarker(published.marker);
  const { entries, keysRead } = await currentEntries(store, options, previous?.entries ?? []);
  const next = await publishedPolicies(entries, options.now);
  const counts = kinds(next.entries);
  // Versions alone would vouch for a snapshot edited by hand: compare what it holds.
  const snapshotCurrent = previous?.version === next.version && sameEntries(previous.entries, next.entries);
  if (snapshotCurrent && marker?.version === next.version) {
    return { written: false, snapshotWritten: false, version: next.version, ...counts, keysRead };
  }
  let snapshot: string | undefined;
  if (!snapshotCurrent) {
    snapshot = encodeSnapshot(next);
    const bytes = new TextEncoder().encode(snapshot).byteLength;
    if (bytes > MAX_SNAPSHOT_BYTES) {
      throw new SnapshotTooLargeError(
        `the policies take ${bytes} bytes as one snapshot, more than the ${MAX_SNAPSHOT_BYTES} one KV value holds`,
      );
    }
  }
  await store.publish(snapshot, encodeMarker({ version: next.version, publishedAt: next.publishedAt }));
  return { written: true, snapshotWritten: snapshot !== undefined, version: next.version, ...counts, keysRead };
}

/** The stored texts with their hashes, reading only what the published ones cannot stand for. */
async function currentEntries(
  store: PolicyStore,
  options: PublishOptions,
  published: readonly PublishedEntry[],
): Promise<{ entries: PublishedEntry[]; keysRead: number }> {
  let texts: Map<string, string>;
  let keysRead = 0;
  if (options.texts) texts = new Map(options.texts);
  else if (options.full) {
    texts = await store.readAll();
    keysRead = texts.size;
  } else {
    const listed = await store.listHashes();
    const known = new Map(published.map((entry) => [entry.key, entry]));
    texts = new Map();
    const unknown: string[] = [];
    for (const [key, hash] of listed) {
      if (options.changes?.has(key)) continue;
      const entry = hash === undefined ? undefined : known.get(key);
      // The published text stands for the stored one only when it still hashes to what the
      // key's metadata says: a snapshot edited by hand is read past, not trusted.
      if (entry && entry.hash === hash && (await sha256Hex(entry.text)) === hash) texts.set(key, entry.text);
      else unknown.push(key);
    }
    const read = await store.getMany(unknown);
    keysRead = unknown.length;
    for (const [key, text] of read) texts.set(key, text);
  }
  for (const [key, text] of options.changes ?? []) {
    if (text === null) texts.delete(key);
    else texts.set(key, text);
  }
  return { entries: await hashEntries(texts), keysRead };
}

function sameEntries(a: readonly PublishedEntry[], b: readonly PublishedEntry[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((entry, i) => {
    const other = b[i] as PublishedEntry;
    return entry.key === other.key && entry.hash === other.hash && entry.text === other.text;
  });
}

function kinds(entries: readonly PublishedEntry[]): { routes: number; clusters: number } {
  let routes = 0;
  for (const { key } of entries) if (key.startsWith("route:")) routes++;
  return { routes, clusters: entries.length - routes };
}

/** How `PolicyPublisher` retries. */
export interface PublisherOptions {
  /**
   * How long to wait before each retry of a publication that failed: KV refuses a second write of
   * a key within a second (429), from this isolate or another.
   */
  retryDelaysMs?: readonly number[];
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  log?: (line: string) => void;
}

export const PUBLISH_RETRY_DELAYS_MS = [1100, 2500, 5000] as const;

/**
 * One isolate's publications after admin writes. `changed` records a write and makes sure a
 * publication follows inside the caller's `waitUntil`; writes that arrive while one runs (or waits
 * to retry) are published together with it or after it. A publication that keeps failing is
 * logged (`edge-mirror.policy_publish_failed`), never thrown: the write itself has succeeded, this
 * isolate serves it already, and the scheduled reconcile publishes it within its period.
 */
export class PolicyPublisher {
  private pending = new Map<string, string | null>();
  private running: Promise<void> | undefined;

  constructor(private readonly options: PublisherOptions = {}) {}

  changed(store: PolicyStore, key: string, text: string | null, waitUntil: (promise: Promise<unknown>) => void): void {
    this.pending.set(key, text);
    if (!this.running) {
      this.running = this.run(store).finally(() => {
        this.running = undefined;
      });
    }
    waitUntil(this.running);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private sleep(ms: number): Promise<void> {
    return (this.options.sleep ?? ((t) => new Promise((resolve) => setTimeout(resolve, t))))(ms);
  }

  private async run(store: PolicyStore): Promise<void> {
    while (this.pending.size > 0) {
      const changes = this.pending;
      this.pending = new Map();
      await this.publish(store, changes);
    }
  }

  private async publish(store: PolicyStore, changes: Map<string, string | null>): Promise<void> {
    const delays = this.options.retryDelaysMs ?? PUBLISH_RETRY_DELAYS_MS;
    let lastError: unknown;
    for (let attempt = 0; attempt <= delays.length; attempt++) {
      if (attempt > 0) await this.sleep(delays[attempt - 1] as number);
      try {
        // Writes made meanwhile ride along: they are in KV already, and the listing may show them.
        for (const [key, text] of this.pending) changes.set(key, text);
        this.pending.clear();
        await publishPolicies(store, { changes, now: this.now() });
        return;
      } catch (err) {
        lastError = err;
        if (err instanceof SnapshotTooLargeError) break;
      }
    }
    (this.options.log ?? console.error)(
      JSON.stringify({
        msg: "edge-mirror.policy_publish_failed",
        error: String(lastError).slice(0, 500),
        changes: [...changes.keys()].slice(0, 20),
      }),
    );
  }
}

/**
 * The scheduled reconcile (the worker's cron trigger): publishes what KV holds when it differs
 * from what is published — edits made straight in KV (`wrangler kv key put`, the dashboard), a
 * publication that failed, a snapshot edited by hand. Reads the listing, the published pair and
 * the texts it cannot vouch for; writes, and logs one line, only when something changed.
 */
export async function reconcilePolicies(
  store: PolicyStore,
  now: number,
  log: (line: string) => void = console.error,
): Promise<PublishResult | undefined> {
  try {
    const result = await publishPolicies(store, { now });
    if (result.written) {
      log(
        JSON.stringify({
          msg: "edge-mirror.policies_published",
          by: "reconcile",
          version: result.version,
          routes: result.routes,
          clusters: result.clusters,
          keysRead: result.keysRead,
        }),
      );
    }
    return result;
  } catch (err) {
    log(
      JSON.stringify({ msg: "edge-mirror.policy_publish_failed", by: "reconcile", error: String(err).slice(0, 500) }),
    );
    return undefined;
  }
}

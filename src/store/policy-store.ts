/**
 * @module store/policy-store
 * `PolicyStore`: the one way edge-mirror reads and writes policies. `kvPolicyStore` implements it
 * over a Workers KV binding — the worker's, the admin API's, and the CLI's local mode (Miniflare's
 * binding on wrangler's local state); scripts/policy/kv.ts implements it over
 * `wrangler kv … --remote`. Only route and cluster keys (store/keys) are policies: nothing else in the
 * namespace is ever listed, read in bulk, written or deleted through a store, but for the published
 * snapshot and its marker (store/published), which have methods of their own. Every policy text is
 * stored with the SHA-256 of its text as metadata, so that a reconcile knows which keys changed from
 * a listing alone.
 */
import {
  metadataHash,
  POLICY_KINDS,
  POLICY_MARKER_KEY,
  POLICY_SNAPSHOT_KEY,
  type PolicyKind,
  parsePolicyKey,
  policyMetadata,
  policyPrefix,
} from "./keys.js";
import { sha256Hex } from "./published.js";

/** Called after each write of a batch: `done` of `total`. */
export type Progress = (done: number, total: number) => void;

export interface PolicyStore {
  /** Every stored route and cluster, text by key, in key order; a key deleted while reading is left out. */
  readAll(): Promise<Map<string, string>>;
  /**
   * Every stored policy key, in key order, with the SHA-256 its metadata holds; undefined for a
   * value written without it (`wrangler kv key put`, the dashboard). Lists only: no value is read.
   */
  listHashes(): Promise<Map<string, string | undefined>>;
  /** The ids (routes) or names (clusters) stored. */
  list(kind: PolicyKind): Promise<string[]>;
  /** The text stored under one policy key, or null. */
  get(key: string): Promise<string | null>;
  /** The texts stored under `keys` (policy keys); a key with no value is left out. */
  getMany(keys: readonly string[]): Promise<Map<string, string>>;
  /** Writes each entry, in the order given, with the SHA-256 of its text as metadata. */
  put(entries: ReadonlyArray<readonly [key: string, text: string]>, progress?: Progress): Promise<void>;
  delete(keys: readonly string[]): Promise<void>;
  /** The published marker as stored, or null: one key read. */
  readMarker(): Promise<string | null>;
  /** The published snapshot as stored, or null: one key read. */
  readSnapshot(): Promise<string | null>;
  /** Both, as a reconcile needs them. */
  readPublished(): Promise<{ marker: string | null; snapshot: string | null }>;
  /** Writes the snapshot (when given), then the marker that names it. */
  publish(snapshot: string | undefined, marker: string): Promise<void>;
}

/** The part of a KV binding a store uses; the worker's `KVNamespace` and Miniflare's Node binding both have it. */
export interface KvBinding {
  list(options: { prefix: string; cursor?: string }): Promise<{
    keys: ReadonlyArray<{ name: string; metadata?: unknown }>;
    list_complete: boolean;
    cursor?: string;
  }>;
  get(keys: string[], type: "text"): Promise<Map<string, string | null>>;
  get(key: string, type: "text"): Promise<string | null>;
  put(key: string, value: string, options?: { metadata?: unknown }): Promise<void>;
  delete(key: string): Promise<void>;
}

/** Workers KV bulk get accepts at most 100 keys per call. */
const BULK_GET_LIMIT = 100;

/** Refuses any key that is not a policy's, so that no store call can touch other data. */
export function requirePolicyKey(key: string): string {
  if (!parsePolicyKey(key)) throw new TypeError(`not a policy key: "${key}" (route:<id> or cluster:<name>)`);
  return key;
}

export function kvPolicyStore(kv: KvBinding): PolicyStore {
  /** Every key under `prefix` with its hash, following KV's 1,000-key pages. */
  async function listKeys(prefix: string): Promise<Map<string, string | undefined>> {
    const keys = new Map<string, string | undefined>();
    let cursor: string | undefined;
    for (;;) {
      const page = await kv.list({ prefix, ...(cursor ? { cursor } : {}) });
      for (const key of page.keys) keys.set(key.name, metadataHash(key.metadata));
      if (page.list_complete || !page.cursor) return keys;
      cursor = page.cursor;
    }
  }

  async function listHashes(): Promise<Map<string, string | undefined>> {
    const pages = await Promise.all(POLICY_KINDS.map((kind) => listKeys(policyPrefix(kind))));
    return new Map(pages.flatMap((page) => [...page]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  async function getTexts(keys: readonly string[]): Promise<Map<string, string>> {
    const chunks: string[][] = [];
    for (let i = 0; i < keys.length; i += BULK_GET_LIMIT) chunks.push(keys.slice(i, i + BULK_GET_LIMIT));
    const maps = await Promise.all(chunks.map((chunk) => kv.get(chunk, "text")));
    const texts = new Map<string, string>();
    for (const map of maps) for (const [key, text] of map) if (text !== null) texts.set(key, text);
    return texts;
  }

  return {
    async readAll() {
      return getTexts([...(await listHashes()).keys()]);
    },
    listHashes,
    async list(kind) {
      const prefix = policyPrefix(kind);
      return [...(await listKeys(prefix)).keys()].map((key) => key.slice(prefix.length));
    },
    async get(key) {
      return (await getTexts([requirePolicyKey(key)])).get(key) ?? null;
    },
    async getMany(keys) {
      for (const key of keys) requirePolicyKey(key);
      return getTexts(keys);
    },
    async put(entries, progress) {
      for (const [key] of entries) requirePolicyKey(key);
      let done = 0;
      for (const [key, text] of entries) {
        await kv.put(key, text, { metadata: policyMetadata(await sha256Hex(text)) });
        progress?.(++done, entries.length);
      }
    },
    async delete(keys) {
      for (const key of keys) requirePolicyKey(key);
      for (const key of keys) await kv.delete(key);
    },
    readMarker: () => kv.get(POLICY_MARKER_KEY, "text"),
    readSnapshot: () => kv.get(POLICY_SNAPSHOT_KEY, "text"),
    async readPublished() {
      const [marker, snapshot] = await Promise.all([
        kv.get(POLICY_MARKER_KEY, "text"),
        kv.get(POLICY_SNAPSHOT_KEY, "text"),
      ]);
      return { marker, snapshot };
    },
    async publish(snapshot, marker) {
      // Snapshot first: a reader that sees the new marker may then find the snapshot it names.
      if (snapshot !== undefined) await kv.put(POLICY_SNAPSHOT_KEY, snapshot);
      await kv.put(POLICY_MARKER_KEY, marker);
    },
  };
}

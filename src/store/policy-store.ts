/**
 * @module store/policy-store
 * `PolicyStore`: the one way edge-mirror reads and writes policies. `kvPolicyStore` implements it
 * over a Workers KV binding — the worker's, the admin API's, and the CLI's local mode (Miniflare's
 * binding on wrangler's local state); scripts/policy/kv.ts implements it over
 * `wrangler kv … --remote`. Only route and cluster keys (store/keys) are policies: nothing else in the
 * namespace is ever listed, read in bulk, written or deleted through a store.
 */
import { POLICY_KINDS, type PolicyKind, parsePolicyKey, policyPrefix } from "./keys.js";

/** Called after each write of a batch: `done` of `total`. */
export type Progress = (done: number, total: number) => void;

export interface PolicyStore {
  /** Every stored route and cluster, text by key, in key order; a key deleted while reading is left out. */
  readAll(): Promise<Map<string, string>>;
  /** The ids (routes) or names (clusters) stored. */
  list(kind: PolicyKind): Promise<string[]>;
  /** The text stored under one policy key, or null. */
  get(key: string): Promise<string | null>;
  /** Writes each entry, in the order given. */
  put(entries: ReadonlyArray<readonly [key: string, text: string]>, progress?: Progress): Promise<void>;
  delete(keys: readonly string[]): Promise<void>;
}

/** The part of a KV binding a store uses; the worker's `KVNamespace` and Miniflare's Node binding both have it. */
export interface KvBinding {
  list(options: { prefix: string; cursor?: string }): Promise<{
    keys: ReadonlyArray<{ name: string }>;
    list_complete: boolean;
    cursor?: string;
  }>;
  get(keys: string[], type: "text"): Promise<Map<string, string | null>>;
  put(key: string, value: string): Promise<void>;
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
  /** Every key under `prefix`, following KV's 1,000-key pages. */
  async function listKeys(prefix: string): Promise<string[]> {
    const names: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await kv.list({ prefix, ...(cursor ? { cursor } : {}) });
      for (const key of page.keys) names.push(key.name);
      if (page.list_complete || !page.cursor) return names;
      cursor = page.cursor;
    }
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
      const keys = await Promise.all(POLICY_KINDS.map((kind) => listKeys(policyPrefix(kind))));
      return getTexts(keys.flat());
    },
    async list(kind) {
      const prefix = policyPrefix(kind);
      return (await listKeys(prefix)).map((key) => key.slice(prefix.length));
    },
    async get(key) {
      return (await getTexts([requirePolicyKey(key)])).get(key) ?? null;
    },
    async put(entries, progress) {
      for (const [key] of entries) requirePolicyKey(key);
      let done = 0;
      for (const [key, text] of entries) {
        await kv.put(key, text);
        progress?.(++done, entries.length);
      }
    },
    async delete(keys) {
      for (const key of keys) requirePolicyKey(key);
      for (const key of keys) await kv.delete(key);
    },
  };
}

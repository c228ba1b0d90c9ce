/**
 * @module scripts/policy/kv
 * Where `policy` reads and writes, as a `PolicyStore` (src/store/policy-store.ts). `local` is the
 * very state `wrangler dev` and `npm start` use, opened directly (honouring `--persist-to` as
 * wrangler does) so that nothing but the KV namespace starts; `remote` goes through
 * `wrangler kv … --remote`, so it works wherever `wrangler login` does.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  KV_BINDING,
  metadataHash,
  POLICY_KINDS,
  POLICY_MARKER_KEY,
  POLICY_SNAPSHOT_KEY,
  policyMetadata,
  policyPrefix,
} from "../../src/store/keys.js";
import { kvPolicyStore, type PolicyStore, requirePolicyKey } from "../../src/store/policy-store.js";
import { sha256Hex } from "../../src/store/published.js";

export interface KvOptions {
  remote: boolean;
  env?: string | undefined;
  /** wrangler's `--persist-to`: the directory that holds `v3/` (default `.wrangler/state`). */
  persistTo?: string | undefined;
  config?: string | undefined;
}

export interface OpenPolicyStore extends PolicyStore {
  close(): Promise<void>;
}

export async function openPolicyStore(options: KvOptions): Promise<OpenPolicyStore> {
  if (options.remote) return remoteStore(options);
  // Loaded here only: validate and remote commands start no Miniflare and need none of it.
  const { openLocalKv } = await import("../lib/local-kv.mjs");
  const { kv, dispose } = await openLocalKv(options);
  return { ...kvPolicyStore(kv), close: dispose };
}

/** wrangler kv bulk put takes at most 10,000 pairs; smaller batches report progress more often. */
const PUT_BATCH = 1000;

function remoteStore(options: KvOptions): OpenPolicyStore {
  const dir = mkdtempSync(join(tmpdir(), "edge-mirror-policy-"));
  const wrangler =
    process.env.EDGE_MIRROR_WRANGLER ??
    fileURLToPath(new URL("../../node_modules/wrangler/bin/wrangler.js", import.meta.url));
  const common = [
    "--binding",
    KV_BINDING,
    "--remote",
    ...(options.env ? ["--env", options.env] : []),
    ...(options.config ? ["--config", options.config] : []),
  ];
  const run = (args: string[]): string => {
    const result = spawnSync(process.execPath, [wrangler, ...args, ...common], {
      encoding: "utf8",
      maxBuffer: 256 * 1024 * 1024,
    });
    if (result.status !== 0)
      throw new Error(`wrangler ${args.slice(0, 3).join(" ")} failed: ${result.stderr || result.stdout}`);
    return result.stdout;
  };
  /** wrangler prints banners around its JSON; take the outermost JSON value. */
  const json = (text: string, open: "[" | "{"): unknown => {
    const close = open === "[" ? "]" : "}";
    return JSON.parse(text.slice(text.indexOf(open), text.lastIndexOf(close) + 1));
  };
  const file = (name: string, content: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(content));
    return path;
  };
  /** Every key under `prefix` with the hash its metadata holds (wrangler lists metadata with the names). */
  const listKeys = (prefix: string): Array<[string, string | undefined]> =>
    (json(run(["kv", "key", "list", "--prefix", prefix]), "[") as { name: string; metadata?: unknown }[]).map((k) => [
      k.name,
      metadataHash(k.metadata),
    ]);
  const listHashes = () =>
    new Map(
      POLICY_KINDS.flatMap((kind) => listKeys(policyPrefix(kind))).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  const putOne = (key: string, value: string) => run(["kv", "bulk", "put", file("put.json", [{ key, value }])]);
  const getTexts = (keys: readonly string[]): Map<string, string> => {
    const texts = new Map<string, string>();
    if (keys.length === 0) return texts;
    const values = json(run(["kv", "bulk", "get", file("keys.json", keys)]), "{") as Record<
      string,
      { value: string | null }
    >;
    for (const key of keys) {
      const value = Object.hasOwn(values, key) ? values[key]?.value : null;
      if (typeof value === "string") texts.set(key, value);
    }
    return texts;
  };
  const readPublished = () => {
    const texts = getTexts([POLICY_MARKER_KEY, POLICY_SNAPSHOT_KEY]);
    return { marker: texts.get(POLICY_MARKER_KEY) ?? null, snapshot: texts.get(POLICY_SNAPSHOT_KEY) ?? null };
  };
  return {
    async readAll() {
      return getTexts([...listHashes().keys()]);
    },
    async listHashes() {
      return listHashes();
    },
    async list(kind) {
      const prefix = policyPrefix(kind);
      return listKeys(prefix).map(([key]) => key.slice(prefix.length));
    },
    async get(key) {
      return getTexts([requirePolicyKey(key)]).get(key) ?? null;
    },
    async getMany(keys) {
      for (const key of keys) requirePolicyKey(key);
      return getTexts(keys);
    },
    async put(entries, progress) {
      for (const [key] of entries) requirePolicyKey(key);
      for (let i = 0; i < entries.length; i += PUT_BATCH) {
        const batch = await Promise.all(
          entries
            .slice(i, i + PUT_BATCH)
            .map(async ([key, value]) => ({ key, value, metadata: policyMetadata(await sha256Hex(value)) })),
        );
        run(["kv", "bulk", "put", file("put.json", batch)]);
        progress?.(i + batch.length, entries.length);
      }
    },
    async readMarker() {
      return readPublished().marker;
    },
    async readSnapshot() {
      return readPublished().snapshot;
    },
    async readPublished() {
      return readPublished();
    },
    async publish(snapshot, marker) {
      // Two calls: a bulk write does not say in which order its keys become visible.
      if (snapshot !== undefined) putOne(POLICY_SNAPSHOT_KEY, snapshot);
      putOne(POLICY_MARKER_KEY, marker);
    },
    async delete(keys) {
      for (const key of keys) requirePolicyKey(key);
      if (keys.length > 0) run(["kv", "bulk", "delete", file("delete.json", keys), "--force"]);
    },
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

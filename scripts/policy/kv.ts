/**
 * @module scripts/policy/kv
 * Where `policy` reads and writes: `local` is the very state `wrangler dev` and `npm start` use
 * (through wrangler's getPlatformProxy, honouring `--persist-to` like wrangler does); `remote`
 * goes through `wrangler kv … --remote`, so it works wherever `wrangler login` does.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const BINDING = "MIRROR_CONFIG";
const PREFIXES = ["route:", "cluster:"];

export interface KvOptions {
  remote: boolean;
  env?: string | undefined;
  /** wrangler's `--persist-to`: the directory that holds `v3/` (default `.wrangler/state`). */
  persistTo?: string | undefined;
  config?: string | undefined;
}

export interface PolicyKv {
  /** Every `route:*` and `cluster:*` entry. */
  readAll(): Promise<Map<string, string>>;
  put(entries: ReadonlyArray<[string, string]>, progress: (done: number, total: number) => void): Promise<void>;
  remove(keys: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

interface KvBinding {
  list(options: {
    prefix: string;
    cursor?: string;
  }): Promise<{ keys: { name: string }[]; list_complete: boolean; cursor?: string }>;
  get(key: string, type: "text"): Promise<string | null>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

export async function openKv(options: KvOptions): Promise<PolicyKv> {
  return options.remote ? remoteKv(options) : localKv(options);
}

async function localKv(options: KvOptions): Promise<PolicyKv> {
  const { getPlatformProxy } = await import("wrangler");
  const proxy = await getPlatformProxy<Record<string, unknown>>({
    ...(options.config ? { configPath: options.config } : {}),
    ...(options.env ? { environment: options.env } : {}),
    persist: { path: join(resolve(options.persistTo ?? ".wrangler/state"), "v3") },
    remoteBindings: false,
  });
  const kv = proxy.env[BINDING] as KvBinding | undefined;
  if (!kv) {
    await proxy.dispose();
    throw new Error(
      `no KV binding ${BINDING} in the wrangler configuration${options.env ? ` (env ${options.env})` : ""}`,
    );
  }
  return {
    async readAll() {
      const all = new Map<string, string>();
      for (const prefix of PREFIXES) {
        let cursor: string | undefined;
        for (;;) {
          const page = await kv.list({ prefix, ...(cursor ? { cursor } : {}) });
          const values = await Promise.all(page.keys.map((k) => kv.get(k.name, "text")));
          page.keys.forEach((k, i) => {
            const value = values[i];
            if (value !== null && value !== undefined) all.set(k.name, value);
          });
          if (page.list_complete) break;
          cursor = page.cursor;
        }
      }
      return all;
    },
    async put(entries, progress) {
      let done = 0;
      for (const [key, value] of entries) {
        await kv.put(key, value);
        progress(++done, entries.length);
      }
    },
    async remove(keys) {
      for (const key of keys) await kv.delete(key);
    },
    close: () => proxy.dispose(),
  };
}

function remoteKv(options: KvOptions): PolicyKv {
  const dir = mkdtempSync(join(tmpdir(), "edge-mirror-policy-"));
  const wrangler =
    process.env.EDGE_MIRROR_WRANGLER ??
    fileURLToPath(new URL("../../node_modules/wrangler/bin/wrangler.js", import.meta.url));
  const common = [
    "--binding",
    BINDING,
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
  return {
    async readAll() {
      const keys = PREFIXES.flatMap((prefix) =>
        (json(run(["kv", "key", "list", "--prefix", prefix]), "[") as { name: string }[]).map((k) => k.name),
      );
      const all = new Map<string, string>();
      if (keys.length === 0) return all;
      const values = json(run(["kv", "bulk", "get", file("keys.json", keys)]), "{") as Record<
        string,
        { value: string | null }
      >;
      for (const [key, { value }] of Object.entries(values)) if (value !== null) all.set(key, value);
      return all;
    },
    async put(entries, progress) {
      for (let i = 0; i < entries.length; i += 1000) {
        const chunk = entries.slice(i, i + 1000).map(([key, value]) => ({ key, value }));
        run(["kv", "bulk", "put", file("put.json", chunk)]);
        progress(Math.min(entries.length, i + chunk.length), entries.length);
      }
    },
    async remove(keys) {
      if (keys.length > 0) run(["kv", "bulk", "delete", file("delete.json", keys), "--force"]);
    },
    close: async () => {},
  };
}

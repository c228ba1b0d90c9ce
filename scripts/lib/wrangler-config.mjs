/**
 * @module scripts/lib/wrangler-config
 * What local runs read from the wrangler configuration, through wrangler's own parser, and keep
 * beside it so that later commands skip the parser.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { KV_BINDING } from "../../src/store/keys.js";
import { ROOT } from "./build.mjs";

/** Bumped whenever what is kept changes, so that a kept configuration of another layout is read anew. */
const CACHE_LAYOUT = 3;

/**
 * What local runs share with `wrangler dev`, read from the wrangler configuration as wrangler reads
 * it (for `env`, or the top level): where the policies' local KV data and the captures' local R2
 * data live, the rate limits and the compatibility date. Loading wrangler's parser costs about 2 s (a 12 MB bundle), and every
 * local `policy` command is a process of its own, so what it read is kept in `.wrangler/` beside
 * the configuration, keyed by the configuration's path and text, the environment and wrangler's
 * version: any change to one of them reads the configuration through wrangler again.
 * @param {{ config?: string | undefined, env?: string | undefined }} [where]
 */
export async function localConfig(where = {}) {
  const path = resolve(where.config ?? join(ROOT, "wrangler.toml"));
  const cacheFile = join(dirname(path), ".wrangler", "edge-mirror", "config.json");
  let key;
  try {
    const { version } = JSON.parse(readFileSync(join(ROOT, "node_modules/wrangler/package.json"), "utf8"));
    key = createHash("sha256")
      .update(JSON.stringify([CACHE_LAYOUT, version, path, where.env ?? "", readFileSync(path, "utf8")]))
      .digest("hex");
    const cached = JSON.parse(readFileSync(cacheFile, "utf8"));
    if (cached.key === key) return cached.config;
  } catch {
    // No configuration (wrangler says so below), no cache yet, or an unreadable one.
  }
  const config = await readWithWrangler(path, where.env);
  if (key) {
    try {
      mkdirSync(dirname(cacheFile), { recursive: true });
      const temporary = `${cacheFile}.${process.pid}`;
      writeFileSync(temporary, JSON.stringify({ key, config }));
      renameSync(temporary, cacheFile);
    } catch {
      // A read-only checkout reads through wrangler every time.
    }
  }
  return config;
}

/** @param {string} path @param {string | undefined} env */
async function readWithWrangler(path, env) {
  const { unstable_readConfig } = await import("wrangler");
  /** @type {import("wrangler").Unstable_Config} */
  const config = unstable_readConfig({ config: path, ...(env ? { env } : {}) });
  const kv = config.kv_namespaces.find((ns) => ns.binding === KV_BINDING);
  return {
    // Without an id (wrangler creates the namespace on deploy) wrangler dev keeps the data under the binding's name.
    /** @type {string | undefined} */
    namespaceId: kv ? (kv.id ?? kv.binding) : undefined,
    /** @type {Record<string, { simple: { limit: number, period: 10 | 60 } }>} */
    ratelimits: Object.fromEntries(config.ratelimits.map((r) => [r.name, { simple: r.simple }])),
    compatibilityDate: config.compatibility_date ?? "2026-04-20",
    /**
     * wrangler.toml's module rules as Miniflare spells them: a bundle that imports a file as text
     * keeps that module beside it, and Miniflare must load it as text too (none does today).
     * @type {import("miniflare").ModuleRule[]}
     */
    modulesRules: config.rules.map((rule) => ({
      type: rule.type,
      include: rule.globs,
      ...(rule.fallthrough === undefined ? {} : { fallthrough: rule.fallthrough }),
    })),
    /**
     * The spool (README "Delivery"): queue producers by binding, the consumers with their batch
     * and retry settings, and the R2 buckets by binding, as Miniflare takes them.
     * @type {Record<string, { queueName: string }>}
     */
    queueProducers: Object.fromEntries((config.queues.producers ?? []).map((p) => [p.binding, { queueName: p.queue }])),
    /** @type {Record<string, { maxBatchSize?: number, maxBatchTimeout?: number, maxRetries?: number, deadLetterQueue?: string }>} */
    queueConsumers: Object.fromEntries(
      (config.queues.consumers ?? []).map((c) => [
        c.queue,
        {
          ...(c.max_batch_size === undefined ? {} : { maxBatchSize: c.max_batch_size }),
          ...(c.max_batch_timeout === undefined ? {} : { maxBatchTimeout: c.max_batch_timeout }),
          ...(c.max_retries === undefined ? {} : { maxRetries: c.max_retries }),
          ...(c.dead_letter_queue === undefined ? {} : { deadLetterQueue: c.dead_letter_queue }),
        },
      ]),
    ),
    /**
     * Each R2 binding's bucket: its bucket_name, else (wrangler creates the bucket on deploy) the
     * binding's name, under which wrangler dev keeps its data, as for the KV namespace.
     * @type {Record<string, string>}
     */
    r2Buckets: Object.fromEntries(
      config.r2_buckets.map((b) => [b.binding, typeof b.bucket_name === "string" ? b.bucket_name : b.binding]),
    ),
    /**
     * Where the deployed admin surface answers, for the CLIs' `--remote` modes that go through it:
     * ADMIN_HOST, else the host of the first `routes` pattern (undefined for neither), and ADMIN_PREFIX.
     */
    admin: {
      /** @type {string | undefined} */
      host: adminHostOf(config),
      prefix:
        typeof config.vars.ADMIN_PREFIX === "string" && config.vars.ADMIN_PREFIX
          ? config.vars.ADMIN_PREFIX
          : "/__mirror",
    },
    /** wrangler's default state directory, `.wrangler/state` beside the configuration. */
    defaultPersistTo: join(config.configPath ? dirname(config.configPath) : process.cwd(), ".wrangler/state"),
  };
}

/**
 * ADMIN_HOST, else the host of the first route pattern (`api.example.com/*` → `api.example.com`).
 * @param {import("wrangler").Unstable_Config} config
 * @returns {string | undefined}
 */
function adminHostOf(config) {
  const configured = config.vars.ADMIN_HOST;
  if (typeof configured === "string" && configured.trim()) return configured.trim();
  const first = config.routes?.[0];
  const pattern = typeof first === "string" ? first : first?.pattern;
  const host = pattern
    ?.replace(/^https?:\/\//, "")
    .split("/")[0]
    ?.replace(/^\*\.?/, "");
  return host || undefined;
}

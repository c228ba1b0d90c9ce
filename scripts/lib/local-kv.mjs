/**
 * @module scripts/lib/local-kv
 * The local KV namespace of the policies, as `wrangler dev` keeps it, for the policy CLI's
 * `--local` mode.
 */
import { join, resolve } from "node:path";
import { Miniflare } from "miniflare";
import { KV_BINDING } from "../../src/store/keys.js";
import { localConfig } from "./wrangler-config.mjs";

/**
 * The local KV state of the policies, opened on its own: a Miniflare holding nothing but that
 * namespace, on the directory `wrangler dev` (and its `--persist-to`) uses. Nothing else of the
 * worker is started, so nothing else warns.
 * @param {{ persistTo?: string | undefined, config?: string | undefined, env?: string | undefined }} [options]
 */
export async function openLocalKv(options = {}) {
  const local = await localConfig(options);
  if (!local.namespaceId) {
    throw new Error(
      `no KV binding ${KV_BINDING} in the wrangler configuration${options.env ? ` (env ${options.env})` : ""}`,
    );
  }
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch: () => new Response(null, { status: 404 }) };",
    compatibilityDate: local.compatibilityDate,
    kvNamespaces: { [KV_BINDING]: local.namespaceId },
    kvPersist: join(resolve(options.persistTo ?? local.defaultPersistTo), "v3", "kv"),
    host: "127.0.0.1",
    port: 0,
  });
  const kv = await mf.getKVNamespace(KV_BINDING);
  return { kv, dispose: () => mf.dispose() };
}

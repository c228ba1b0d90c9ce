/**
 * @module scripts/lib/local-r2
 * The local R2 bucket of captured requests, as `wrangler dev` keeps it, for the capture CLI's
 * `--local` mode (scripts/lib/local-kv does the same for the policies).
 */
import { join, resolve } from "node:path";
import { Miniflare } from "miniflare";
import { CAPTURES_BINDING } from "../../src/capture/binding.js";
import { localConfig } from "./wrangler-config.mjs";

/**
 * The local R2 state of the captures, opened on its own: a Miniflare holding nothing but that
 * bucket, on the directory `wrangler dev` (and its `--persist-to`) uses, so nothing else of the
 * worker starts or warns. `wrangler dev` may run beside it: both go through the same SQLite.
 * @param {{ persistTo?: string | undefined, config?: string | undefined, env?: string | undefined }} [options]
 */
export async function openLocalR2(options = {}) {
  const local = await localConfig(options);
  if (!local.r2Buckets[CAPTURES_BINDING]) {
    throw new Error(
      `no R2 binding ${CAPTURES_BINDING} in the wrangler configuration${options.env ? ` (env ${options.env})` : ""}`,
    );
  }
  const mf = new Miniflare({
    modules: true,
    script: "export default { fetch: () => new Response(null, { status: 404 }) };",
    compatibilityDate: local.compatibilityDate,
    r2Buckets: { [CAPTURES_BINDING]: local.r2Buckets[CAPTURES_BINDING] },
    r2Persist: join(resolve(options.persistTo ?? local.defaultPersistTo), "v3", "r2"),
    host: "127.0.0.1",
    port: 0,
  });
  const bucket = await mf.getR2Bucket(CAPTURES_BINDING);
  return { bucket, dispose: () => mf.dispose() };
}

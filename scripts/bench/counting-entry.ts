/**
 * Benchmark entry: the real worker, with its KV binding wrapped once per isolate so that the
 * benchmark can report KV reads per request and policy loads (GET /__bench/kv-reads). Nothing
 * else differs.
 */

import app from "../../src/index.js";

export { MirrorStatsShard } from "../../src/index.js";

let reads = 0;
/** The env the worker sees: made once per env the runtime passes, as the deployed worker's is. */
let wrapped: { from: Env; env: Env } | undefined;

function countingKv(kv: KVNamespace): KVNamespace {
  return new Proxy(kv, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (prop === "get" || prop === "list" || prop === "getWithMetadata") reads++;
        return value.apply(target, args);
      };
    },
  });
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    // A new env object per request, or a URL parsed twice, would be cost the deployed worker has not.
    if (wrapped?.from !== env) wrapped = { from: env, env: { ...env, MIRROR_CONFIG: countingKv(env.MIRROR_CONFIG) } };
    if (request.url.endsWith("/__bench/kv-reads"))
      return Response.json({ reads, loads: app.isolate(wrapped.env).policies.loads });
    return app.fetch(request, wrapped.env, ctx);
  },
} satisfies ExportedHandler<Env>;

/**
 * Benchmark entry: the real worker, with its KV binding wrapped once per isolate so that the
 * benchmark can report KV reads per request and policy loads (GET /__bench/kv-reads). Nothing
 * else differs.
 */

import app from "../../src/index.js";
import { isolateFor } from "../../src/isolate/index.js";

export { MirrorStatsShard } from "../../src/index.js";

let reads = 0;
let counted: KVNamespace | undefined;

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
    if (new URL(request.url).pathname === "/__bench/kv-reads")
      return Response.json({ reads, loads: isolateFor(env).policies.loads });
    counted ??= countingKv(env.MIRROR_CONFIG);
    return app.fetch(request, { ...env, MIRROR_CONFIG: counted }, ctx);
  },
} satisfies ExportedHandler<Env>;

/**
 * Before each file of the worker project, whose files share one workerd runtime (`isolate: false`
 * in vitest.config.ts): every binding's data deleted (KV, R2, the stats objects), so that no file
 * sees what another wrote, and the admin sign-in limit counted under keys of the file's own, so
 * that no file spends another's allowance. The limit stays the real binding, with its real limit.
 * Modules are shared as well, the exported worker and its isolate state with them: a test that
 * needs an isolate of its own builds a worker (`testWorker()` in helpers.ts, or `createWorker`).
 */
import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";

await reset();

const FILE_KEYS = Symbol("file keys");
type KeyedLimit = RateLimit & { [FILE_KEYS]?: RateLimit };
const binding = env.ADMIN_LOGIN_LIMIT as KeyedLimit;
const real = binding[FILE_KEYS] ?? binding;
const file = crypto.randomUUID();
const keyed: KeyedLimit = {
  limit: (options) => real.limit({ ...options, key: `${file}:${options.key}` }),
  [FILE_KEYS]: real,
};
(env as { ADMIN_LOGIN_LIMIT: RateLimit }).ADMIN_LOGIN_LIMIT = keyed;

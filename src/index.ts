/**
 * @module edge-mirror
 * Worker entry point: every request is answered from the primary origin and, where a route
 * policy in KV says so, copied to mirror origins inside `ctx.waitUntil`. Requests under the
 * admin prefix go to the admin surface (a Hono app) instead and are never proxied or mirrored.
 * The zone's own traffic does not go through a router: one string check sends it on its way
 * (with ADMIN_HOST set, a check of the host first, which sends other hosts' traffic on sooner).
 */
import { createAdminApp } from "./admin/index.js";
import { adminRequest } from "./admin/paths.js";
import { handleRequest } from "./app.js";
import { isolateFor } from "./isolate/index.js";

const admin = createAdminApp();

const worker = {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const { adminPrefix, adminHost } = isolateFor(env).settings;
    const forAdmin = adminRequest(request, adminPrefix, adminHost);
    if (forAdmin) return admin.fetch(forAdmin, env, ctx);
    return handleRequest(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;

export { MirrorStatsShard } from "./stats/durable-object.js";

export default worker;

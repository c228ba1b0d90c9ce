/**
 * @module edge-mirror
 * Worker entry point: every request is answered from the primary origin and, where a route
 * policy in KV says so, copied to mirror origins inside `ctx.waitUntil`. Requests under the
 * admin prefix go to the admin surface instead and are never proxied or mirrored.
 */
import { Hono } from "hono";
import { policyApi } from "./admin/api.js";
import { adminApp, adminPrefix, isAdminPath, stripPrefix } from "./admin/index.js";
import { statsApi } from "./admin/stats.js";
import { handleRequest } from "./app.js";
import { dashboard } from "./dashboard/index.js";

adminApp.route("/api/stats", statsApi);
adminApp.route("/api", policyApi);
adminApp.route("/", dashboard);

const app = new Hono<{ Bindings: Env }>();

app.all("*", (c) => {
  const prefix = adminPrefix(c.env);
  if (isAdminPath(c.req.path, prefix)) {
    return adminApp.fetch(stripPrefix(c.req.raw, prefix), c.env, c.executionCtx);
  }
  return handleRequest(c.req.raw, c.env, c.executionCtx);
});

export { MirrorStatsShard } from "./stats/durable-object.js";

export default app satisfies ExportedHandler<Env>;

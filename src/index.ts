/**
 * @module edge-mirror
 * Worker entry point: every request is answered from the primary origin and, where a route
 * policy in KV says so, copied to mirror origins inside `ctx.waitUntil`. Requests under the
 * admin prefix go to the admin surface instead and are never proxied or mirrored.
 */
import { Hono } from "hono";
import { createAdminApp } from "./admin/index.js";
import { adminRequest } from "./admin/paths.js";
import { handleRequest } from "./app.js";
import { isolateFor } from "./isolate/index.js";

const admin = createAdminApp();
const app = new Hono<{ Bindings: Env }>();

app.all("*", (c) => {
  const forAdmin = adminRequest(c.req.raw, isolateFor(c.env).settings.adminPrefix);
  if (forAdmin) return admin.fetch(forAdmin, c.env, c.executionCtx);
  return handleRequest(c.req.raw, c.env, c.executionCtx);
});

export { MirrorStats } from "./stats/durable-object.js";

export default app satisfies ExportedHandler<Env>;

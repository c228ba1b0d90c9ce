/**
 * @module edge-mirror
 * Worker entry point: every request is answered from the primary origin and, where a route
 * policy in KV says so, copied to mirror origins inside `ctx.waitUntil`.
 */
import { Hono } from "hono";
import { handleRequest } from "./app.js";

const app = new Hono<{ Bindings: Env }>();

app.all("*", (c) => handleRequest(c.req.raw, c.env, c.executionCtx));

export default app satisfies ExportedHandler<Env>;

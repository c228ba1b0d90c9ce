/**
 * @module admin/http
 * What every admin handler shares: the Hono environment — the isolate's admin state (admin/state),
 * set by the app's first middleware, and the token that opened the surface, set by the gate — the
 * JSON error body, and the policies as the isolate serves them.
 */
import type { Context } from "hono";
import type { PolicySnapshot } from "../store/index.js";
import type { AdminState } from "./state.js";

export type AdminEnv = { Bindings: Env; Variables: { admin: AdminState; adminToken: string } };

export function jsonError(status: number, error: string, message: string, headers: HeadersInit = {}): Response {
  return Response.json({ error, message }, { status, headers });
}

/**
 * The isolate's policy snapshot, the one the worker serves from: what `api/stats` and `api/verdict`
 * read the policies from, rather than KV.
 */
export function policySnapshot(c: Context<AdminEnv>): Promise<PolicySnapshot> {
  return c.get("admin").policies.get(c.env.MIRROR_CONFIG, (p) => c.executionCtx.waitUntil(p));
}

/**
 * @module admin/http
 * What every admin handler shares: the Hono environment — the isolate's admin state (admin/state),
 * set by the app's first middleware, and the token that opened the surface, set by the gate — and
 * the JSON error body.
 */
import type { AdminState } from "./state.js";

export type AdminEnv = { Bindings: Env; Variables: { admin: AdminState; adminToken: string } };

export function jsonError(status: number, error: string, message: string, headers: HeadersInit = {}): Response {
  return Response.json({ error, message }, { status, headers });
}

/**
 * @module admin
 * The admin surface under `ADMIN_PREFIX` (default `/__mirror`), built once: never proxied to the
 * primary, never mirrored, closed unless an `ADMIN_TOKEN` secret that is hard to guess is set.
 * Paths here are relative to the prefix (`/api/...`, `/dashboard`); admin/paths decides which
 * requests come (on `ADMIN_HOST` only, when it is set).
 */
import { Hono } from "hono";
import { dashboard, signIn } from "../dashboard/index.js";
import { policyApi } from "./api.js";
import { requireAdmin, requireEnabled, requireSameOrigin } from "./auth.js";
import { adminErrorResponse } from "./errors.js";
import { type AdminEnv, jsonError } from "./http.js";
import { limitBody } from "./limits.js";
import { statsApi } from "./stats.js";

export { type AdminEnv, jsonError } from "./http.js";

/** Policies are small; anything larger is a mistake, not a policy. */
export const ADMIN_BODY_MAX_BYTES = 256 * 1024;

export function createAdminApp(): Hono<AdminEnv> {
  const admin = new Hono<AdminEnv>();
  // Before anything counts or reads: a forged sign-in must not spend the victim's allowance.
  admin.use(requireEnabled, requireSameOrigin);
  // Open: registered before the gate below, they answer before it runs.
  admin.route("/", signIn);
  admin.use(requireAdmin, limitBody(ADMIN_BODY_MAX_BYTES, "a request body"));
  admin.route("/api/stats", statsApi);
  admin.route("/api", policyApi);
  admin.route("/", dashboard);
  admin.notFound((c) =>
    jsonError(404, "not_found", `no admin endpoint ${c.req.method} ${new URL(c.req.url).pathname}`),
  );
  admin.onError(adminErrorResponse);
  return admin;
}

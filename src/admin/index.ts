/**
 * @module admin
 * The admin surface under `ADMIN_PREFIX` (default `/__mirror`), built once per worker: never
 * proxied to the primary, never mirrored, closed unless an `ADMIN_TOKEN` secret that is hard to
 * guess is set. Paths here are relative to the prefix (`/api/...`, `/dashboard`); admin/paths
 * decides which requests come (on `ADMIN_HOST` only, when it is set). Every handler finds the
 * isolate's admin state (admin/state) in the `admin` context variable, which the first middleware
 * sets from the env Hono is given.
 */
import { Hono } from "hono/tiny";
import { policyApi } from "./api.js";
import { requireAdmin, requireEnabled, requireSameOrigin } from "./auth.js";
import { capturesApi } from "./captures.js";
import { dashboard, signIn } from "./dashboard/index.js";
import { adminErrorResponse } from "./errors.js";
import { type AdminEnv, jsonError } from "./http.js";
import { limitBody } from "./limits.js";
import type { AdminState } from "./state.js";
import { statsApi } from "./stats.js";
import { verdictApi } from "./verdict.js";

export { type AdminEnv, jsonError } from "./http.js";
export { type AdminState, adminState } from "./state.js";

/** Policies are small; anything larger is a mistake, not a policy. */
export const ADMIN_BODY_MAX_BYTES = 256 * 1024;

/** The admin app; `stateOf` gives the isolate's admin state for the env a request comes with. */
export function createAdminApp(stateOf: (env: Env) => AdminState): Hono<AdminEnv> {
  const admin = new Hono<AdminEnv>();
  admin.use(async (c, next) => {
    c.set("admin", stateOf(c.env));
    await next();
  });
  // Before anything counts or reads: a forged sign-in must not spend the victim's allowance.
  admin.use(requireEnabled, requireSameOrigin);
  // Open: registered before the gate below, they answer before it runs.
  admin.route("/", signIn());
  admin.use(requireAdmin, limitBody(ADMIN_BODY_MAX_BYTES, "a request body"));
  admin.route("/api/stats", statsApi());
  admin.route("/api/verdict", verdictApi());
  admin.route("/api/captures", capturesApi());
  admin.route("/api", policyApi());
  admin.route("/", dashboard());
  admin.notFound((c) =>
    jsonError(404, "not_found", `no admin endpoint ${c.req.method} ${new URL(c.req.url).pathname}`),
  );
  admin.onError(adminErrorResponse);
  return admin;
}

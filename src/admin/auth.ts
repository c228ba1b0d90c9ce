/**
 * @module admin/auth
 * The admin surface's gates. `requireEnabled`: closed (404, the same answer whatever the reason)
 * unless ADMIN_TOKEN is set and hard to guess. `requireSameOrigin`: a browser's state-changing
 * request (a write, sign-in, sign-out) must come from the surface's own origin. `requireAdmin`: a
 * bearer token opens everything, and a wrong one counts against the sign-in rate limit; the
 * dashboard's session cookie opens only reads (GET/HEAD), so a forged form can never change a policy.
 */
import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { type AdminEnv, jsonError } from "./http.js";
import { clientAddress, limitBearer } from "./limits.js";
import { SESSION_COOKIE, sessionValid } from "./session.js";
import { loginLimiter, MIN_ADMIN_TOKEN_LENGTH } from "./settings.js";

/**
 * Compares a presented token in constant time: both sides are hashed first so that neither the
 * length nor a shared prefix of the secret leaks through timing.
 */
export async function tokenMatches(presented: string, secret: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(presented)),
    crypto.subtle.digest("SHA-256", encoder.encode(secret)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}

export const requireEnabled: MiddlewareHandler<AdminEnv> = async (c, next) => {
  const { token } = c.get("admin");
  if (token === undefined) {
    return jsonError(
      404,
      "admin_disabled",
      `the admin API is disabled: set the ADMIN_TOKEN secret (a random string of at least ${MIN_ADMIN_TOKEN_LENGTH} characters) to enable it`,
    );
  }
  c.set("adminToken", token);
  await next();
};

/**
 * Why a request that changes state (any method but GET and HEAD) may have been sent by another
 * site's page, or undefined. A browser says where a request comes from: `Sec-Fetch-Site`, which
 * must then be `same-origin` (or `none`, the user's own doing), or else `Origin`, which must be
 * the request's own origin. `same-site` is refused: a sibling subdomain, or a page of the zone
 * when the surface has a host of its own, is another origin. A client that sends neither is no
 * browser (curl, scripts), has no ambient cookie to abuse, and is let through: it authenticates
 * with the bearer token. Pure.
 */
export function crossOriginProblem(
  method: string,
  url: string,
  secFetchSite: string | undefined,
  origin: string | undefined,
): string | undefined {
  if (method === "GET" || method === "HEAD") return undefined;
  if (secFetchSite !== undefined) {
    if (secFetchSite === "same-origin" || secFetchSite === "none") return undefined;
    return `Sec-Fetch-Site is "${secFetchSite}": a ${method} to the admin surface must be same-origin`;
  }
  if (origin === undefined) return undefined;
  const own = new URL(url).origin;
  if (origin === own) return undefined;
  return `Origin "${origin}" is not this request's origin "${own}": a ${method} to the admin surface must be same-origin`;
}

/**
 * Refuses (403) a state-changing request another origin's page made. Not `hono/csrf`: it checks
 * only form-like or absent content types and refuses a request that sends neither header, so it
 * would refuse `curl -X DELETE` and the README's `curl --data @route.json`; it also takes either
 * header where one agrees, and answers in plain text.
 */
export const requireSameOrigin: MiddlewareHandler<AdminEnv> = async (c, next) => {
  const problem = crossOriginProblem(c.req.method, c.req.url, c.req.header("sec-fetch-site"), c.req.header("origin"));
  if (problem !== undefined) return jsonError(403, "cross_origin", problem);
  await next();
};

/** True when the request carries a session cookie of the current epoch. */
export async function hasSession(c: Context<AdminEnv>): Promise<boolean> {
  const value = getCookie(c, SESSION_COOKIE);
  if (!value) return false;
  const now = Date.now();
  const { sessionEpoch, sessionKeys } = c.get("admin");
  const [epoch, key] = await Promise.all([
    sessionEpoch.current(c.env.MIRROR_CONFIG, now),
    sessionKeys.of(c.get("adminToken")),
  ]);
  return sessionValid(value, key, epoch, now);
}

export const requireAdmin: MiddlewareHandler<AdminEnv> = async (c, next) => {
  const bearer = /^Bearer\s+(.+)$/i.exec(c.req.header("authorization") ?? "");
  if (bearer) {
    const matches = await tokenMatches((bearer[1] as string).trim(), c.get("adminToken"));
    const { admittedAddresses } = c.get("admin");
    await limitBearer(loginLimiter(c.env), admittedAddresses, clientAddress(c), matches, Date.now());
    if (!matches) return jsonError(403, "forbidden", "the bearer token does not match ADMIN_TOKEN");
    return next();
  }
  const reads = c.req.method === "GET" || c.req.method === "HEAD";
  if (reads && (await hasSession(c))) return next();
  if (reads && (c.req.header("accept") ?? "").includes("text/html")) {
    return c.redirect(`${c.get("admin").prefix}/login`, 303);
  }
  return jsonError(401, "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>", {
    "www-authenticate": 'Bearer realm="edge-mirror"',
  });
};

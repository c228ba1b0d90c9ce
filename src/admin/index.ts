/**
 * @module admin
 * The admin surface under `ADMIN_PREFIX` (default `/__mirror`): never proxied to the primary,
 * never mirrored, and closed unless an `ADMIN_TOKEN` secret is set. Handlers mount on
 * `adminApp`; paths there are relative to the prefix (`/api/...`, `/dashboard`).
 */
import { Hono } from "hono";
import { readCookie, SESSION_COOKIE, sessionValid } from "./session.js";

export const DEFAULT_ADMIN_PREFIX = "/__mirror";

export type AdminEnv = { Bindings: Env };

export function adminPrefix(env: Env): string {
  const configured = env.ADMIN_PREFIX?.trim();
  if (!configured) return DEFAULT_ADMIN_PREFIX;
  const withSlash = configured.startsWith("/") ? configured : `/${configured}`;
  return withSlash.replace(/\/+$/, "");
}

/** True for the prefix itself and anything below it (segment-aware). */
export function isAdminPath(pathname: string, prefix: string): boolean {
  return pathname === prefix || pathname.startsWith(`${prefix}/`);
}

export function jsonError(status: number, error: string, message: string, headers: HeadersInit = {}): Response {
  return Response.json({ error, message }, { status, headers });
}

/**
 * Compares the bearer token in constant time: both sides are hashed first so that neither the
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

/** Paths (relative to the prefix) that a browser without a session may open: the sign-in form and sign-out. */
export const OPEN_PATHS = new Set(["/login", "/logout"]);

/**
 * Returns the refusal for an unauthenticated admin request, or `undefined` to let it through.
 * A bearer token opens everything; the dashboard's session cookie opens only reads (GET/HEAD),
 * so a forged cross-site form can never change a policy.
 */
export async function refuseUnauthorized(request: Request, env: Env): Promise<Response | undefined> {
  const secret = env.ADMIN_TOKEN;
  if (!secret) {
    return jsonError(404, "admin_disabled", "the admin API is disabled: set the ADMIN_TOKEN secret to enable it");
  }
  const url = new URL(request.url);
  if (OPEN_PATHS.has(url.pathname)) return undefined;
  const header = request.headers.get("authorization") ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header);
  const reads = request.method === "GET" || request.method === "HEAD";
  if (!match) {
    const session = readCookie(request.headers.get("cookie"), SESSION_COOKIE);
    if (reads && session && (await sessionValid(session, secret, Date.now()))) return undefined;
    if (reads && (request.headers.get("accept") ?? "").includes("text/html")) {
      return new Response(null, { status: 303, headers: { location: `${adminPrefix(env)}/login` } });
    }
    return jsonError(401, "unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>", {
      "www-authenticate": 'Bearer realm="edge-mirror"',
    });
  }
  if (!(await tokenMatches((match[1] as string).trim(), secret))) {
    return jsonError(403, "forbidden", "the bearer token does not match ADMIN_TOKEN");
  }
  return undefined;
}

export const adminApp = new Hono<AdminEnv>();

adminApp.use("*", async (c, next) => {
  const refusal = await refuseUnauthorized(c.req.raw, c.env);
  if (refusal) return refusal;
  await next();
});

adminApp.notFound((c) =>
  jsonError(404, "not_found", `no admin endpoint ${c.req.method} ${new URL(c.req.url).pathname}`),
);

/** Re-targets an admin request so that `adminApp` sees paths relative to the prefix. */
export function stripPrefix(request: Request, prefix: string): Request {
  const url = new URL(request.url);
  url.pathname = url.pathname.slice(prefix.length) || "/";
  return new Request(url, request);
}

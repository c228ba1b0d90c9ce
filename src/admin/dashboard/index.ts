/**
 * @module admin/dashboard
 * The dashboard under the admin prefix. `signIn` is open: `/login` (the form; posting the admin
 * token gets a session cookie) and `/logout` (ends every session by replacing the session epoch).
 * `dashboard` sits behind the admin gate: `/dashboard`, its script and stylesheet. Numbers come
 * from `api/stats`; the page is static and strict CSP forbids anything but its own files.
 */
import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { Hono } from "hono/tiny";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { hasSession, tokenMatches } from "../auth.js";
import type { AdminEnv } from "../http.js";
import { limitBody, limitSignIns } from "../limits.js";
import { SESSION_COOKIE, sessionCookieOptions, sessionValue } from "../session.js";
import { DASHBOARD_CSS, DASHBOARD_JS, dashboardHtml, loginHtml } from "./page.js";

/** The sign-in form holds one token; anything larger is not a sign-in. */
export const LOGIN_FORM_MAX_BYTES = 4096;

/**
 * On every page, script and stylesheet: nothing runs, loads or posts but the dashboard's own
 * files (the CSP), nothing frames it, no referrer leaves it, no type is sniffed, and the other
 * headers Hono's secureHeaders sets by default. Not Strict-Transport-Security, which would bind the
 * whole host — with includeSubDomains, every subdomain of the zone — to HTTPS from a page of the
 * admin surface. One fixed set, so a constant list rather than the middleware that builds one from
 * options (which also removes X-Powered-By: no answer here carries it). The test of these headers
 * holds the whole set.
 */
const PAGE_HEADERS: ReadonlyArray<readonly [string, string]> = [
  [
    "content-security-policy",
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  ],
  ["cross-origin-opener-policy", "same-origin"],
  ["cross-origin-resource-policy", "same-origin"],
  ["origin-agent-cluster", "?1"],
  ["referrer-policy", "no-referrer"],
  ["x-content-type-options", "nosniff"],
  ["x-dns-prefetch-control", "off"],
  ["x-download-options", "noopen"],
  ["x-frame-options", "DENY"],
  ["x-permitted-cross-domain-policies", "none"],
  ["x-xss-protection", "0"],
];

/** Sets `PAGE_HEADERS` on the answer, whatever it is: the page, or the error a step before it threw. */
const pageHeaders: MiddlewareHandler<AdminEnv> = async (c, next) => {
  await next();
  for (const [name, value] of PAGE_HEADERS) c.res.headers.set(name, value);
};

function page(
  c: Context<AdminEnv>,
  body: string,
  status: ContentfulStatusCode = 200,
  type = "text/html; charset=utf-8",
) {
  return c.body(body, status, { "content-type": type, "cache-control": "no-store" });
}

const prefixOf = (c: Context<AdminEnv>) => c.get("admin").prefix;
const secure = (url: string) => new URL(url).protocol === "https:";

/** Open: the sign-in form, signing in, and signing out. */
export function signIn(): Hono<AdminEnv> {
  const signIn = new Hono<AdminEnv>();
  signIn.get("/login", pageHeaders, (c) => page(c, loginHtml(prefixOf(c), false)));

  signIn.post("/login", pageHeaders, limitSignIns, limitBody(LOGIN_FORM_MAX_BYTES, "a sign-in form"), async (c) => {
    const token = c.get("adminToken");
    const prefix = prefixOf(c);
    const form = await c.req.raw.formData().catch(() => undefined);
    const presented = form?.get("token");
    if (typeof presented !== "string" || !(await tokenMatches(presented, token))) {
      return page(c, loginHtml(prefix, true), 403);
    }
    const now = Date.now();
    const { sessionEpoch, sessionKeys } = c.get("admin");
    const [epoch, key] = await Promise.all([sessionEpoch.forSignIn(c.env.MIRROR_CONFIG, now), sessionKeys.of(token)]);
    setCookie(c, SESSION_COOKIE, await sessionValue(key, epoch, now), sessionCookieOptions(prefix, secure(c.req.url)));
    return c.redirect(`${prefix}/dashboard`, 303);
  });

  signIn.post("/logout", limitBody(LOGIN_FORM_MAX_BYTES, "a sign-out form"), async (c) => {
    // Only a signed-in browser ends the sessions: anyone else could otherwise sign everyone out.
    if (await hasSession(c)) await c.get("admin").sessionEpoch.replace(c.env.MIRROR_CONFIG, Date.now());
    const prefix = prefixOf(c);
    deleteCookie(c, SESSION_COOKIE, sessionCookieOptions(prefix, secure(c.req.url)));
    return c.redirect(`${prefix}/login`, 303);
  });
  return signIn;
}

/** Behind the admin gate: the page, its script and its stylesheet. */
export function dashboard(): Hono<AdminEnv> {
  const dashboard = new Hono<AdminEnv>();
  dashboard.get("/", (c) => c.redirect(`${prefixOf(c)}/dashboard`, 303));
  dashboard.get("/dashboard", pageHeaders, (c) => page(c, dashboardHtml(prefixOf(c))));
  dashboard.get("/dashboard.js", pageHeaders, (c) => page(c, DASHBOARD_JS, 200, "text/javascript; charset=utf-8"));
  dashboard.get("/dashboard.css", pageHeaders, (c) => page(c, DASHBOARD_CSS, 200, "text/css; charset=utf-8"));
  return dashboard;
}

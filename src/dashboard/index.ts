/**
 * @module dashboard
 * The dashboard under the admin prefix. `signIn` is open: `/login` (the form; posting the admin
 * token gets a session cookie) and `/logout` (ends every session by replacing the session epoch).
 * `dashboard` sits behind the admin gate: `/dashboard`, its script and stylesheet. Numbers come
 * from `api/stats`; the page is static and strict CSP forbids anything but its own files.
 */
import { Hono } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { hasSession, tokenMatches } from "../admin/auth.js";
import type { AdminEnv } from "../admin/http.js";
import { limitBody, limitSignIns } from "../admin/limits.js";
import { SESSION_COOKIE, sessionCookieOptions, sessionValue } from "../admin/session.js";
import { isolateFor } from "../isolate/index.js";
import { DASHBOARD_CSS, DASHBOARD_JS, dashboardHtml, loginHtml } from "./page.js";

/** The sign-in form holds one token; anything larger is not a sign-in. */
export const LOGIN_FORM_MAX_BYTES = 4096;

const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

function page(body: string, status = 200, type = "text/html; charset=utf-8"): Response {
  return new Response(body, { status, headers: { ...SECURITY_HEADERS, "content-type": type } });
}

const prefixOf = (env: Env) => isolateFor(env).settings.adminPrefix;
const secure = (url: string) => new URL(url).protocol === "https:";

export const signIn = new Hono<AdminEnv>();

signIn.get("/login", (c) => page(loginHtml(prefixOf(c.env), false)));

signIn.post("/login", limitSignIns, limitBody(LOGIN_FORM_MAX_BYTES, "a sign-in form"), async (c) => {
  const token = c.get("adminToken");
  const prefix = prefixOf(c.env);
  const form = await c.req.raw.formData().catch(() => undefined);
  const presented = form?.get("token");
  if (typeof presented !== "string" || !(await tokenMatches(presented, token))) {
    return page(loginHtml(prefix, true), 403);
  }
  const now = Date.now();
  const isolate = isolateFor(c.env);
  const [epoch, key] = await Promise.all([
    isolate.sessionEpoch.forSignIn(c.env.MIRROR_CONFIG, now),
    isolate.sessionKeys.of(token),
  ]);
  setCookie(c, SESSION_COOKIE, await sessionValue(key, epoch, now), sessionCookieOptions(prefix, secure(c.req.url)));
  return c.redirect(`${prefix}/dashboard`, 303);
});

signIn.post("/logout", limitBody(LOGIN_FORM_MAX_BYTES, "a sign-out form"), async (c) => {
  // Only a signed-in browser ends the sessions: anyone else could otherwise sign everyone out.
  if (await hasSession(c)) await isolateFor(c.env).sessionEpoch.replace(c.env.MIRROR_CONFIG, Date.now());
  const prefix = prefixOf(c.env);
  deleteCookie(c, SESSION_COOKIE, sessionCookieOptions(prefix, secure(c.req.url)));
  return c.redirect(`${prefix}/login`, 303);
});

export const dashboard = new Hono<AdminEnv>();

dashboard.get("/", (c) => c.redirect(`${prefixOf(c.env)}/dashboard`, 303));
dashboard.get("/dashboard", (c) => page(dashboardHtml(prefixOf(c.env))));
dashboard.get("/dashboard.js", () => page(DASHBOARD_JS, 200, "text/javascript; charset=utf-8"));
dashboard.get("/dashboard.css", () => page(DASHBOARD_CSS, 200, "text/css; charset=utf-8"));

/**
 * @module dashboard
 * The dashboard under the admin prefix: `/dashboard` (the page, its script and stylesheet),
 * `/login` (sign in with the admin token, get a session cookie) and `/logout`. Numbers come
 * from `api/stats`; the page is static and strict CSP forbids anything but its own files.
 */
import { Hono } from "hono";
import { type AdminEnv, adminPrefix, tokenMatches } from "../admin/index.js";
import { sessionCookie, sessionValue } from "../admin/session.js";
import { DASHBOARD_CSS, DASHBOARD_JS, dashboardHtml, loginHtml } from "./page.js";

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

export const dashboard = new Hono<AdminEnv>();

dashboard.get("/", (c) => c.redirect(`${adminPrefix(c.env)}/dashboard`, 303));
dashboard.get("/dashboard", (c) => page(dashboardHtml(adminPrefix(c.env))));
dashboard.get("/dashboard.js", () => page(DASHBOARD_JS, 200, "text/javascript; charset=utf-8"));
dashboard.get("/dashboard.css", () => page(DASHBOARD_CSS, 200, "text/css; charset=utf-8"));
dashboard.get("/login", (c) => page(loginHtml(adminPrefix(c.env), false)));

dashboard.post("/login", async (c) => {
  const secret = c.env.ADMIN_TOKEN as string;
  const form = await c.req.raw.formData().catch(() => undefined);
  const token = form?.get("token");
  if (typeof token !== "string" || !(await tokenMatches(token, secret))) {
    return page(loginHtml(adminPrefix(c.env), true), 403);
  }
  const prefix = adminPrefix(c.env);
  const secure = new URL(c.req.url).protocol === "https:";
  return new Response(null, {
    status: 303,
    headers: {
      location: `${prefix}/dashboard`,
      "set-cookie": sessionCookie(await sessionValue(secret, Date.now()), prefix, secure),
    },
  });
});

dashboard.post("/logout", (c) => {
  const prefix = adminPrefix(c.env);
  return new Response(null, {
    status: 303,
    headers: {
      location: `${prefix}/login`,
      "set-cookie": sessionCookie("", prefix, new URL(c.req.url).protocol === "https:", 0),
    },
  });
});

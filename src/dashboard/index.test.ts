import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SESSION_COOKIE, sessionValid, sessionValue } from "../admin/session.js";
import app from "../index.js";

const withToken = { ...env, PRIMARY_ORIGIN: "http://primary.test", ADMIN_TOKEN: "s3cret" } as Env;

async function call(path: string, init: RequestInit = {}, environment: Env = withToken) {
  const ctx = createExecutionContext();
  const response = await app.fetch(new Request(`https://edge.example.com${path}`, init), environment, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

function login(token: string) {
  return call("/__mirror/login", {
    method: "POST",
    body: new URLSearchParams({ token }),
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
}

async function signedInCookie(): Promise<string> {
  const res = await login("s3cret");
  const cookie = res.headers.get("set-cookie") ?? "";
  return cookie.split(";")[0] as string;
}

describe("dashboard sign-in", () => {
  const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async () => new Response("from primary"));
  afterEach(() => fetchSpy.mockClear());

  it("sends a browser without a session to the sign-in form", async () => {
    const res = await call("/__mirror/dashboard", { headers: { accept: "text/html" } });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/__mirror/login");
    const form = await call("/__mirror/login");
    expect(form.status).toBe(200);
    expect(await form.text()).toContain('<form class="login" method="post" action="/__mirror/login">');
    expect(form.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("refuses a wrong token and gives the right one an HttpOnly, SameSite=Strict session cookie", async () => {
    const wrong = await login("guess");
    expect(wrong.status).toBe(403);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    expect(await wrong.text()).toContain("does not match ADMIN_TOKEN");

    const right = await login("s3cret");
    expect(right.status).toBe(303);
    expect(right.headers.get("location")).toBe("/__mirror/dashboard");
    const cookie = right.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(
      new RegExp(
        `^${SESSION_COOKIE}=\\d+\\.[0-9a-f]{64}; Path=/__mirror; Max-Age=43200; HttpOnly; SameSite=Strict; Secure$`,
      ),
    );
    expect(cookie).not.toContain("s3cret");
  });

  it("lets the session read the dashboard and stats, but never change a policy", async () => {
    const cookie = await signedInCookie();
    const page = await call("/__mirror/dashboard", { headers: { cookie, accept: "text/html" } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script src="/__mirror/dashboard.js" defer></script>');
    const script = await call("/__mirror/dashboard.js", { headers: { cookie } });
    expect(script.headers.get("content-type")).toContain("text/javascript");
    expect(await script.text()).not.toContain("innerHTML");
    expect((await call("/__mirror/api/stats", { headers: { cookie } })).status).toBe(200);

    const write = await call("/__mirror/api/routes/r", {
      method: "PUT",
      body: JSON.stringify({ id: "r" }),
      headers: { cookie, "content-type": "application/json" },
    });
    expect(write.status).toBe(401);
  });

  it("does not accept a forged, expired or old-token session", async () => {
    const now = Date.now();
    const good = await sessionValue("s3cret", now);
    expect(await sessionValid(good, "s3cret", now)).toBe(true);
    const [expires, signature] = good.split(".") as [string, string];
    expect(await sessionValid(`${Number(expires) + 1}.${signature}`, "s3cret", now)).toBe(false);
    expect(await sessionValid(good, "s3cret", Number(expires) * 1000 + 1)).toBe(false);
    expect(await sessionValid(good, "rotated", now)).toBe(false);
    expect(await sessionValid("x.y", "s3cret", now)).toBe(false);

    const rotated = { ...withToken, ADMIN_TOKEN: "rotated" } as Env;
    const res = await call("/__mirror/api/stats", { headers: { cookie: `${SESSION_COOKIE}=${good}` } }, rotated);
    expect(res.status).toBe(401);
  });

  it("signs out by clearing the cookie", async () => {
    const res = await call("/__mirror/logout", { method: "POST" });
    expect(res.status).toBe(303);
    expect(res.headers.get("set-cookie")).toMatch(new RegExp(`^${SESSION_COOKIE}=; Path=/__mirror; Max-Age=0`));
  });

  it("stays closed without ADMIN_TOKEN, sign-in form included", async () => {
    const closed = { ...withToken, ADMIN_TOKEN: undefined } as Env;
    expect((await call("/__mirror/login", {}, closed)).status).toBe(404);
    expect((await call("/__mirror/dashboard", { headers: { accept: "text/html" } }, closed)).status).toBe(404);
  });
});

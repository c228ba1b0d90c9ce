import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { callWorker } from "../../../test/worker/helpers.js";
import { SESSION_EPOCH_KEY } from "../../store/keys.js";
import {
  deriveSessionKey,
  SESSION_COOKIE,
  SESSION_KEY_INFO,
  SessionEpochCache,
  sessionValid,
  sessionValue,
} from "../session.js";
import { LOGIN_FORM_MAX_BYTES } from "./index.js";

const TOKEN = "dashboard-unit-test-token-0123456789";
const withToken = { ...env, PRIMARY_ORIGIN: "http://primary.test", ADMIN_TOKEN: TOKEN } as Env;
const LIMIT = 10; // [[ratelimits]] ADMIN_LOGIN_LIMIT in wrangler.toml

function call(path: string, init: RequestInit = {}, environment: Env = withToken) {
  return callWorker(new Request(`https://edge.example.com${path}`, init), environment);
}

/** Each sign-in comes from its own address unless a test names one: rate limits never mix between tests. */
const nextAddress = (() => {
  let n = 0;
  return () => `198.51.100.${++n % 250}-${crypto.randomUUID().slice(0, 8)}`;
})();

function login(token: string, address = nextAddress(), environment: Env = withToken) {
  return call(
    "/__mirror/login",
    {
      method: "POST",
      body: new URLSearchParams({ token }),
      headers: { "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": address },
    },
    environment,
  );
}

async function signedInCookie(environment: Env = withToken): Promise<string> {
  const res = await login(TOKEN, nextAddress(), environment);
  expect(res.status).toBe(303);
  return (res.headers.get("set-cookie") ?? "").split(";")[0] as string;
}

const readStats = (cookie: string, environment: Env = withToken) =>
  call("/__mirror/api/stats", { headers: { cookie } }, environment);

const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async () => new Response("from primary"));
afterEach(() => fetchSpy.mockClear());

describe("dashboard sign-in", () => {
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

    const right = await login(TOKEN);
    expect(right.status).toBe(303);
    expect(right.headers.get("location")).toBe("/__mirror/dashboard");
    const cookie = right.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(
      new RegExp(
        `^${SESSION_COOKIE}=[0-9a-f]{32}\\.\\d+\\.[0-9a-f]{64}; Max-Age=43200; Path=/__mirror; HttpOnly; Secure; SameSite=Strict$`,
      ),
    );
    expect(cookie).not.toContain(TOKEN);
  });

  it("lets the session read the dashboard and stats, but never change a policy", async () => {
    const cookie = await signedInCookie();
    const page = await call("/__mirror/dashboard", { headers: { cookie, accept: "text/html" } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script src="/__mirror/dashboard.js" defer></script>');
    const script = await call("/__mirror/dashboard.js", { headers: { cookie } });
    expect(script.headers.get("content-type")).toContain("text/javascript");
    expect(await script.text()).not.toContain("innerHTML");
    expect((await readStats(cookie)).status).toBe(200);

    const write = await call("/__mirror/api/routes/r", {
      method: "PUT",
      body: JSON.stringify({ id: "r" }),
      headers: { cookie, "content-type": "application/json" },
    });
    expect(write.status).toBe(401);
  });

  it("does not accept a forged, expired, old-token or old-epoch session", async () => {
    const now = Date.now();
    const epoch = "a".repeat(32);
    const key = await deriveSessionKey(TOKEN);
    const good = await sessionValue(key, epoch, now);
    expect(await sessionValid(good, key, epoch, now)).toBe(true);
    const [, expires, signature] = good.split(".") as [string, string, string];
    expect(await sessionValid(`${epoch}.${Number(expires) + 1}.${signature}`, key, epoch, now)).toBe(false);
    expect(await sessionValid(`${"b".repeat(32)}.${expires}.${signature}`, key, "b".repeat(32), now)).toBe(false);
    expect(await sessionValid(good, key, epoch, Number(expires) * 1000 + 1)).toBe(false);
    expect(await sessionValid(good, await deriveSessionKey(`${TOKEN}-rotated`), epoch, now)).toBe(false);
    expect(await sessionValid(good, key, "b".repeat(32), now)).toBe(false);
    expect(await sessionValid(good, key, undefined, now)).toBe(false);
    expect(await sessionValid("x.y.z", key, epoch, now)).toBe(false);

    const cookie = await signedInCookie();
    const rotated = { ...withToken, ADMIN_TOKEN: `${TOKEN}-rotated` } as Env;
    expect((await readStats(cookie, rotated)).status).toBe(401);
  });

  it("keys the cookie's HMAC with a key derived from the token by HKDF, never with the token itself", async () => {
    const cookie = await signedInCookie();
    const [epoch, expires, mac] = cookie.slice(SESSION_COOKIE.length + 1).split(".") as [string, string, string];
    const message = new TextEncoder().encode(`edge-mirror-session:${epoch}:${expires}`);
    const hmac = async (key: CryptoKey) => {
      const bytes = new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
      return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    };
    const raw = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(TOKEN),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const material = await crypto.subtle.importKey("raw", new TextEncoder().encode(TOKEN), "HKDF", false, [
      "deriveKey",
    ]);
    const derived = await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: new TextEncoder().encode(SESSION_KEY_INFO) },
      material,
      { name: "HMAC", hash: "SHA-256", length: 256 },
      false,
      ["sign"],
    );
    expect(mac).toBe(await hmac(derived));
    expect(mac).not.toBe(await hmac(raw));
  });

  it("derives the cookie's key once per token, not on every poll", async () => {
    // A fresh isolate (another env), so that nothing was derived before.
    const fresh = { ...withToken, LOG_SAMPLE_RATE: "0.5" } as Env;
    const derive = vi.spyOn(crypto.subtle, "deriveKey");
    try {
      const cookie = await signedInCookie(fresh);
      for (let i = 0; i < 5; i++) expect((await readStats(cookie, fresh)).status).toBe(200);
      expect(derive).toHaveBeenCalledTimes(1);
      // A new token is a new key, derived once too.
      const rotated = { ...fresh, ADMIN_TOKEN: `${TOKEN}-rotated` } as Env;
      for (let i = 0; i < 3; i++) expect((await readStats(cookie, rotated)).status).toBe(401);
      expect(derive).toHaveBeenCalledTimes(2);
    } finally {
      derive.mockRestore();
    }
  });

  it("serves every page with the strict CSP, nosniff, no-referrer and no-store, and no HSTS", async () => {
    const cookie = await signedInCookie();
    const pages = [
      await call("/__mirror/login"),
      await login("guess"),
      await call("/__mirror/dashboard", { headers: { cookie } }),
      await call("/__mirror/dashboard.js", { headers: { cookie } }),
      await call("/__mirror/dashboard.css", { headers: { cookie } }),
    ];
    for (const res of pages) {
      expect(res.headers.get("content-security-policy")).toBe(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      );
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      // It would bind every subdomain of the zone to HTTPS: not the dashboard's decision.
      expect(res.headers.get("strict-transport-security")).toBeNull();
    }
  });

  it("gives the pages, and every answer of the sign-in form, the same security headers; the redirects none", async () => {
    const security = {
      "content-security-policy":
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-resource-policy": "same-origin",
      "origin-agent-cluster": "?1",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
      "x-dns-prefetch-control": "off",
      "x-download-options": "noopen",
      "x-frame-options": "DENY",
      "x-permitted-cross-domain-policies": "none",
      "x-xss-protection": "0",
    };
    const page = (type: string) => ({ "content-type": `${type}; charset=utf-8`, "cache-control": "no-store" });
    const cookie = await signedInCookie();
    const signedIn = await login(TOKEN);
    const tooLarge = await call("/__mirror/login", {
      method: "POST",
      body: `token=${"x".repeat(LOGIN_FORM_MAX_BYTES)}`,
      headers: { "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": nextAddress() },
    });
    const address = nextAddress();
    let limited = await login("guess", address);
    for (let i = 0; i < 2 * LIMIT && limited.status !== 429; i++) limited = await login("guess", address);
    const answers: Array<[Response, number, Record<string, string>]> = [
      [await call("/__mirror/login"), 200, page("text/html")],
      [await login("guess"), 403, page("text/html")],
      [signedIn, 303, { location: "/__mirror/dashboard", "set-cookie": signedIn.headers.get("set-cookie") ?? "" }],
      [tooLarge, 413, { "content-type": "application/json" }],
      [limited, 429, { "content-type": "application/json", "retry-after": "60" }],
      [await call("/__mirror/dashboard", { headers: { cookie } }), 200, page("text/html")],
      [await call("/__mirror/dashboard.js", { headers: { cookie } }), 200, page("text/javascript")],
      [await call("/__mirror/dashboard.css", { headers: { cookie } }), 200, page("text/css")],
    ];
    for (const [res, status, own] of answers) {
      expect(res.status).toBe(status);
      expect(Object.fromEntries(res.headers)).toEqual({ ...security, ...own });
    }
    const redirects = [
      await call("/__mirror/", { headers: { cookie } }),
      await call("/__mirror/dashboard", { headers: { accept: "text/html" } }),
      await call("/__mirror/logout", { method: "POST", headers: { cookie } }),
    ];
    for (const res of redirects) {
      expect(res.status).toBe(303);
      expect([...res.headers.keys()].filter((name) => name in security)).toEqual([]);
    }
  });

  it("stays closed without ADMIN_TOKEN, sign-in form included", async () => {
    const closed = { ...withToken, ADMIN_TOKEN: undefined } as Env;
    expect((await call("/__mirror/login", {}, closed)).status).toBe(404);
    expect((await login(TOKEN, nextAddress(), closed)).status).toBe(404);
    expect((await call("/__mirror/dashboard", { headers: { accept: "text/html" } }, closed)).status).toBe(404);
  });
});

describe("sign-out", () => {
  it("ends the session: the cookie no longer opens anything, here at once and in other isolates", async () => {
    const cookie = await signedInCookie();
    const other = await signedInCookie();
    expect((await readStats(cookie)).status).toBe(200);
    const epochBefore = await env.MIRROR_CONFIG.get(SESSION_EPOCH_KEY);

    const res = await call("/__mirror/logout", { method: "POST", headers: { cookie } });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/__mirror/login");
    expect(res.headers.get("set-cookie")).toBe(
      `${SESSION_COOKIE}=; Max-Age=0; Path=/__mirror; HttpOnly; Secure; SameSite=Strict`,
    );
    expect(await env.MIRROR_CONFIG.get(SESSION_EPOCH_KEY)).not.toBe(epochBefore);

    // The same cookie, replayed after sign-out: refused, as is every other session of the old epoch.
    expect((await readStats(cookie)).status).toBe(401);
    expect((await readStats(other)).status).toBe(401);
    // An isolate that had not read the epoch yet reads the new one from KV.
    const elsewhere = new SessionEpochCache();
    const value = cookie.slice(SESSION_COOKIE.length + 1);
    const key = await deriveSessionKey(TOKEN);
    expect(await sessionValid(value, key, await elsewhere.current(env.MIRROR_CONFIG, Date.now()), Date.now())).toBe(
      false,
    );
    // Signing in again works, in the new epoch.
    expect((await readStats(await signedInCookie())).status).toBe(200);
  });

  it("ends nothing for a browser without a session: anyone may post to /logout", async () => {
    const cookie = await signedInCookie();
    const epoch = await env.MIRROR_CONFIG.get(SESSION_EPOCH_KEY);
    const forged = `${SESSION_COOKIE}=${"0".repeat(32)}.9999999999.${"0".repeat(64)}`;
    for (const headers of [{}, { cookie: forged }] as Array<Record<string, string>>) {
      expect((await call("/__mirror/logout", { method: "POST", headers })).status).toBe(303);
    }
    expect(await env.MIRROR_CONFIG.get(SESSION_EPOCH_KEY)).toBe(epoch);
    expect((await readStats(cookie)).status).toBe(200);
  });

  it("treats a deleted epoch as every session ended, never as a fresh start", async () => {
    const cookie = await signedInCookie();
    await env.MIRROR_CONFIG.delete(SESSION_EPOCH_KEY);
    // A fresh isolate (another env) reads KV: no epoch, no valid session.
    const fresh = { ...withToken, LOG_LEVEL: "debug" } as Env;
    expect((await readStats(cookie, fresh)).status).toBe(401);
  });
});

describe("requests another origin's page forged", () => {
  const sibling = { "sec-fetch-site": "same-site", origin: "https://blog.example.com" };

  it("cannot sign everyone out: a sibling subdomain's form post to /logout is refused (403)", async () => {
    const cookie = await signedInCookie();
    const epoch = await env.MIRROR_CONFIG.get(SESSION_EPOCH_KEY);
    // SameSite=Strict lets the cookie ride along: the site is the same, the origin is not.
    const forged: Array<Record<string, string>> = [
      sibling,
      { origin: "https://blog.example.com" },
      { "sec-fetch-site": "cross-site" },
    ];
    for (const headers of forged) {
      const res = await call("/__mirror/logout", { method: "POST", headers: { cookie, ...headers } });
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({ error: "cross_origin" });
      expect(res.headers.get("set-cookie")).toBeNull();
    }
    expect(await env.MIRROR_CONFIG.get(SESSION_EPOCH_KEY)).toBe(epoch);
    expect((await readStats(cookie)).status).toBe(200);
    // The dashboard's own sign-out button still works.
    const own = { "sec-fetch-site": "same-origin", origin: "https://edge.example.com" };
    expect((await call("/__mirror/logout", { method: "POST", headers: { cookie, ...own } })).status).toBe(303);
    expect((await readStats(cookie)).status).toBe(401);
  });

  it("cannot sign in, nor spend the address's sign-in allowance", async () => {
    const address = nextAddress();
    for (let i = 0; i < 2 * LIMIT; i++) {
      const res = await call("/__mirror/login", {
        method: "POST",
        body: new URLSearchParams({ token: TOKEN }),
        headers: { "cf-connecting-ip": address, ...sibling },
      });
      expect(res.status).toBe(403);
      expect(res.headers.get("set-cookie")).toBeNull();
    }
    // The form on the sign-in page itself, from the same address: not limited.
    const res = await call("/__mirror/login", {
      method: "POST",
      body: new URLSearchParams({ token: TOKEN }),
      headers: { "cf-connecting-ip": address, "sec-fetch-site": "same-origin", origin: "https://edge.example.com" },
    });
    expect(res.status).toBe(303);
  });
});

describe("sign-in limits", () => {
  it("refuses a form over its size limit (413), byte-exact, before reading it", async () => {
    const form = (size: number) => `token=${"x".repeat(size - "token=".length)}`;
    const post = (body: BodyInit, headers: Record<string, string> = {}) =>
      call("/__mirror/login", {
        method: "POST",
        body,
        headers: { "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": nextAddress(), ...headers },
      });
    expect((await post(form(LOGIN_FORM_MAX_BYTES))).status).toBe(403);
    expect((await post(form(LOGIN_FORM_MAX_BYTES + 1))).status).toBe(413);

    let pulled = 0;
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    const huge = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += chunk.byteLength;
        if (pulled > 50 * 1024 * 1024) controller.close();
        else controller.enqueue(chunk);
      },
    });
    const res = await post(huge);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: "too_large" });
    expect(pulled).toBeLessThanOrEqual(LOGIN_FORM_MAX_BYTES + 2 * chunk.byteLength);
  });

  it("limits attempts per client address (429 with retry-after), not for other addresses", async () => {
    const address = nextAddress();
    let allowed = 0;
    let refusal: Response | undefined;
    // The binding counts in fixed windows, so a window may turn over once during the loop.
    for (let i = 0; i < 2 * LIMIT && !refusal; i++) {
      const res = await login("guess", address);
      if (res.status === 429) refusal = res;
      else {
        expect(res.status).toBe(403);
        allowed++;
      }
    }
    expect(refusal?.headers.get("retry-after")).toBe("60");
    expect(await refusal?.json()).toMatchObject({ error: "rate_limited" });
    expect(allowed).toBeGreaterThanOrEqual(LIMIT);
    expect(allowed).toBeLessThan(2 * LIMIT);
    // The right token does not get through a limited address either; another address does.
    expect((await login(TOKEN, address)).status).toBe(429);
    expect((await login(TOKEN)).status).toBe(303);
  });

  it("still signs in without the binding, and says once that sign-in is unlimited", async () => {
    const unlimited = { ...withToken, ADMIN_LOGIN_LIMIT: undefined } as unknown as Env;
    const lines: string[] = [];
    const spy = vi.spyOn(console, "error").mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      const address = nextAddress();
      for (let i = 0; i < 2 * LIMIT; i++) expect((await login("guess", address, unlimited)).status).toBe(403);
      expect((await login(TOKEN, address, unlimited)).status).toBe(303);
    } finally {
      spy.mockRestore();
    }
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["edge-mirror.admin_login_unlimited"]);
  });
});

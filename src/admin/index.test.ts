import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { callWorker } from "../../test/worker/helpers.js";
import { tokenMatches } from "./auth.js";
import { isAdminPath } from "./paths.js";
import {
  adminPrefix,
  adminToken,
  DEFAULT_ADMIN_PREFIX,
  MIN_ADMIN_TOKEN_LENGTH,
  shortestPeriod,
  weakTokenProblem,
} from "./settings.js";

const TOKEN = "gate-test-admin-token-0123456789abcdef";
const base = { ...env, PRIMARY_ORIGIN: "http://primary.test" } as Env;
const withToken = { ...base, ADMIN_TOKEN: TOKEN } as Env;
const bearer = { authorization: `Bearer ${TOKEN}` };

function call(path: string, environment: Env, init: RequestInit = {}) {
  return callWorker(new Request(`https://edge.example.com${path}`, init), environment);
}

const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async () => new Response("from primary"));
const proxied = () =>
  fetchSpy.mock.calls.map(([input]) => new URL(input instanceof Request ? input.url : String(input)));
afterEach(() => fetchSpy.mockClear());

/** The JSON log lines a call to `work` wrote to stderr. */
async function logged(work: () => Promise<unknown>): Promise<Array<Record<string, unknown>>> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "error").mockImplementation((line: unknown) => void lines.push(String(line)));
  try {
    await work();
  } finally {
    spy.mockRestore();
  }
  return lines.map((l) => JSON.parse(l));
}

describe("admin gate", () => {
  it("is closed (404) without ADMIN_TOKEN and never reaches the primary", async () => {
    const res = await call("/__mirror/api/routes", base);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: "admin_disabled" });
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("stays closed with a token shorter than 32 characters: the same 404, and one log line saying why", async () => {
    const closed = await call("/__mirror/api/routes", base);
    const short = { ...base, ADMIN_TOKEN: `short-${crypto.randomUUID().slice(0, 8)}` } as Env;
    const lines = await logged(async () => {
      for (const path of ["/__mirror/api/routes", "/__mirror/login", "/__mirror/dashboard"]) {
        const res = await call(path, short, { headers: { authorization: `Bearer ${short.ADMIN_TOKEN}` } });
        expect(res.status).toBe(404);
      }
    });
    const res = await call("/__mirror/api/routes", short, {
      headers: { authorization: `Bearer ${short.ADMIN_TOKEN}` },
    });
    expect([res.status, await res.text()]).toEqual([closed.status, await closed.text()]);
    expect(lines).toEqual([{ msg: "edge-mirror.admin_disabled", reason: "ADMIN_TOKEN is shorter than 32 characters" }]);
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it.each([
    ["a".repeat(32), "ADMIN_TOKEN has fewer than 8 distinct characters"],
    ["ab".repeat(16), "ADMIN_TOKEN has fewer than 8 distinct characters"],
    ["abcdefgh".repeat(4), "ADMIN_TOKEN repeats a shorter string"],
    ["0123456789".repeat(4).slice(0, 35), "ADMIN_TOKEN repeats a shorter string"],
  ])("stays closed with the guessable token %j, exactly as with a short one", async (weak, reason) => {
    const closed = await call("/__mirror/api/routes", base);
    const environment = { ...base, ADMIN_TOKEN: weak } as Env;
    const lines = await logged(async () => {
      for (const path of ["/__mirror/api/routes", "/__mirror/login", "/__mirror/dashboard"]) {
        const res = await call(path, environment, { headers: { authorization: `Bearer ${weak}` } });
        expect([res.status, await res.text()]).toEqual([closed.status, await closed.clone().text()]);
      }
    });
    expect(lines).toEqual([{ msg: "edge-mirror.admin_disabled", reason }]);
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("asks for a bearer token (401), refuses a wrong one (403), admits the right one", async () => {
    const missing = await call("/__mirror/api/routes", withToken);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const wrong = await call("/__mirror/api/routes", withToken, { headers: { authorization: `Bearer ${TOKEN}x` } });
    expect(wrong.status).toBe(403);
    const right = await call("/__mirror/nothing-here", withToken, { headers: bearer });
    expect(right.status).toBe(404);
    expect(await right.json()).toMatchObject({ error: "not_found" });
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("only claims the prefix itself and paths below it", async () => {
    const res = await call("/__mirrored/x", base);
    expect(await res.text()).toBe("from primary");
    expect(fetchSpy).toHaveBeenCalledTimes(1);
  });

  it("follows ADMIN_PREFIX", async () => {
    const moved = { ...withToken, ADMIN_PREFIX: "/ops/edge" } as Env;
    expect((await call("/ops/edge/api/routes", moved)).status).toBe(401);
    expect(await (await call("/__mirror/api/routes", moved)).text()).toBe("from primary");
  });

  it('refuses ADMIN_PREFIX "/" (it would claim every request): logs once, keeps the default, serves the zone', async () => {
    const everything = { ...withToken, ADMIN_PREFIX: "/" } as Env;
    const lines = await logged(async () => {
      expect(await (await call("/", everything)).text()).toBe("from primary");
      expect(await (await call("/api/users", everything)).text()).toBe("from primary");
      expect((await call("/__mirror/api/routes", everything)).status).toBe(401);
    });
    expect(lines).toEqual([
      expect.objectContaining({ msg: "edge-mirror.invalid_setting", name: "ADMIN_PREFIX", using: "/__mirror" }),
    ]);
  });
});

describe("guesses at the token: wrong bearer tokens count against the sign-in limit", () => {
  const LIMIT = 10; // [[ratelimits]] ADMIN_LOGIN_LIMIT in wrangler.toml
  const address = () => `192.0.2.${crypto.randomUUID()}`;
  const withBearer = (token: string, from: string, environment = withToken) =>
    call("/__mirror/api/routes", environment, {
      headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": from },
    });

  /** Wrong tokens from `from` until one is refused for the rate; the statuses before it. */
  async function guessUntilLimited(from: string): Promise<{ allowed: number; refusal: Response | undefined }> {
    let allowed = 0;
    // The binding counts in fixed windows, so a window may turn over once during the loop.
    for (let i = 0; i < 2 * LIMIT; i++) {
      const res = await withBearer(`${TOKEN}-guess-${i}`, from);
      if (res.status === 429) return { allowed, refusal: res };
      expect(res.status).toBe(403);
      allowed++;
    }
    return { allowed, refusal: undefined };
  }

  it("answers 429 with retry-after past the limit, to the right token too, and not to other addresses", async () => {
    const guesser = address();
    const { allowed, refusal } = await guessUntilLimited(guesser);
    expect([refusal?.status, refusal?.headers.get("retry-after")]).toEqual([429, "60"]);
    expect(await refusal?.json()).toMatchObject({ error: "rate_limited" });
    expect(allowed).toBeGreaterThanOrEqual(LIMIT);
    expect(allowed).toBeLessThan(2 * LIMIT);
    // A lucky guess past the limit is refused like the others: the guesser learns nothing.
    expect((await withBearer(TOKEN, guesser)).status).toBe(429);
    expect((await withBearer(TOKEN, address())).status).toBe(200);
  });

  it("shares the allowance with the sign-in form", async () => {
    const guesser = address();
    expect((await guessUntilLimited(guesser)).refusal?.status).toBe(429);
    const signIn = await call("/__mirror/login", withToken, {
      method: "POST",
      body: new URLSearchParams({ token: TOKEN }),
      headers: { "cf-connecting-ip": guesser },
    });
    expect(signIn.status).toBe(429);
  });

  it("never throttles the right token by its own calls", async () => {
    const operator = address();
    for (let i = 0; i < 3 * LIMIT; i++) expect((await withBearer(TOKEN, operator)).status).toBe(200);
    // A wrong token from the operator's address still counts, from its first.
    expect((await withBearer(`${TOKEN}x`, operator)).status).toBe(403);
  });

  it("without the binding, refuses wrong tokens with 403 only and says so once", async () => {
    const unlimited = { ...withToken, ADMIN_LOGIN_LIMIT: undefined, LOG_LEVEL: "off" } as unknown as Env;
    const guesser = address();
    const lines = await logged(async () => {
      for (let i = 0; i < 4 * LIMIT; i++) expect((await withBearer(`${TOKEN}x`, guesser, unlimited)).status).toBe(403);
      expect((await withBearer(TOKEN, guesser, unlimited)).status).toBe(200);
    });
    expect(lines.map((line) => line.msg)).toEqual(["edge-mirror.admin_login_unlimited"]);
  });
});

describe("ADMIN_HOST: the admin surface on a host of its own", () => {
  const onHost = { ...withToken, ADMIN_HOST: "admin.example.com" } as Env;
  const at = (url: string, environment: Env) => callWorker(new Request(url, { headers: bearer }), environment);

  it("serves the surface on that host only; elsewhere the prefix is proxied like any path", async () => {
    expect((await at("https://admin.example.com/__mirror/api/routes", onHost)).status).toBe(200);
    expect((await at("https://ADMIN.example.com/%5F%5Fmirror/api/routes", onHost)).status).toBe(200);
    for (const url of [
      "https://edge.example.com/__mirror/api/routes",
      "https://edge.example.com/%5F%5Fmirror/api/routes",
      "https://admin.example.com.evil.test/__mirror/api/routes",
      "https://admin.example.com:8443/__mirror/api/routes",
      "https://example.com/__mirror/api/routes",
    ]) {
      expect(await (await at(url, onHost)).text()).toBe("from primary");
    }
    expect(proxied().map((u) => u.pathname)).toEqual([
      "/__mirror/api/routes",
      "/%5F%5Fmirror/api/routes",
      "/__mirror/api/routes",
      "/__mirror/api/routes",
      "/__mirror/api/routes",
    ]);
  });

  it("takes the host in any case, and a port when the URL names one", async () => {
    const withPort = { ...withToken, ADMIN_HOST: " Admin.Example.com:8443 " } as Env;
    expect((await at("https://admin.example.com:8443/__mirror/api/routes", withPort)).status).toBe(200);
    expect(await (await at("https://admin.example.com/__mirror/api/routes", withPort)).text()).toBe("from primary");
  });

  it("serves the surface on no host when ADMIN_HOST is not a host name, and says so once", async () => {
    const typo = { ...withToken, ADMIN_HOST: "https://admin.example.com/" } as Env;
    const lines = await logged(async () => {
      for (const url of [
        "https://admin.example.com/__mirror/api/routes",
        "https://edge.example.com/__mirror/api/routes",
      ]) {
        expect(await (await at(url, typo)).text()).toBe("from primary");
      }
    });
    expect(lines).toEqual([expect.objectContaining({ msg: "edge-mirror.invalid_setting", name: "ADMIN_HOST" })]);
  });

  it("is off when empty, as wrangler.toml sets it: every host serves the surface", async () => {
    const empty = { ...withToken, ADMIN_HOST: "" } as Env;
    expect((await at("https://edge.example.com/__mirror/api/routes", empty)).status).toBe(200);
    expect((await at("https://admin.example.com/__mirror/api/routes", empty)).status).toBe(200);
  });
});

describe("one path form: the URL parser's, with encoded unreserved characters decoded", () => {
  it("treats a percent-encoded prefix as the admin surface, behind the same auth, never proxied", async () => {
    expect((await call("/%5F%5Fmirror/api/routes", withToken)).status).toBe(401);
    expect((await call("/%5f%5fmirror/api/routes", withToken, { method: "PUT", body: "{}" })).status).toBe(401);
    const listed = await call("/%5F%5Fmirror/api/routes", withToken, { headers: bearer });
    expect([listed.status, await listed.json()]).toEqual([200, { routes: [] }]);
    expect((await call("/__mirr%6Fr/%61pi/routes", withToken, { headers: bearer })).status).toBe(200);
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("resolves dot segments before deciding", async () => {
    expect((await call("/x/../__mirror/api/routes", withToken)).status).toBe(401);
    expect((await call("/__mirror/x/%2e%2E/api/routes", withToken)).status).toBe(401);
    // Out of the prefix again: proxied, as the URL parser resolved it.
    expect(await (await call("/__mirror/../api/routes", withToken)).text()).toBe("from primary");
    expect(await (await call("/__mirror/%2e%2e/api/routes", withToken)).text()).toBe("from primary");
    expect(proxied().map((u) => u.pathname)).toEqual(["/api/routes", "/api/routes"]);
  });

  it("does not decode reserved characters: an encoded slash is no segment boundary", async () => {
    expect(await (await call("/__mirror%2Fapi/routes", withToken)).text()).toBe("from primary");
    expect(proxied().map((u) => u.pathname)).toEqual(["/__mirror%2Fapi/routes"]);
  });

  it("gives a session cookie no writes through any spelling", async () => {
    for (const path of ["/__mirror/api/routes/r", "/%5F%5Fmirror/api/routes/r", "/__mirror/api/%72outes/r"]) {
      const res = await call(path, withToken, { method: "PUT", body: '{"id":"r"}', headers: { cookie: "x=y" } });
      expect(res.status).toBe(401);
    }
  });
});

describe("settings", () => {
  it.each(["/__mirror", "/ops/edge", "/a.b/c~d/e_f-g"])("accepts the clean prefix %s", (prefix) => {
    const log = vi.fn();
    expect(adminPrefix({ ...base, ADMIN_PREFIX: prefix } as Env, log)).toBe(prefix);
    expect(log).not.toHaveBeenCalled();
  });

  it.each(["/", "ops/edge", "/ops/", "/a//b", "/a/../b", "/./a", "/%5F%5Fmirror", "/a b", "/a?b"])(
    "refuses %j and keeps the default",
    (prefix) => {
      const log = vi.fn();
      expect(adminPrefix({ ...base, ADMIN_PREFIX: prefix } as Env, log)).toBe(DEFAULT_ADMIN_PREFIX);
      expect(JSON.parse(log.mock.calls[0]?.[0])).toMatchObject({ msg: "edge-mirror.invalid_setting", value: prefix });
    },
  );

  it("uses the default silently when ADMIN_PREFIX is unset or empty", () => {
    const log = vi.fn();
    expect(adminPrefix({ ...base, ADMIN_PREFIX: "" } as Env, log)).toBe(DEFAULT_ADMIN_PREFIX);
    expect(log).not.toHaveBeenCalled();
  });

  it("opens with 32 characters, not 31, and says when sign-in is unlimited", () => {
    const log = vi.fn();
    const at = (length: number) => adminToken({ ...base, ADMIN_TOKEN: TOKEN.slice(0, length) } as Env, log);
    expect(at(MIN_ADMIN_TOKEN_LENGTH)).toBe(TOKEN.slice(0, 32));
    expect(at(MIN_ADMIN_TOKEN_LENGTH - 1)).toBeUndefined();
    expect(log).toHaveBeenCalledTimes(1);
    const unlimited = { ...base, ADMIN_TOKEN: TOKEN, ADMIN_LOGIN_LIMIT: undefined } as unknown as Env;
    expect(adminToken(unlimited, log)).toBe(TOKEN);
    expect(JSON.parse(log.mock.calls[1]?.[0])).toMatchObject({ msg: "edge-mirror.admin_login_unlimited" });
  });
});

describe("token strength", () => {
  const random = (bytes: number) => crypto.getRandomValues(new Uint8Array(bytes));
  const hex = (bytes: number) => Array.from(random(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
  const base64 = (bytes: number) => btoa(String.fromCharCode(...random(bytes)));

  it.each([
    ["openssl rand -hex 32", () => hex(32)],
    ["openssl rand -hex 16", () => hex(16)],
    ["openssl rand -base64 32", () => base64(32)],
    ["a UUID", () => crypto.randomUUID()],
  ])("accepts every one of 500 random tokens like %s", (_, draw) => {
    const log = vi.fn();
    for (let i = 0; i < 500; i++) {
      const token = draw();
      expect(weakTokenProblem(token)).toBeUndefined();
      expect(adminToken({ ...base, ADMIN_TOKEN: token } as Env, log)).toBe(token);
    }
    expect(log).not.toHaveBeenCalled();
  });

  it("finds the shortest repeated string, a cut-short last copy included", () => {
    expect(shortestPeriod("abcabcab")).toBe(3);
    expect(shortestPeriod("aaaa")).toBe(1);
    expect(shortestPeriod("abcd")).toBe(4);
    expect(shortestPeriod("aabaab")).toBe(3);
    expect(shortestPeriod("")).toBe(0);
  });
});

describe("helpers", () => {
  it("isAdminPath is segment-aware", () => {
    expect(isAdminPath("/__mirror", "/__mirror")).toBe(true);
    expect(isAdminPath("/__mirror/api", "/__mirror")).toBe(true);
    expect(isAdminPath("/__mirrors", "/__mirror")).toBe(false);
  });

  it("tokenMatches compares whole tokens", async () => {
    expect(await tokenMatches("abc", "abc")).toBe(true);
    expect(await tokenMatches("ab", "abc")).toBe(false);
    expect(await tokenMatches("", "abc")).toBe(false);
  });
});

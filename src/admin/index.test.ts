import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import app from "../index.js";
import { adminPrefix, isAdminPath, tokenMatches } from "./index.js";

const base = { ...env, PRIMARY_ORIGIN: "http://primary.test" } as Env;

async function call(path: string, environment: Env, headers: Record<string, string> = {}) {
  const ctx = createExecutionContext();
  const response = await app.fetch(new Request(`https://edge.example.com${path}`, { headers }), environment, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

describe("admin gate", () => {
  const fetchSpy = vi.spyOn(globalThis, "fetch").mockImplementation(async () => new Response("from primary"));
  afterEach(() => fetchSpy.mockClear());

  it("is closed (404) without ADMIN_TOKEN and never reaches the primary", async () => {
    const res = await call("/__mirror/api/routes", base);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: "admin_disabled" });
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("asks for a bearer token (401), refuses a wrong one (403), admits the right one", async () => {
    const withToken = { ...base, ADMIN_TOKEN: "s3cret" } as Env;
    const missing = await call("/__mirror/api/routes", withToken);
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const wrong = await call("/__mirror/api/routes", withToken, { authorization: "Bearer s3cre" });
    expect(wrong.status).toBe(403);
    const right = await call("/__mirror/nothing-here", withToken, { authorization: "Bearer s3cret" });
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
    const moved = { ...base, ADMIN_PREFIX: "ops/edge/" } as Env;
    expect(adminPrefix(moved)).toBe("/ops/edge");
    expect((await call("/ops/edge/api/routes", moved)).status).toBe(404);
    expect(await (await call("/__mirror/api/routes", moved)).text()).toBe("from primary");
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

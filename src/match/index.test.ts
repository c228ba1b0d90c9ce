import { describe, expect, it } from "vitest";
import { parseRoute, type Route, type RouteInput } from "../policy/index.js";
import { compileRoutes, type RequestFacts } from "./index.js";

function facts(url: string, init: { method?: string; headers?: Record<string, string> } = {}): RequestFacts {
  const u = new URL(url);
  return {
    method: init.method ?? "GET",
    host: u.hostname,
    path: u.pathname,
    headers: new Headers(init.headers),
    query: u.searchParams,
  };
}

function table(...routes: RouteInput[]) {
  return compileRoutes(routes.map((r) => parseRoute(r)));
}

const prefix = (id: string, value: string, extra: Partial<RouteInput> = {}): RouteInput => ({
  id,
  match: { path: { type: "PathPrefix", value } },
  ...extra,
});

describe("path matching", () => {
  it("PathPrefix is segment-aware", () => {
    const t = table(prefix("s1", "/service/1"));
    expect(t.find(facts("https://h/service/1"))?.id).toBe("s1");
    expect(t.find(facts("https://h/service/1/x"))?.id).toBe("s1");
    expect(t.find(facts("https://h/service/1/"))?.id).toBe("s1");
    expect(t.find(facts("https://h/service/10"))).toBeUndefined();
    expect(t.find(facts("https://h/service"))).toBeUndefined();
  });

  it("Exact matches only the exact path", () => {
    const t = table({ id: "push", match: { path: { type: "Exact", value: "/api/v1/push" } } });
    expect(t.find(facts("https://h/api/v1/push?x=1"))?.id).toBe("push");
    expect(t.find(facts("https://h/api/v1/push/"))).toBeUndefined();
    expect(t.find(facts("https://h/api/v1/push/x"))).toBeUndefined();
  });

  it("RegularExpression matches the whole path", () => {
    const t = table({ id: "re", match: { path: { type: "RegularExpression", value: "/v[0-9]+/items" } } });
    expect(t.find(facts("https://h/v12/items"))?.id).toBe("re");
    expect(t.find(facts("https://h/v12/items/x"))).toBeUndefined();
    expect(t.find(facts("https://h/x/v12/items"))).toBeUndefined();
  });

  it("a PathPrefix of / matches everything", () => {
    expect(table(prefix("all", "/")).find(facts("https://h/anything/at/all"))?.id).toBe("all");
  });
});

describe("precedence", () => {
  it("highest priority wins", () => {
    const t = table(prefix("long", "/a/b/c"), prefix("short", "/a", { priority: 5 }));
    expect(t.find(facts("https://h/a/b/c/d"))?.id).toBe("short");
  });

  it("on a tie, Exact beats PathPrefix and the longest prefix beats a shorter one", () => {
    const t = table(
      prefix("a", "/a"),
      prefix("ab", "/a/b"),
      { id: "exact", match: { path: { type: "Exact", value: "/a/b" } } },
      { id: "re", match: { path: { type: "RegularExpression", value: "/a/.*" } } },
    );
    expect(t.find(facts("https://h/a/b"))?.id).toBe("exact");
    expect(t.find(facts("https://h/a/b/c"))?.id).toBe("ab");
    expect(t.find(facts("https://h/a/x"))?.id).toBe("a");
  });

  it("a more constrained route wins over a plain one with the same path", () => {
    const t = table(
      prefix("plain", "/x"),
      prefix("posts", "/x", { match: { path: { type: "PathPrefix", value: "/x" }, methods: ["POST"] } }),
    );
    expect(t.find(facts("https://h/x", { method: "POST" }))?.id).toBe("posts");
    expect(t.find(facts("https://h/x", { method: "GET" }))?.id).toBe("plain");
  });

  it("does not depend on input order", () => {
    const routes: RouteInput[] = [prefix("b", "/p"), prefix("a", "/p")];
    expect(table(...routes).find(facts("https://h/p"))?.id).toBe("a");
    expect(table(...routes.reverse()).find(facts("https://h/p"))?.id).toBe("a");
  });
});

describe("host, method, header and query conditions", () => {
  const t = table({
    id: "r",
    match: {
      hosts: ["*.example.com", "exact.test"],
      methods: ["GET", "POST"],
      headers: [
        { name: "x-env", value: "prod" },
        { name: "x-tenant", type: "RegularExpression", value: "team-[a-z]+" },
      ],
      query: [{ name: "v", value: "2" }],
    },
  });
  const ok = { method: "POST", headers: { "x-env": "prod", "x-tenant": "team-abc" } };

  it("matches when every condition holds", () => {
    expect(t.find(facts("https://api.example.com/p?v=2", ok))?.id).toBe("r");
    expect(t.find(facts("https://a.b.example.com/p?v=2", ok))?.id).toBe("r");
    expect(t.find(facts("https://EXACT.test/p?v=2", ok))?.id).toBe("r");
  });

  it.each([
    ["https://example.com/p?v=2", ok],
    ["https://api.example.org/p?v=2", ok],
    ["https://api.example.com/p?v=2", { ...ok, method: "DELETE" }],
    ["https://api.example.com/p?v=2", { ...ok, headers: { "x-env": "staging", "x-tenant": "team-abc" } }],
    ["https://api.example.com/p?v=2", { ...ok, headers: { "x-env": "prod", "x-tenant": "team-ABC1" } }],
    ["https://api.example.com/p?v=3", ok],
    ["https://api.example.com/p", ok],
  ])("does not match %s %j", (url, init) => {
    expect(t.find(facts(url, init))).toBeUndefined();
  });
});

describe("scale", () => {
  it("finds the right route among 1,000 and returns nothing for an unmatched path", () => {
    const routes: RouteInput[] = [];
    for (let i = 0; i < 1000; i++) routes.push(prefix(`r${i}`, `/tenant/${i}/api`));
    const t = table(...routes);
    expect(t.size).toBe(1000);
    expect(t.find(facts("https://h/tenant/999/api/push"))?.id).toBe("r999");
    expect(t.find(facts("https://h/tenant/1000/api"))).toBeUndefined();
  });
});

describe("a route that fails to compile or to match", () => {
  const good = parseRoute({ id: "good", match: { path: { type: "PathPrefix", value: "/" } } });

  it("is left out and reported; the others are compiled", () => {
    // An object the schema would refuse: the guard must hold for whatever reaches it.
    const broken = {
      ...good,
      id: "broken",
      priority: 5,
      match: { ...good.match, path: { type: "RegularExpression", value: "(" } },
    } as Route;
    const rejected: string[] = [];
    const table = compileRoutes([broken, good], (route) => rejected.push(route.id));
    expect(rejected).toEqual(["broken"]);
    expect(table.size).toBe(1);
    expect(table.find(facts("https://h.test/x"))?.id).toBe("good");
  });

  it("is skipped for the request on which its check throws", () => {
    const throwing = parseRoute({
      id: "throwing",
      priority: 5,
      match: { headers: [{ name: "x-a", value: "1" }] },
    });
    const table = compileRoutes([throwing, good]);
    const hostile = {
      ...facts("https://h.test/x"),
      headers: {
        get: () => {
          throw new Error("boom");
        },
      } as unknown as Headers,
    };
    expect(table.find(hostile)?.id).toBe("good");
  });
});

import { describe, expect, it } from "vitest";
import {
  MAX_ROUTE_PATTERN_COST,
  PolicyValidationError,
  parseRoute,
  parseRouteFields,
  type Route,
  type RouteInput,
} from "../policy/index.js";
import { CompileBudgetError, SNAPSHOT_PATTERN_BUDGET } from "../policy/precedence.js";
import { compileRegex } from "../regex/index.js";
import { normalizePath } from "../url/index.js";
import { compileRoutes, matchRoute, type RequestFacts } from "./index.js";

function facts(url: string, init: { method?: string; headers?: Record<string, string> } = {}): RequestFacts {
  const u = new URL(url);
  return {
    method: init.method ?? "GET",
    host: u.hostname,
    path: normalizePath(u.pathname),
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

describe("the path matched is the normal form, as the origin routes it", () => {
  const t = table(
    prefix("pay", "/pay"),
    { id: "exact", match: { path: { type: "Exact", value: "/api/v1/push" } } },
    { id: "re", match: { path: { type: "RegularExpression", value: "/v[0-9]+/items" } } },
  );
  const find = (url: string) => {
    const u = new URL(url);
    return matchRoute(t, new Request(u), u)?.id;
  };

  it.each([
    ["/%70ay/transfer", "pay"],
    ["/%70%61%79/transfer", "pay"],
    ["/p%61y", "pay"],
    ["/a/../%70ay/transfer", "pay"],
    ["/%2e%2e/%70ay/transfer", "pay"],
    ["/%61pi/v1/%70ush", "exact"],
    ["/api/v1/p%75sh", "exact"],
    ["/%76%31%32/items", "re"],
  ])("%s matches route %s", (path, id) => {
    expect(find(`https://h${path}`)).toBe(id);
  });

  it.each(["/pay%2Ftransfer", "/pay%2ftransfer", "/%2Fpay/transfer", "/pay%252Ftransfer", "/%2570ay/transfer"])(
    "an encoded reserved character stays one: %s does not match /pay",
    (path) => {
      expect(find(`https://h${path}`)).toBeUndefined();
    },
  );

  it("an encoded slash is no segment boundary for Exact either", () => {
    expect(find("https://h/api%2Fv1/push")).toBeUndefined();
    expect(find("https://h/api/v1%2Fpush")).toBeUndefined();
  });

  it("route values are read in the same normal form", () => {
    const encoded = table(prefix("p", "/%70ay"), { id: "slash", match: { path: { type: "Exact", value: "/a%2fb" } } });
    expect(encoded.find(facts("https://h/pay/x"))?.id).toBe("p");
    expect(encoded.find(facts("https://h/a%2Fb"))?.id).toBe("slash");
    expect(encoded.find(facts("https://h/a/b"))).toBeUndefined();
  });

  it("a path that is not a route's stays unmatched however it is spelt", () => {
    expect(find("https://h/%71ay/transfer")).toBeUndefined();
    expect(find("https://h/payment")).toBeUndefined();
  });
});

describe("ignoreCase", () => {
  const ci = (
    id: string,
    type: "Exact" | "PathPrefix",
    value: string,
    extra: Partial<RouteInput> = {},
  ): RouteInput => ({
    id,
    match: { path: { type, value, ignoreCase: true } },
    ...extra,
  });

  it("is off by default: /PAY/transfer is not /pay/transfer", () => {
    const t = table(prefix("pay", "/pay"), { id: "e", match: { path: { type: "Exact", value: "/a/b" } } });
    expect(t.find(facts("https://h/PAY/transfer"))).toBeUndefined();
    expect(t.find(facts("https://h/Pay"))).toBeUndefined();
    expect(t.find(facts("https://h/A/b"))).toBeUndefined();
  });

  it("makes PathPrefix and Exact compare without regard to case, in the normal form", () => {
    const t = table(ci("pay", "PathPrefix", "/Pay"), ci("e", "Exact", "/api/V1/push"));
    for (const path of ["/pay/transfer", "/PAY/transfer", "/pAy", "/%50AY/x", "/%70ay/x"]) {
      expect(t.find(facts(`https://h${path}`))?.id, path).toBe("pay");
    }
    expect(t.find(facts("https://h/API/v1/PUSH"))?.id).toBe("e");
    expect(t.find(facts("https://h/api/v1/push/"))).toBeUndefined();
    expect(t.find(facts("https://h/payment"))).toBeUndefined();
    expect(t.find(facts("https://h/PAY%2Ftransfer"))).toBeUndefined();
  });

  it("ranks a case-sensitive path before the same path with ignoreCase; priority still comes first", () => {
    const t = table(ci("any", "PathPrefix", "/pay"), prefix("exact-case", "/pay"));
    expect(t.find(facts("https://h/pay/x"))?.id).toBe("exact-case");
    expect(t.find(facts("https://h/PAY/x"))?.id).toBe("any");
    const prioritised = table(ci("any", "PathPrefix", "/pay", { priority: 1 }), prefix("exact-case", "/pay/x"));
    expect(prioritised.find(facts("https://h/pay/x"))?.id).toBe("any");
  });

  it("merges both tries' candidates in precedence order", () => {
    const t = table(
      ci("short", "PathPrefix", "/a"),
      prefix("long", "/a/b/c"),
      ci("longest", "PathPrefix", "/a/b/c/d"),
      prefix("root", "/", { priority: -1 }),
    );
    expect(t.candidates("/A/B/C/D/e")?.map((c) => c.route.id)).toEqual(["longest", "short", "root"]);
    expect(t.candidates("/a/b/c/d")?.map((c) => c.route.id)).toEqual(["longest", "long", "short", "root"]);
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
    const table = compileRoutes([broken, good], { rejected: (route) => rejected.push(route.id) });
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

describe("the compile budget", () => {
  /** A route whose one header pattern costs `compileRegex(COSTLY).compileCost` to compile. */
  const COSTLY = "(?:a?){200}";
  const cost = compileRegex(COSTLY).compileCost;
  const costly = (id: string, priority: number, value = COSTLY): Route =>
    // Written around the validator where `value` is refused: the table must hold whatever is stored.
    parseRouteFields({
      id,
      priority,
      match: {
        path: { type: "PathPrefix", value: `/${id}` },
        headers: [{ name: "x-a", type: "RegularExpression", value }],
      },
    });
  const rejectedBy = (routes: Route[], budget?: number) => {
    const rejected = new Map<string, unknown>();
    const table = compileRoutes(routes, { rejected: (route, err) => rejected.set(route.id, err) }, budget);
    return { table, rejected };
  };

  it("spends it in precedence order: the route that passes it and every later route with patterns are skipped", () => {
    const { table, rejected } = rejectedBy(
      [
        costly("third", 8),
        costly("first", 10),
        costly("fourth", 7),
        costly("second", 9),
        parseRoute(prefix("plain", "/plain", { priority: 1 })),
        // Never compiled: compiling it would have refused its pattern.
        costly("fifth", 6, "(a)\\1"),
      ],
      2.5 * cost,
    );
    expect(table.size).toBe(3);
    expect(table.find(facts("https://h/first", { headers: { "x-a": "aa" } }))?.id).toBe("first");
    expect(table.find(facts("https://h/second", { headers: { "x-a": "aa" } }))?.id).toBe("second");
    expect(table.find(facts("https://h/third", { headers: { "x-a": "aa" } }))).toBeUndefined();
    expect(table.find(facts("https://h/plain"))?.id).toBe("plain");
    expect([...rejected.keys()]).toEqual(["third", "fourth", "fifth"]);
    for (const err of rejected.values()) {
      expect(err).toBeInstanceOf(CompileBudgetError);
      expect((err as Error).message).toBe(
        `skipped: a policy snapshot's patterns may cost at most ${2.5 * cost} to compile, and routes of higher precedence spent it (it ran out at route "third"); each route may cost at most ${MAX_ROUTE_PATTERN_COST}: use fewer or simpler patterns, or raise the priority of the routes that matter`,
      );
    }
  });

  it("charges refused patterns too, and reports them as validation does", () => {
    const refused = costly("refused", 10, "(?:a?){300}");
    const { table, rejected } = rejectedBy([refused, costly("after", 9)], 1.5 * cost);
    expect(table.size).toBe(0);
    expect(rejected.get("refused")).toBeInstanceOf(PolicyValidationError);
    expect((rejected.get("refused") as Error).message).toMatch(
      /^match\.headers\[0\]\.value: is too complex to match in linear time: its automaton needs more than 100000 steps/,
    );
    expect(rejected.get("after")).toBeInstanceOf(CompileBudgetError);
  });

  it("refuses a route past its own cap, written around the validator, without compiling all of it", () => {
    const values = ["(?:a?){250}", "(?:b?){250}", "(?:c?){250}", "(?:d?){250}", "(?:e?){250}", "("];
    const heavy = parseRouteFields({
      id: "heavy",
      match: { headers: values.map((value, i) => ({ name: `x-${i}`, type: "RegularExpression", value })) },
    });
    const { rejected } = rejectedBy([heavy]);
    // The refused last pattern is never reached: compiling stopped at the cap.
    expect((rejected.get("heavy") as Error).message).toMatch(
      new RegExp(
        `^match: its patterns cost more than ${MAX_ROUTE_PATTERN_COST} to compile together \\(\\d+ by match\\.headers\\[2\\]\\.value\\)`,
      ),
    );
  });

  it("bounds a snapshot of many routes at the cap: only the budget's worth is compiled", () => {
    // Five patterns under the cap together: 96,000 × 2 + 16,000 × 3.
    const values = ["(?:a?){250}", "(?:b?){250}", "(?:a?){100}", "(?:b?){100}", "(?:c?){100}"];
    const atTheCap = (i: number, broken = false) =>
      parseRouteFields({
        id: `r${i}`,
        priority: -i,
        match: {
          headers: [...values, ...(broken ? ["("] : [])].map((value, n) => ({
            name: `x-${n}`,
            type: "RegularExpression",
            value,
          })),
        },
      });
    const routeCost = values.reduce((sum, value) => sum + compileRegex(value).compileCost, 0);
    expect(routeCost).toBeLessThanOrEqual(MAX_ROUTE_PATTERN_COST);
    const fit = Math.floor(SNAPSHOT_PATTERN_BUDGET / routeCost);
    // Every route after the ones that fit has a refused pattern: had it been compiled, it would say so.
    const routes = Array.from({ length: 300 }, (_, i) => atTheCap(i, i > fit));
    const { table, rejected } = rejectedBy(routes);
    expect(table.size).toBe(fit);
    expect(rejected.size).toBe(300 - fit);
    expect([...rejected.values()].every((err) => err instanceof CompileBudgetError)).toBe(true);
  });

  it("costs nothing for routes without patterns", () => {
    const routes = Array.from({ length: 1000 }, (_, i) => parseRoute(prefix(`r${i}`, `/r/${i}`)));
    expect(rejectedBy(routes, 0).table.size).toBe(1000);
  });
});

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseRoute } from "../policy/index.js";
import { REDOS_ACCEPTED } from "../regex/redos-corpus.js";
import { compileRoutes, requestFacts } from "./index.js";

const table = compileRoutes(
  [
    { id: "exact", match: { path: { type: "Exact", value: "/a/b" } } },
    { id: "prefix", match: { path: { type: "PathPrefix", value: "/a" } }, priority: -1 },
    { id: "re", match: { path: { type: "RegularExpression", value: "/v[0-9]+/.*" } } },
    {
      id: "conditions",
      match: {
        hosts: ["*.example.com"],
        headers: [{ name: "x-env", type: "RegularExpression", value: "prod|staging" }],
        query: [{ name: "q", value: "1" }],
      },
    },
    {
      id: "re-query",
      priority: -2,
      match: { query: [{ name: "r", type: "RegularExpression", value: "[0-9]+|x.*y|(a|aa)+" }] },
    },
  ].map((r) => parseRoute(r)),
);

describe("the matcher never throws", () => {
  it("on arbitrary paths, hosts, headers and queries", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 300 }),
        fc.string({ maxLength: 80 }),
        // Header values on the wire are bytes; the runtime hands the worker Latin-1/ASCII text.
        fc.string({ unit: "binary-ascii", maxLength: 300 }),
        fc.string({ maxLength: 80 }),
        (path, host, headerValue, query) => {
          let url: URL;
          try {
            url = new URL(`https://${host || "h"}/${path}?${query}`);
          } catch {
            return; // the runtime refuses such a request before the worker sees it
          }
          const headers = new Headers();
          try {
            headers.set("x-env", headerValue);
          } catch {
            // an invalid header value cannot reach the worker either
          }
          const request = new Request(url, { headers });
          expect(() => table.find(requestFacts(request, url))).not.toThrow();
        },
      ),
      { numRuns: 5000 },
    );
  });

  it("on invalid percent-encodings and invalid UTF-8 in paths", () => {
    for (const path of ["/%", "/%ZZ", "/%C3%28", "/%ED%A0%80", "/%FF%FE", "/a/%00/b", "/%E2%82"]) {
      const url = new URL(`https://h${path}`);
      expect(() => table.find(requestFacts(new Request(url), url))).not.toThrow();
    }
  });

  it("on a 10,000-segment path and on huge header values", () => {
    const deep = new URL(`https://h/${Array.from({ length: 10_000 }, (_, i) => `s${i}`).join("/")}`);
    expect(table.find(requestFacts(new Request(deep), deep))?.id).toBeUndefined();
    const under = new URL(`https://h/a/${"x/".repeat(10_000)}`);
    expect(table.find(requestFacts(new Request(under), under))?.id).toBe("prefix");
    const url = new URL("https://api.example.com/?q=1");
    const huge = new Request(url, { headers: { "x-env": "p".repeat(64 * 1024) } });
    expect(table.find(requestFacts(huge, url))).toBeUndefined();
  });
});

describe("hostile input against the ReDoS corpus", () => {
  /** A route with `pattern` in one place, and a request carrying `input` in that place. */
  const PLACES = {
    path: {
      route: (pattern: string) => ({ path: { type: "RegularExpression", value: `/(?:${pattern})` } }),
      request: (input: string) => new Request(`https://h/${input}`),
    },
    header: {
      route: (pattern: string) => ({ headers: [{ name: "x-probe", type: "RegularExpression", value: pattern }] }),
      request: (input: string) => new Request("https://h/", { headers: { "x-probe": input } }),
    },
    query: {
      route: (pattern: string) => ({ query: [{ name: "q", type: "RegularExpression", value: pattern }] }),
      request: (input: string) => new Request(`https://h/?q=${encodeURIComponent(input)}`),
    },
  } as const;

  // A backtracking engine would not finish these: that the test ends at all is the linear-time check.
  it.each(
    REDOS_ACCEPTED.flatMap((c) =>
      (["path", "header", "query"] as const).map((place) => [c.pattern, place, c] as const),
    ),
  )("%s in the %s answers 16 KB of hostile input", (_pattern, place, { pattern, input, matches }) => {
    const { route, request } = PLACES[place];
    const hostileTable = compileRoutes([parseRoute({ id: "hostile", match: route(pattern) })]);
    const req = request(input);
    const url = new URL(req.url);
    expect(hostileTable.find(requestFacts(req, url))?.id).toBe(matches ? "hostile" : undefined);
  });
});

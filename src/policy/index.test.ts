import { describe, expect, it } from "vitest";
import { PolicyValidationError } from "../errors/index.js";
import { compareSpec, type Mirror, parseCluster, parsePolicyFile, parseRoute } from "./index.js";
import { regexProblem } from "./safe-regex.js";

const issueExample = {
  id: "service-2",
  priority: 10,
  match: {
    hosts: ["*.example.com"],
    path: { type: "PathPrefix", value: "/service/2" },
    methods: ["GET", "POST"],
    headers: [{ name: "x-env", value: "prod" }],
    query: [],
  },
  backends: [{ cluster: "service2", weight: 1 }],
  timeoutMs: 15000,
  requestHeaders: { set: {}, add: {}, remove: [] },
  mirrors: [
    {
      cluster: "service2-canary",
      percent: 20,
      timeoutMs: 5000,
      hostSuffix: "-shadow",
      requestHeaders: { set: { "x-shadow": "1" }, remove: ["authorization"] },
    },
    { origin: "https://audit.example.net", fraction: { numerator: 1, denominator: 1000 } },
  ],
  mirrorFromHeader: { header: "x-mirror-cluster", allow: ["service2-mirror"] },
  maxMirrorBodyBytes: 1048576,
};

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyValidationError);
    return (err as PolicyValidationError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  throw new Error("expected a PolicyValidationError");
}

describe("parseRoute", () => {
  it("accepts the documented example and fills defaults", () => {
    const route = parseRoute(issueExample);
    expect(route.mirrors[1]).toMatchObject({ timeoutMs: 5000, hostSuffix: "-shadow" });
    expect(route.mirrors[0]?.requestHeaders).toEqual({ set: { "x-shadow": "1" }, add: {}, remove: ["authorization"] });
    expect(route.match.headers[0]).toEqual({ name: "x-env", type: "Exact", value: "prod" });
  });

  it("defaults a minimal route to a catch-all PathPrefix with no mirrors", () => {
    const route = parseRoute({ id: "all" });
    expect(route).toMatchObject({
      priority: 0,
      timeoutMs: 15000,
      mirrors: [],
      maxMirrorBodyBytes: 1048576,
      match: { path: { type: "PathPrefix", value: "/" }, hosts: [], methods: [] },
    });
  });

  it.each([
    [{ mirrors: [{ cluster: "c", percent: 150 }] }, "mirrors[0].percent: must be ≤ 100"],
    [{ mirrors: [{ cluster: "c", percent: -1 }] }, "mirrors[0].percent: must be ≥ 0"],
    [{ mirrors: [{ cluster: "c", percnt: 5 }] }, "mirrors[0].percnt: unknown field"],
    [
      { mirrors: [{ cluster: "c", origin: "https://x.test" }] },
      "mirrors[0]: must name exactly one of cluster or origin",
    ],
    [{ mirrors: [{}] }, "mirrors[0]: must name exactly one of cluster or origin"],
    [{ mirrors: [{ origin: "ftp://x.test" }] }, "mirrors[0].origin: must use http or https, not ftp"],
    [{ mirrors: [{ origin: "https://x.test/path" }] }, "mirrors[0].origin: must be an origin only"],
    [{ mirrors: [{ origin: "not a url" }] }, "mirrors[0].origin: must be an absolute URL"],
    [{ mirrors: [{ cluster: "c", timeoutMs: 60000 }] }, "mirrors[0].timeoutMs: must be ≤ 30000"],
    [{ mirrors: [{ cluster: "c", percent: 5, fraction: { numerator: 1 } }] }, "mirrors[0].fraction: use either"],
    [
      { mirrors: [{ cluster: "c", fraction: { numerator: 5, denominator: 2 } }] },
      "mirrors[0].fraction.numerator: numerator must be ≤ denominator",
    ],
    [{ timeoutMs: "15s" }, "timeoutMs: must be a number, got string"],
    [{ timeoutMs: 1.5 }, "timeoutMs: must be an integer"],
    [
      { match: { path: { type: "Glob", value: "/x" } } },
      'match.path.type: must be one of "Exact", "PathPrefix", "RegularExpression"',
    ],
    [{ match: { path: { type: "PathPrefix", value: "x" } } }, "match.path.value: must start with '/'"],
    [
      { match: { path: { type: "RegularExpression", value: "(a+)+$" } } },
      "match.path.value: must not nest unbounded quantifiers",
    ],
    [
      { match: { path: { type: "RegularExpression", value: "([a-z" } } },
      "match.path.value: is not a valid regular expression",
    ],
    [{ match: { methods: ["FETCH"] } }, "match.methods[0]: must be one of"],
    [{ match: { hosts: ["exa mple.com"] } }, "match.hosts[0]: must be a host name"],
    [{ requestHeaders: { set: { "bad header": "x" } } }, 'requestHeaders.set["bad header"]: has an invalid key'],
    [{ requestHeaders: { set: { "x-a": "a\r\nb" } } }, 'requestHeaders.set["x-a"]: must not contain CR, LF or NUL'],
    [{ maxMirrorBodyBytes: 1e12 }, "maxMirrorBodyBytes: must be ≤ 524288000"],
    [{ backends: [] }, "backends: must have at least 1 items"],
    [{ mirrorFromHeader: { allow: ["x"] } }, "mirrorFromHeader.header: is required"],
    [{ mirrors: [{ cluster: "c", compare: "yes" }] }, "mirrors[0].compare: must be a boolean or an object"],
    [
      { mirrors: [{ cluster: "c", compare: { ignorePaths: ["meta.ts"] } }] },
      "mirrors[0].compare.ignorePaths[0]: must be a JSON path",
    ],
    [
      { mirrors: [{ cluster: "c", compare: { reference: {} } }] },
      "mirrors[0].compare.reference: must name exactly one of cluster or origin",
    ],
    [
      { mirrors: [{ cluster: "c", compare: { maxBodyBytes: 1e9 } }] },
      "mirrors[0].compare.maxBodyBytes: must be ≤ 8388608",
    ],
    [{ mirrors: [{ cluster: "c", compare: { ignore: [] } }] }, "mirrors[0].compare.ignore: unknown field"],
  ])("refuses %j with a path-precise error", (patch, expected) => {
    const messages = issuesOf(() => parseRoute({ id: "r", ...patch }));
    expect(messages.some((m) => m.startsWith(expected))).toBe(true);
  });

  it("accepts compare: true with the defaults, or settings in full", () => {
    const route = parseRoute({
      id: "r",
      mirrors: [
        { cluster: "a", compare: true },
        {
          cluster: "b",
          compare: { ignorePaths: ["$.items[*].ts", '$["x.y"]'], reference: { origin: "https://ref.test" } },
        },
      ],
    });
    expect(compareSpec(route.mirrors[0] as Mirror)).toEqual({
      headers: ["content-type"],
      ignorePaths: [],
      redactHeaders: [],
      redactPaths: [],
      redactSecrets: true,
      maxBodyBytes: 1048576,
    });
    expect(compareSpec(route.mirrors[1] as Mirror)?.reference).toEqual({ origin: "https://ref.test" });
    const optOut = parseRoute({ id: "r", mirrors: [{ cluster: "a", compare: { redactSecrets: false } }] });
    expect(compareSpec(optOut.mirrors[0] as Mirror)?.redactSecrets).toBe(false);
    expect(
      issuesOf(() => parseRoute({ id: "r", mirrors: [{ cluster: "a", compare: { redactSecrets: "no" } }] })),
    ).toEqual(["mirrors[0].compare.redactSecrets: must be a boolean, got string"]);
    expect(compareSpec(parseRoute({ id: "r", mirrors: [{ cluster: "a" }] }).mirrors[0] as Mirror)).toBeUndefined();
  });

  it("refuses a missing id and a bad id", () => {
    expect(issuesOf(() => parseRoute({}))).toContain("id: is required");
    expect(issuesOf(() => parseRoute({ id: "../etc" }))[0]).toMatch(/^id: must start with a letter or digit/);
  });
});

describe("parseCluster and parsePolicyFile", () => {
  it("validates cluster origins", () => {
    expect(parseCluster({ origin: "http://127.0.0.1:9000" })).toEqual({ origin: "http://127.0.0.1:9000" });
    expect(issuesOf(() => parseCluster({ origin: "javascript:alert(1)" }))[0]).toMatch(
      /^origin: must use http or https/,
    );
  });

  it("locates errors inside a whole policy file", () => {
    const messages = issuesOf(() =>
      parsePolicyFile({
        clusters: { good: { origin: "https://a.test" }, "bad name!": { origin: "https://b.test" } },
        routes: [{ id: "a" }, { id: "b", mirrors: [{ cluster: "good", percent: 101 }] }],
      }),
    );
    expect(messages).toContain("routes[1].mirrors[0].percent: must be ≤ 100");
    expect(messages.some((m) => m.startsWith('clusters["bad name!"]: has an invalid key'))).toBe(true);
  });
});

describe("regexProblem", () => {
  it.each(["^/api/v[0-9]+/users$", "/service/(1|2)/.*", "[a-z]{2,8}", "(foo|bar)+"])("accepts %s", (p) => {
    expect(regexProblem(p)).toBeUndefined();
  });

  it.each([
    ["(a+)+", /nest unbounded/],
    ["(a*)*b", /nest unbounded/],
    ["(?:x|y+){2,}", /nest unbounded/],
    ["(a)\\1", /backreferences/],
    [".*a.*b.*c.*d", /more than 3 unbounded/],
    ["a".repeat(600), /at most 512/],
  ])("refuses %s", (p, why) => {
    expect(regexProblem(p)).toMatch(why);
  });

  it("does not count quantifiers inside character classes", () => {
    expect(regexProblem("([+*]+)")).toBeUndefined();
  });
});

import { describe, expect, it } from "vitest";
import { compileRegex } from "../regex/index.js";
import { REDOS_ACCEPTED } from "../regex/redos-corpus.js";
import { PolicyValidationError } from "./errors.js";
import {
  compareSpec,
  DEFAULT_VERDICT_THRESHOLDS,
  MAX_ROUTE_PATTERN_COST,
  type Mirror,
  type MirrorFromHeader,
  parseCluster,
  parsePolicyFile,
  parseRoute,
  parseRouteFields,
} from "./index.js";

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

describe("what a route's patterns may cost", () => {
  const withHeaders = (values: string[]) => ({
    id: "r",
    match: { headers: values.map((value, i) => ({ name: `x-${i}`, type: "RegularExpression", value })) },
  });

  it("refuses a route whose patterns cost too much together, though each is accepted alone", () => {
    const values = ["(?:a?){250}", "(?:b?){250}", "(?:c?){250}"];
    for (const value of values) expect(() => parseRoute(withHeaders([value]))).not.toThrow();
    expect(issuesOf(() => parseRoute(withHeaders(values)))).toEqual([
      expect.stringMatching(
        new RegExp(
          `^match: its patterns cost more than ${MAX_ROUTE_PATTERN_COST} to compile together \\(\\d+ by match\\.headers\\[2\\]\\.value\\), and every new isolate compiles them before its first request: use fewer or simpler patterns$`,
        ),
      ),
    ]);
  });

  it("charges a pattern used twice in one route once", () => {
    expect(() => parseRoute(withHeaders(Array(32).fill("(?:a?){250}")))).not.toThrow();
  });

  it("lets any one pattern the engine accepts fit", () => {
    // The costliest kinds: the most build steps, the most table cells, the widest alphabet.
    const costly = [
      "(?:a?){250}",
      ".*a.{8}",
      "(?:x|y|z)*a{900}",
      `[${Array.from({ length: 250 }, (_, i) => String.fromCharCode(0x100 + i * 3)).join("")}](?:${Array.from({ length: 50 }, (_, i) => `[^${String.fromCharCode(0x100 + i * 3)}]`).join("|")})`,
      ...REDOS_ACCEPTED.map((c) => c.pattern),
    ];
    for (const pattern of costly) expect(compileRegex(pattern).compileCost).toBeLessThan(MAX_ROUTE_PATTERN_COST);
  });

  it("reports refused patterns beside the other fields' issues", () => {
    expect(
      issuesOf(() =>
        parseRoute({ id: "", match: { headers: [{ name: "x-a", type: "RegularExpression", value: "a(?=b)" }] } }),
      ),
    ).toEqual([
      "id: must be at least 1 characters",
      "id: must start with a letter or digit and use only letters, digits, '.', '_' or '-'",
      expect.stringMatching(/^match\.headers\[0\]\.value: must not use lookahead or lookbehind/),
    ]);
  });

  it("leaves patterns unchecked in parseRouteFields, for a caller that compiles them itself", () => {
    const route = { id: "r", match: { path: { type: "RegularExpression", value: "(" } } };
    expect(() => parseRoute(route)).toThrow(PolicyValidationError);
    expect(parseRouteFields(route).match.path.value).toBe("(");
  });
});

describe("parseRoute", () => {
  it("accepts the documented example and fills defaults", () => {
    const route = parseRoute(issueExample);
    expect(route.mirrors[1]).toMatchObject({ timeoutMs: 5000, hostSuffix: "-shadow" });
    expect(route.mirrors[0]?.requestHeaders).toEqual({ set: { "x-shadow": "1" }, add: {}, remove: ["authorization"] });
    expect(route.match.headers[0]).toEqual({ name: "x-env", type: "Exact", value: "prod" });
  });

  it("makes copies best-effort unless a mirror asks for durable delivery, whose retry has defaults", () => {
    const route = parseRoute({
      id: "rw",
      mirrors: [
        { cluster: "a" },
        { cluster: "b", delivery: "durable" },
        { cluster: "c", delivery: "durable", retry: { maxAttempts: 3 } },
        { cluster: "d", delivery: "durable", retry: { firstDelaySeconds: 1, maxAttempts: 100 } },
      ],
      mirrorFromHeader: { header: "x-m", allow: ["e"], delivery: "durable", retry: { firstDelaySeconds: 30 } },
    });
    expect(route.mirrors.map((m) => [m.delivery, m.retry])).toEqual([
      ["best-effort", undefined],
      ["durable", undefined],
      ["durable", { maxAttempts: 3, firstDelaySeconds: 5 }],
      ["durable", { maxAttempts: 100, firstDelaySeconds: 1 }],
    ]);
    expect(route.mirrorFromHeader).toMatchObject({
      delivery: "durable",
      retry: { maxAttempts: 10, firstDelaySeconds: 30 },
    });
    // A durable mirror may compare nothing, said as false too.
    expect(
      parseRoute({ id: "r", mirrors: [{ cluster: "a", delivery: "durable", compare: false }] }).mirrors[0]?.delivery,
    ).toBe("durable");
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

  it("accepts ignoreCase on Exact and PathPrefix, and an explicit false on RegularExpression", () => {
    for (const type of ["Exact", "PathPrefix"] as const) {
      expect(parseRoute({ id: "r", match: { path: { type, value: "/pay", ignoreCase: true } } }).match.path).toEqual({
        type,
        value: "/pay",
        ignoreCase: true,
      });
    }
    const re = parseRoute({
      id: "r",
      match: { path: { type: "RegularExpression", value: "/p.*", ignoreCase: false } },
    });
    expect(re.match.path.ignoreCase).toBe(false);
    // Off unless asked for: Gateway API matches paths case-sensitively.
    expect(parseRoute({ id: "r", match: { path: { type: "PathPrefix", value: "/pay" } } }).match.path.ignoreCase).toBe(
      undefined,
    );
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
      { match: { path: { type: "RegularExpression", value: "/(a)/\\1" } } },
      "match.path.value: must not use backreferences",
    ],
    [
      { match: { headers: [{ name: "x-a", type: "RegularExpression", value: "a(?=b)" }] } },
      "match.headers[0].value: must not use lookahead or lookbehind",
    ],
    [
      {
        match: {
          query: [
            { name: "q", value: "x" },
            { name: "r", type: "RegularExpression", value: ".*a.{20}" },
          ],
        },
      },
      "match.query[1].value: is too complex to match in linear time",
    ],
    [
      { match: { path: { type: "RegularExpression", value: "([a-z" } } },
      "match.path.value: is not a valid regular expression",
    ],
    [
      { match: { path: { type: "RegularExpression", value: "/pay/.*", ignoreCase: true } } },
      "match.path.ignoreCase: applies only to Exact and PathPrefix: a RegularExpression is matched as written, so spell the letters whose case may vary as classes, such as /[Pp][Aa][Yy]/.*",
    ],
    [
      { match: { path: { type: "PathPrefix", value: "/pay", ignoreCase: "yes" } } },
      "match.path.ignoreCase: must be a boolean",
    ],
    [{ match: { methods: ["FETCH"] } }, "match.methods[0]: must be one of"],
    [{ match: { hosts: ["exa mple.com"] } }, "match.hosts[0]: must be a host name"],
    [{ requestHeaders: { set: { "bad header": "x" } } }, 'requestHeaders.set["bad header"]: has an invalid key'],
    [{ requestHeaders: { set: { "x-a": "a\r\nb" } } }, 'requestHeaders.set["x-a"]: must not contain CR, LF or NUL'],
    [
      { maxMirrorBodyBytes: 1e12 },
      "maxMirrorBodyBytes: must be ≤ 33554432 (copies are held in memory; an isolate has 128 MB)",
    ],
    [
      { maxMirrorBodyBytes: 32 * 1024 * 1024 + 1 },
      "maxMirrorBodyBytes: must be ≤ 33554432 (copies are held in memory; an isolate has 128 MB)",
    ],
    [{ backends: [] }, "backends: must have at least 1 items"],
    [{ mirrorFromHeader: { allow: ["x"] } }, "mirrorFromHeader.header: is required"],
    [
      { mirrorFromHeader: { header: "x-mirror-cluster" } },
      "mirrorFromHeader.allow: is required: list the clusters a client may choose",
    ],
    [{ mirrorFromHeader: { header: "x-m", allow: "canary" } }, "mirrorFromHeader.allow: must be an array, got string"],
    [
      { mirrorFromHeader: { header: "x-m", allow: ["c"], compare: "yes" } },
      "mirrorFromHeader.compare: must be a boolean or an object",
    ],
    [
      { mirrorFromHeader: { header: "x-m", allow: ["c"], compare: { maxBodyBytes: 1e9 } } },
      "mirrorFromHeader.compare.maxBodyBytes: must be ≤ 8388608",
    ],
    [
      { mirrorFromHeader: { header: "x-m", allow: ["c"], compare: { reference: {} } } },
      "mirrorFromHeader.compare.reference: must name exactly one of cluster or origin",
    ],
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
    [
      { mirrors: [{ cluster: "c", sampleBy: {} }] },
      "mirrors[0].sampleBy: must name exactly one of header, cookie or query",
    ],
    [
      { mirrors: [{ cluster: "c", sampleBy: { header: "x-user-id", cookie: "session" } }] },
      "mirrors[0].sampleBy: must name exactly one of header, cookie or query",
    ],
    [
      { mirrors: [{ cluster: "c", sampleBy: { header: "x user" } }] },
      "mirrors[0].sampleBy.header: must be a valid HTTP header name",
    ],
    [
      { mirrors: [{ cluster: "c", sampleBy: { cookie: "a;b" } }] },
      "mirrors[0].sampleBy.cookie: must be a valid cookie name",
    ],
    [
      { mirrors: [{ cluster: "c", sampleBy: { cookie: "s".repeat(257) } }] },
      "mirrors[0].sampleBy.cookie: must be at most 256",
    ],
    [
      { mirrors: [{ cluster: "c", sampleBy: { query: "" } }] },
      "mirrors[0].sampleBy.query: must be at least 1 characters",
    ],
    [
      { mirrors: [{ cluster: "c", sampleBy: { query: "q".repeat(257) } }] },
      "mirrors[0].sampleBy.query: must be at most 256",
    ],
    [{ mirrors: [{ cluster: "c", sampleBy: { user: "u" } }] }, "mirrors[0].sampleBy.user: unknown field"],
    [
      { mirrors: [{ cluster: "c", delivery: "exactly-once" }] },
      'mirrors[0].delivery: must be one of "best-effort", "durable"',
    ],
    [
      { mirrors: [{ cluster: "c", retry: { maxAttempts: 3 } }] },
      'mirrors[0].retry: applies only with delivery "durable"',
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "best-effort", retry: {} }] },
      'mirrors[0].retry: applies only with delivery "durable"',
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "durable", retry: { maxAttempts: 101 } }] },
      "mirrors[0].retry.maxAttempts: must be ≤ 100",
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "durable", retry: { maxAttempts: 0 } }] },
      "mirrors[0].retry.maxAttempts: must be ≥ 1",
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "durable", retry: { firstDelaySeconds: 0 } }] },
      "mirrors[0].retry.firstDelaySeconds: must be ≥ 1",
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "durable", retry: { firstDelaySeconds: 7200 } }] },
      "mirrors[0].retry.firstDelaySeconds: must be ≤ 3600",
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "durable", retry: { maxAttempts: 2.5 } }] },
      "mirrors[0].retry.maxAttempts: must be an integer",
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "durable", retry: { attempts: 3 } }] },
      "mirrors[0].retry.attempts: unknown field",
    ],
    [
      { mirrors: [{ cluster: "c", delivery: "durable", compare: true }] },
      "mirrors[0].delivery: a durable copy cannot be compared",
    ],
    [
      { mirrorFromHeader: { header: "x-m", allow: ["c"], retry: { maxAttempts: 3 } } },
      'mirrorFromHeader.retry: applies only with delivery "durable"',
    ],
    [
      { mirrorFromHeader: { header: "x-m", allow: ["c"], delivery: "durable", compare: {} } },
      "mirrorFromHeader.delivery: a durable copy cannot be compared",
    ],
    [
      { mirrorFromHeader: { header: "x-m", allow: ["c"], delivery: "durable", retry: { maxAttempts: 500 } } },
      "mirrorFromHeader.retry.maxAttempts: must be ≤ 100",
    ],
    [{ mirrors: [{ cluster: "c", sampleBy: "x-user-id" }] }, "mirrors[0].sampleBy: must be an object, got string"],
    [
      {
        match: { path: { type: "Exact", value: "/api/v1" } },
        mirrors: [{ cluster: "c", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } } }],
      },
      "mirrors[0].urlRewrite.path.type: ReplacePrefixMatch needs match.path.type PathPrefix, not Exact",
    ],
    [
      {
        match: { path: { type: "RegularExpression", value: "/api/.*" } },
        mirrorFromHeader: {
          header: "x-m",
          allow: ["c"],
          urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2" } },
        },
      },
      "mirrorFromHeader.urlRewrite.path.type: ReplacePrefixMatch needs match.path.type PathPrefix, not RegularExpression",
    ],
    [
      { mirrors: [{ cluster: "c", urlRewrite: { path: { type: "Regex", replaceFullPath: "/x" } } }] },
      'mirrors[0].urlRewrite.path.type: must be one of "ReplaceFullPath", "ReplacePrefixMatch"',
    ],
    [
      { mirrors: [{ cluster: "c", urlRewrite: { path: { type: "ReplaceFullPath" } } }] },
      "mirrors[0].urlRewrite.path.replaceFullPath: is required",
    ],
    [
      { mirrors: [{ cluster: "c", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "" } } }] },
      "mirrors[0].urlRewrite.path.replaceFullPath: must start with '/'",
    ],
    [
      { mirrors: [{ cluster: "c", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "v2" } } }] },
      "mirrors[0].urlRewrite.path.replacePrefixMatch: must be empty or start with '/'",
    ],
    [
      {
        mirrors: [
          { cluster: "c", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/a/../b" } } },
        ],
      },
      "mirrors[0].urlRewrite.path.replacePrefixMatch: must not contain '.' or '..' segments",
    ],
    [
      {
        mirrors: [
          { cluster: "c", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: `/${"a".repeat(1024)}` } } },
        ],
      },
      "mirrors[0].urlRewrite.path.replaceFullPath: must be at most 1024 characters",
    ],
    [
      {
        mirrors: [
          {
            cluster: "c",
            urlRewrite: { hostname: "x.test", path: { type: "ReplaceFullPath", replaceFullPath: "/x" } },
          },
        ],
      },
      "mirrors[0].urlRewrite.hostname: unknown field",
    ],
  ])("refuses %j with a path-precise error", (patch, expected) => {
    const messages = issuesOf(() => parseRoute({ id: "r", ...patch }));
    expect(messages.some((m) => m.startsWith(expected))).toBe(true);
  });

  it.each(["/a?b=1", "/a#b", "/a b", "/a\tb", "/a\u0000", "/a\u007f", "/caf\u00e9", "/a%2", '/a"b', "/a{b}"])(
    "refuses the replacement path %j: the mirror must receive what was written",
    (bad) => {
      const messages = issuesOf(() =>
        parseRoute({
          id: "r",
          mirrors: [{ cluster: "c", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: bad } } }],
        }),
      );
      expect(messages).toEqual([
        "mirrors[0].urlRewrite.path.replaceFullPath: may use only URL path characters: letters, digits, -._~!$&'()*+,;=:@/ and %XX (no '?', '#', spaces or control characters; the query is kept as sent)",
      ]);
    },
  );

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

  it("checks header and query patterns as it checks the path, and only when they are regular expressions", () => {
    const invalid = /^is not a valid regular expression \(.+\)$/;
    const headerIssues = issuesOf(() =>
      parseRoute({ id: "r", match: { headers: [{ name: "x-a", type: "RegularExpression", value: "(" }] } }),
    );
    expect(headerIssues).toHaveLength(1);
    expect(headerIssues[0]).toMatch(/^match\.headers\[0\]\.value: /);
    expect(headerIssues[0]?.slice("match.headers[0].value: ".length)).toMatch(invalid);
    const queryIssues = issuesOf(() =>
      parseRoute({ id: "r", match: { query: [{ name: "q", type: "RegularExpression", value: "(" }] } }),
    );
    expect(queryIssues).toEqual([headerIssues[0]?.replace("headers", "query")]);
    const exact = parseRoute({
      id: "r",
      match: { headers: [{ name: "x-a", value: "(" }], query: [{ name: "q", value: "(" }] },
    });
    expect(exact.match.headers[0]?.value).toBe("(");
    expect(exact.match.query[0]?.value).toBe("(");
  });

  it("accepts compare on a header-chosen mirror", () => {
    const route = parseRoute({
      id: "r",
      mirrorFromHeader: { header: "x-mirror-cluster", allow: ["my-branch"], compare: { ignorePaths: ["$.ts"] } },
    });
    expect(compareSpec(route.mirrorFromHeader as MirrorFromHeader)).toMatchObject({
      ignorePaths: ["$.ts"],
      maxBodyBytes: 1048576,
    });
    const always = parseRoute({ id: "r", mirrorFromHeader: { header: "x-m", allow: ["b"], compare: true } });
    expect(compareSpec(always.mirrorFromHeader as MirrorFromHeader)?.headers).toEqual(["content-type"]);
  });

  it("accepts sticky sampling by a header, a cookie or a query parameter", () => {
    const route = parseRoute({
      id: "r",
      mirrors: [
        { cluster: "a", percent: 10, sampleBy: { header: "x-user-id" } },
        { cluster: "b", fraction: { numerator: 1, denominator: 50 }, sampleBy: { cookie: "__Host-session" } },
        { cluster: "c", sampleBy: { query: "user id" } },
        { cluster: "d" },
      ],
    });
    expect(route.mirrors.map((m) => m.sampleBy)).toEqual([
      { header: "x-user-id" },
      { cookie: "__Host-session" },
      { query: "user id" },
      undefined,
    ]);
  });

  it("accepts URL rewrites on listed and header-chosen mirrors", () => {
    const route = parseRoute({
      id: "r",
      match: { path: { type: "PathPrefix", value: "/api/v1" } },
      mirrors: [
        { cluster: "c", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2/%7Euser;v=1" } } },
        { cluster: "d", urlRewrite: { path: { type: "ReplacePrefixMatch", replacePrefixMatch: "" } } },
      ],
      mirrorFromHeader: {
        header: "x-mirror-cluster",
        allow: ["my-branch"],
        urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/shadow/sink" } },
      },
    });
    expect(route.mirrors.map((m) => m.urlRewrite?.path)).toEqual([
      { type: "ReplacePrefixMatch", replacePrefixMatch: "/v2/%7Euser;v=1" },
      { type: "ReplacePrefixMatch", replacePrefixMatch: "" },
    ]);
    expect(route.mirrorFromHeader?.urlRewrite).toEqual({
      path: { type: "ReplaceFullPath", replaceFullPath: "/shadow/sink" },
    });
    // Exact and RegularExpression routes may still replace the full path.
    expect(() =>
      parseRoute({
        id: "e",
        match: { path: { type: "Exact", value: "/x" } },
        mirrors: [{ cluster: "a", urlRewrite: { path: { type: "ReplaceFullPath", replaceFullPath: "/y" } } }],
      }),
    ).not.toThrow();
  });

  // The runtime, the connection, Cloudflare's edge and edge-mirror's loop protection own these.
  it.each<[object, string]>([
    [
      { set: { "content-length": "5" } },
      'requestHeaders.set["content-length"]: is set by the runtime and cannot be changed',
    ],
    [{ set: { Host: "internal.test" } }, "requestHeaders.set.Host: is set by the runtime and cannot be changed"],
    [{ add: { "transfer-encoding": "chunked" } }, 'requestHeaders.add["transfer-encoding"]: is set by the runtime'],
    [{ set: { connection: "close" } }, "requestHeaders.set.connection: is a hop-by-hop field"],
    ...["keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"].map(
      (name): [object, string] => [
        { remove: ["x-fine", name] },
        `requestHeaders.remove[1]: "${name}" is a hop-by-hop field`,
      ],
    ),
    [
      { set: { "CF-Connecting-IP": "10.0.0.1" } },
      'requestHeaders.set["CF-Connecting-IP"]: is set by Cloudflare\'s edge',
    ],
    [{ remove: ["cf-ray"] }, 'requestHeaders.remove[0]: "cf-ray" is set by Cloudflare\'s edge'],
    [
      { set: { "x-edge-mirror-hops": "0" } },
      'requestHeaders.set["x-edge-mirror-hops"]: is edge-mirror\'s loop protection',
    ],
    [{ add: { "x-edge-mirror": "r" } }, 'requestHeaders.add["x-edge-mirror"]: is edge-mirror\'s mirror marker'],
    [{ remove: ["X-Edge-Mirror-Id"] }, 'requestHeaders.remove[0]: "X-Edge-Mirror-Id" is edge-mirror\'s copy id'],
  ])("refuses requestHeaders %j on a field it cannot change, on the route and on every mirror", (ops, message) => {
    expect(issuesOf(() => parseRoute({ id: "r", requestHeaders: ops }))[0]).toMatch(message);
    const mirrored = (where: object) => issuesOf(() => parseRoute({ id: "r", ...where }))[0];
    expect(mirrored({ mirrors: [{ cluster: "c", requestHeaders: ops }] })).toMatch(`mirrors[0].${message}`);
    expect(mirrored({ mirrorFromHeader: { header: "x-m", allow: ["c"], requestHeaders: ops } })).toMatch(
      `mirrorFromHeader.${message}`,
    );
  });

  it("lets requestHeaders change Cloudflare Access's cf-access-* fields, as an audit mirror must remove the assertion", () => {
    const route = parseRoute({
      id: "r",
      mirrors: [{ cluster: "c", requestHeaders: { remove: ["cf-access-jwt-assertion"] } }],
      requestHeaders: { set: { "cf-access-client-id": "id.access" } },
    });
    expect(route.mirrors[0]?.requestHeaders?.remove).toEqual(["cf-access-jwt-assertion"]);
  });

  it("accepts release verdict thresholds on listed and header-chosen mirrors, each field defaulted", () => {
    const route = parseRoute({
      id: "r",
      mirrors: [
        { cluster: "c", verdict: { maxDiffRate: 0.001, maxLatencyRatio: { p99: 2 } } },
        { cluster: "d", verdict: {} },
        { cluster: "e" },
      ],
      mirrorFromHeader: { header: "x-m", allow: ["b"], verdict: { minSamples: 1000, maxErrorRateIncrease: 0 } },
    });
    expect(route.mirrors.map((m) => m.verdict)).toEqual([
      { maxDiffRate: 0.001, maxErrorRateIncrease: 0.01, maxLatencyRatio: { p50: 1.5, p99: 2 }, minSamples: 100 },
      { ...DEFAULT_VERDICT_THRESHOLDS, maxLatencyRatio: { p50: 1.5, p99: 1.5 } },
      undefined,
    ]);
    expect(route.mirrorFromHeader?.verdict).toMatchObject({ minSamples: 1000, maxErrorRateIncrease: 0 });
  });

  it.each<[object, string]>([
    [{ maxDiffRate: 1.5 }, "mirrors[0].verdict.maxDiffRate: must be ≤ 1"],
    [{ maxErrorRateIncrease: -0.1 }, "mirrors[0].verdict.maxErrorRateIncrease: must be ≥ 0"],
    [{ maxLatencyRatio: { p50: 0 } }, "mirrors[0].verdict.maxLatencyRatio.p50: must be > 0"],
    [{ maxLatencyRatio: { p95: 2 } }, "mirrors[0].verdict.maxLatencyRatio.p95: unknown field"],
    [{ minSamples: 0.5 }, "mirrors[0].verdict.minSamples: must be an integer, got number"],
    [{ minSamples: 0 }, "mirrors[0].verdict.minSamples: must be ≥ 1"],
    [{ maxDiffRate: "1%" }, "mirrors[0].verdict.maxDiffRate: must be a number, got string"],
    [{ maxDifRate: 0.01 }, "mirrors[0].verdict.maxDifRate: unknown field"],
  ])("refuses verdict %j, naming the field and the rule", (verdict, message) => {
    expect(issuesOf(() => parseRoute({ id: "r", mirrors: [{ cluster: "c", verdict }] }))).toEqual([message]);
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

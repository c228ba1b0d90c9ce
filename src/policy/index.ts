/**
 * @module policy
 * The policy model: one zod schema, the single source of truth for routes, clusters and policy
 * files. Types are inferred from it; the CLI, the admin API, the JSON Schema and the worker all
 * validate through `parseRoute`, `parseCluster` and `parsePolicyFile`.
 * Vocabulary follows the Gateway API HTTPRoute (match, backends, RequestMirror).
 */
import * as z from "zod/mini";
import { headerChangeRefusal, refusedHeaderPattern } from "../headers/index.js";
import { compileRegex, type DfaMatcher, RegexError } from "../regex/index.js";
import { type PolicyIssue, PolicyValidationError } from "./errors.js";

export { type PolicyIssue, PolicyValidationError } from "./errors.js";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const HOST_PATTERN = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const HEADER_VALUE = /^[^\r\n\0]*$/;
const NAME_RULE = "must start with a letter or digit and use only letters, digits, '.', '_' or '-'";

/**
 * The largest `maxMirrorBodyBytes`: a copy's body is held in memory while the mirrors read it, and
 * an isolate has 128 MB for every request it serves at once (a 60 MiB upload took workerd from 64
 * to 274 MiB).
 */
export const MAX_MIRROR_BODY_BYTES = 32 * 1024 * 1024;
/** `waitUntil` work is cancelled 30 s after the response; a mirror cannot usefully wait longer. */
export const MAX_MIRROR_TIMEOUT_MS = 30_000;
export const MAX_MIRRORS_PER_ROUTE = 16;
/** The most cluster names `mirrorFromHeader.allow` may list. */
export const MAX_ALLOWED_CLUSTERS = 256;

// zod/mini rather than zod classic: the same model at about a tenth of the bundle size.
const intBetween = (min: number, max: number) => z.int().check(z.minimum(min), z.maximum(max));

/**
 * A regular expression for edge-mirror's linear-time engine (`src/regex`). Patterns are compiled
 * and checked once per route, after its other fields (see `Route`).
 */
const regexPattern = z.string();

const headerName = z
  .string()
  .check(z.maxLength(256), z.regex(TOKEN, { error: "must be a valid HTTP header name (RFC 9110 token)" }));

const headerValue = z
  .string()
  .check(z.maxLength(8192), z.regex(HEADER_VALUE, { error: "must not contain CR, LF or NUL" }));

export const ClusterName = z.string().check(z.minLength(1), z.maxLength(63), z.regex(NAME, { error: NAME_RULE }));

/**
 * An http(s) origin; parsed values are normalised (`https://A.test:443/` → `https://a.test`) once,
 * here: by an overwrite check, which runs only once the value is known to be an origin (zod skips
 * the checks after one that failed).
 */
export const Origin = z.string().check(
  z.maxLength(2048),
  z.superRefine((value, ctx) => {
    const problem = originProblem(value);
    if (problem) ctx.issues.push({ code: "custom", message: problem, input: value });
  }),
  z.overwrite((value) => new URL(value).origin),
);

function originProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return "must be an absolute URL such as https://host:8080";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `must use http or https, not ${url.protocol.slice(0, -1)}`;
  }
  if (url.username || url.password) return "must not contain credentials";
  if (url.pathname !== "/" || url.search || url.hash) {
    return "must be an origin only (scheme, host, port) with no path, query or fragment";
  }
  return undefined;
}

/**
 * A field a route changes: a header name, and a schema of its own so that editors mark the names
 * `headerChangeRefusal` refuses too (`editorHints`).
 */
const changedHeaderName = headerName.clone();

/**
 * HTTPRoute-style header changes: `set` overwrites, `add` appends with ",", `remove` deletes.
 * Never of a field the runtime, the connection, Cloudflare's edge or edge-mirror itself owns (see
 * `headerChangeRefusal`): the change would be dropped or overwritten on the way, or would switch
 * edge-mirror's loop protection off.
 */
export const HeaderOps = z
  .strictObject({
    set: z._default(z.record(changedHeaderName, headerValue), {}),
    add: z._default(z.record(changedHeaderName, headerValue), {}),
    remove: z._default(z.array(changedHeaderName).check(z.maxLength(64)), []),
  })
  .check(
    z.superRefine((ops, ctx) => {
      for (const change of ["set", "add"] as const) {
        for (const name of Object.keys(ops[change])) {
          const refusal = headerChangeRefusal(name);
          if (refusal) ctx.issues.push({ code: "custom", message: refusal, path: [change, name], input: name });
        }
      }
      ops.remove.forEach((name, index) => {
        const refusal = headerChangeRefusal(name);
        if (refusal) {
          ctx.issues.push({ code: "custom", message: `"${name}" ${refusal}`, path: ["remove", index], input: name });
        }
      });
    }),
  );

const absolutePath = z.string().check(z.maxLength(2048), z.regex(/^\//, { error: "must start with '/'" }));

/**
 * Exact and PathPrefix compare case-insensitively, for origins that ignore case. An extension:
 * Gateway API path matching is case-sensitive, and so is the default.
 */
const ignoreCase = z.optional(z.boolean());
/**
 * A RegularExpression's `ignoreCase`: marked for editors, which then flag `true` (`editorHints`);
 * the message comes from the check of its match.
 */
const regexIgnoreCase = z.boolean();

const PathMatch = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("Exact"), value: absolutePath, ignoreCase }),
  z.strictObject({ type: z.literal("PathPrefix"), value: absolutePath, ignoreCase }),
  z
    .strictObject({
      type: z.literal("RegularExpression"),
      value: regexPattern,
      ignoreCase: z.optional(regexIgnoreCase),
    })
    .check(
      // As in Envoy, whose case_sensitive does not apply to regex matches: a pattern means what it says.
      z.superRefine((match, ctx) => {
        if (match.ignoreCase !== true) return;
        ctx.issues.push({
          code: "custom",
          message:
            "applies only to Exact and PathPrefix: a RegularExpression is matched as written, so spell the letters whose case may vary as classes, such as /[Pp][Aa][Yy]/.*",
          path: ["ignoreCase"],
          input: match.ignoreCase,
        });
      }),
    ),
]);

/** A header or query condition; a RegularExpression value is checked with the route's patterns. */
const valueMatch = <N extends z.ZodMiniType<string>>(name: N) =>
  z.strictObject({
    name,
    type: z._default(z.enum(["Exact", "RegularExpression"]), "Exact"),
    value: z.string().check(z.maxLength(4096)),
  });

const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] as const;

const hostPattern = z
  .string()
  .check(z.maxLength(253), z.regex(HOST_PATTERN, { error: "must be a host name, optionally starting with '*.'" }));

const Match = z.strictObject({
  hosts: z._default(z.array(hostPattern).check(z.maxLength(64)), []),
  path: z._default(PathMatch, { type: "PathPrefix", value: "/" }),
  methods: z._default(z.array(z.enum(HTTP_METHODS)).check(z.maxLength(HTTP_METHODS.length)), []),
  headers: z._default(z.array(valueMatch(headerName)).check(z.maxLength(32)), []),
  query: z._default(z.array(valueMatch(z.string().check(z.minLength(1), z.maxLength(256)))).check(z.maxLength(32)), []),
});

const Fraction = z
  .strictObject({
    numerator: z.int().check(z.minimum(0)),
    denominator: z._default(z.int().check(z.minimum(1)), 100),
  })
  .check(
    z.superRefine((f, ctx) => {
      if (f.numerator <= f.denominator) return;
      ctx.issues.push({ code: "custom", message: "numerator must be ≤ denominator", path: ["numerator"], input: f });
    }),
  );

const Target = {
  cluster: z.optional(ClusterName),
  origin: z.optional(Origin),
};

const exactlyOneTarget = z.superRefine((value: { cluster?: string | undefined; origin?: string | undefined }, ctx) => {
  if ((value.cluster === undefined) === (value.origin === undefined)) {
    ctx.issues.push({ code: "custom", message: "must name exactly one of cluster or origin", input: value });
  }
});

const mirrorTimeoutMs = z._default(intBetween(1, MAX_MIRROR_TIMEOUT_MS), 5000);
const hostSuffix = z._default(
  z
    .string()
    .check(
      z.maxLength(63),
      z.regex(/^[A-Za-z0-9._-]*$/, { error: "may contain only letters, digits, '.', '_' or '-'" }),
    ),
  "-shadow",
);

/**
 * A JSON path as the comparison reports it: `$`, then `.key`, `["odd key"]` or `[3]` steps;
 * `*` (`.*`, `[*]`) stands for any one key or index.
 */
const JSON_PATH = /^\$(\.([A-Za-z_$][\w$-]*|\*)|\[(\d+|\*|"([^"\\]|\\.)*")\])*$/;
const jsonPath = z
  .string()
  .check(
    z.maxLength(512),
    z.regex(JSON_PATH, { error: 'must be a JSON path such as $.meta.ts, $.items[*].id or $["odd key"]' }),
  );

/** The largest body a comparison reads from each side; bodies are held in memory while compared. */
export const MAX_COMPARE_BODY_BYTES = 8 * 1024 * 1024;

/**
 * Shadow testing (Diffy-style): the mirror's answer is compared with the primary's. Fields that
 * also differ between the primary and `reference` (a second replica of the primary's version)
 * are noise, not differences.
 */
export const CompareSpec = z.strictObject({
  /** Response headers compared besides the status and the body. */
  headers: z._default(z.array(headerName).check(z.maxLength(32)), ["content-type"]),
  ignorePaths: z._default(z.array(jsonPath).check(z.maxLength(64)), []),
  /** Never shown in diff samples (authorization and cookies are always hidden). */
  redactHeaders: z._default(z.array(headerName).check(z.maxLength(64)), []),
  redactPaths: z._default(z.array(jsonPath).check(z.maxLength(64)), []),
  /** Values under keys that look like secrets (`password`, `token`, `api_key`, …) are never shown. */
  redactSecrets: z._default(z.boolean(), true),
  reference: z.optional(z.strictObject({ ...Target }).check(exactlyOneTarget)),
  maxBodyBytes: z._default(intBetween(0, MAX_COMPARE_BODY_BYTES), 1024 * 1024),
});

/** `true` compares with the defaults; an object tunes the comparison. */
const compare = z.optional(z.union([z.boolean(), CompareSpec]));

/**
 * A replacement path for copies: RFC 3986 path characters only, so that the mirror receives
 * exactly what was written (the URL parser would encode or resolve anything else).
 */
const PATH_CHARS = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;
const DOT_SEGMENT = /(?:^|\/)\.\.?(?:\/|$)/;
const replacementPath = (allowEmpty: boolean) =>
  z.string().check(
    z.maxLength(1024),
    z.superRefine((value, ctx) => {
      const problem = replacementProblem(value, allowEmpty);
      if (problem) ctx.issues.push({ code: "custom", message: problem, input: value });
    }),
  );
const replaceFullPath = replacementPath(false);
const replacePrefixMatch = replacementPath(true);

/** `replacementProblem`'s rule as a pattern, for editors (`editorHints`); the messages come from it. */
const replacementPattern = (allowEmpty: boolean) =>
  `^${allowEmpty ? "(?:" : ""}/${PATH_CHARS.source.slice(1, -1)}${allowEmpty ? ")?" : ""}$`;

function replacementProblem(value: string, allowEmpty: boolean): string | undefined {
  if (value === "" && allowEmpty) return undefined;
  if (!value.startsWith("/")) return allowEmpty ? "must be empty or start with '/'" : "must start with '/'";
  if (!PATH_CHARS.test(value)) {
    return "may use only URL path characters: letters, digits, -._~!$&'()*+,;=:@/ and %XX (no '?', '#', spaces or control characters; the query is kept as sent)";
  }
  if (DOT_SEGMENT.test(value)) return "must not contain '.' or '..' segments";
  return undefined;
}

/** Gateway API `HTTPURLRewriteFilter`, path only: a Worker cannot set `Host` (see `hostSuffix`). */
const UrlRewrite = z.strictObject({
  path: z.discriminatedUnion("type", [
    z.strictObject({ type: z.literal("ReplaceFullPath"), replaceFullPath }),
    z.strictObject({ type: z.literal("ReplacePrefixMatch"), replacePrefixMatch }),
  ]),
});

/** The most attempts a durable copy gets from the spool, and the longest wait between two. */
export const MAX_DELIVERY_ATTEMPTS = 100;
export const MAX_RETRY_DELAY_SECONDS = 3600;

/**
 * How a durable copy is retried from the spool: `maxAttempts` redeliveries (the inline send is
 * not one of them), the first `firstDelaySeconds` after the copy failed, each later wait twice
 * the one before, up to an hour. The defaults' tenth attempt comes about 85 minutes after the
 * failure, so a mirror down for an hour still gets every copy.
 */
export const Retry = z.strictObject({
  maxAttempts: z._default(intBetween(1, MAX_DELIVERY_ATTEMPTS), 10),
  firstDelaySeconds: z._default(intBetween(1, MAX_RETRY_DELAY_SECONDS), 5),
});

/** A durable mirror's retry when it sets none: the schema's own defaults, parsed once. */
export const DEFAULT_RETRY: z.output<typeof Retry> = Retry.parse({});

/**
 * `best-effort` (the default): one send, as Envoy's mirrors do. `durable`: a copy that fails in a
 * way worth retrying, or that could not finish within `waitUntil`, is spooled to a Cloudflare
 * Queue and redelivered (src/spool, mirror/redeliver).
 */
const delivery = z._default(z.enum(["best-effort", "durable"]), "best-effort");

/**
 * The release verdict's thresholds when a mirror sets none (src/verdict, docs/verdict.md): at most
 * 1 % of compared answers differ, the 5xx rate at most 1 point above the primary's, the median and
 * the 99th percentile of latency at most 1.5 times the primary's, each judged on at least 100
 * requests.
 */
export const DEFAULT_VERDICT_THRESHOLDS = {
  maxDiffRate: 0.01,
  maxErrorRateIncrease: 0.01,
  maxLatencyRatio: { p50: 1.5, p99: 1.5 },
  minSamples: 100,
} as const;

const share = (fallback: number) => z._default(z.number().check(z.minimum(0), z.maximum(1)), fallback);
const latencyRatio = (fallback: number) => z._default(z.number().check(z.positive(), z.maximum(100)), fallback);

/**
 * When the mirror's version is safe to release, judged against the primary over a window of the
 * live counters: each check fails only when its 95 % interval lies wholly above the threshold,
 * and passes only when it lies wholly below (src/verdict).
 */
export const VerdictThresholds = z.strictObject({
  /** The share of compared answers that differ (noise cancelled), from 0 to 1. */
  maxDiffRate: share(DEFAULT_VERDICT_THRESHOLDS.maxDiffRate),
  /** How far the mirror's share of 5xx answers and failures may pass the primary's, absolute (0.01 = 1 point). */
  maxErrorRateIncrease: share(DEFAULT_VERDICT_THRESHOLDS.maxErrorRateIncrease),
  /** The mirror's latency percentile over the primary's (time to response headers). */
  maxLatencyRatio: z._default(
    z.strictObject({
      p50: latencyRatio(DEFAULT_VERDICT_THRESHOLDS.maxLatencyRatio.p50),
      p99: latencyRatio(DEFAULT_VERDICT_THRESHOLDS.maxLatencyRatio.p99),
    }),
    { ...DEFAULT_VERDICT_THRESHOLDS.maxLatencyRatio },
  ),
  /** Fewer requests than this leave a check inconclusive, whatever they show. */
  minSamples: z._default(intBetween(1, 1_000_000_000), DEFAULT_VERDICT_THRESHOLDS.minSamples),
});

/** What every copy may set, whether its mirror is listed or chosen by a header. */
const copySettings = {
  timeoutMs: mirrorTimeoutMs,
  hostSuffix,
  requestHeaders: z.optional(HeaderOps),
  compare,
  /** Rewrites the copy's path (never the primary's, never a compare reference's). */
  urlRewrite: z.optional(UrlRewrite),
  delivery,
  retry: z.optional(Retry),
  /** The release verdict's thresholds; `DEFAULT_VERDICT_THRESHOLDS` when absent. */
  verdict: z.optional(VerdictThresholds),
};

/**
 * `retry` says how a durable copy is retried, so it needs `delivery: "durable"`; and a durable
 * copy is not compared, since a redelivered copy has no primary answer of its moment to be
 * compared with.
 */
const deliveryRules = z.superRefine(
  (copy: { delivery: "best-effort" | "durable"; retry?: unknown; compare?: boolean | object | undefined }, ctx) => {
    if (copy.retry !== undefined && copy.delivery !== "durable") {
      ctx.issues.push({
        code: "custom",
        message: 'applies only with delivery "durable" (a best-effort copy is sent once)',
        path: ["retry"],
        input: copy.retry,
      });
    }
    if (copy.delivery === "durable" && copy.compare !== undefined && copy.compare !== false) {
      ctx.issues.push({
        code: "custom",
        message:
          "a durable copy cannot be compared: a redelivered copy has no primary answer of its moment to be compared with; compare on a best-effort mirror",
        path: ["delivery"],
        input: copy.delivery,
      });
    }
  },
);

/**
 * Sticky sampling: the value of one header, cookie or query parameter decides, the same way on
 * every isolate, whether this mirror gets the request (see `mirror/plan`).
 */
const SampleBy = z
  .strictObject({
    header: z.optional(headerName),
    cookie: z.optional(
      z.string().check(z.maxLength(256), z.regex(TOKEN, { error: "must be a valid cookie name (RFC 6265 token)" })),
    ),
    query: z.optional(z.string().check(z.minLength(1), z.maxLength(256))),
  })
  .check(
    z.superRefine((value, ctx) => {
      if ([value.header, value.cookie, value.query].filter((name) => name !== undefined).length !== 1) {
        ctx.issues.push({ code: "custom", message: "must name exactly one of header, cookie or query", input: value });
      }
    }),
  );

/**
 * JSON Schema keywords for editors, beside checks of the schemas above that enforce the same rules
 * with messages of their own: the header names `headerChangeRefusal` refuses, a RegularExpression's
 * `ignoreCase` never `true`, a replacement path's characters, one key in `sampleBy`. `npm run schema`
 * (scripts/schema.ts) registers them before it writes schema/policy.schema.json; the worker never
 * reads them, and registered here they would bring zod's registry and these patterns into it
 * (0.34 KB gzipped).
 */
export function editorHints(): Array<[z.core.$ZodType, Record<string, unknown>]> {
  return [
    [changedHeaderName, { not: { pattern: refusedHeaderPattern() } }],
    [regexIgnoreCase, { const: false }],
    [replaceFullPath, { pattern: replacementPattern(false) }],
    [replacePrefixMatch, { pattern: replacementPattern(true) }],
    [SampleBy, { minProperties: 1, maxProperties: 1 }],
  ];
}

export const Mirror = z
  .strictObject({
    ...Target,
    percent: z.optional(z.number().check(z.minimum(0), z.maximum(100))),
    fraction: z.optional(Fraction),
    sampleBy: z.optional(SampleBy),
    ...copySettings,
  })
  .check(
    exactlyOneTarget,
    deliveryRules,
    z.superRefine((mirror, ctx) => {
      if (mirror.percent !== undefined && mirror.fraction !== undefined) {
        ctx.issues.push({
          code: "custom",
          message: "use either percent or fraction, not both",
          path: ["fraction"],
          input: mirror,
        });
      }
    }),
  );

/** The most request and answer body bytes one captured request keeps (`capture.maxBodyBytes`). */
export const MAX_CAPTURE_BODY_BYTES = 1024 * 1024;
/** What a captured request keeps of each body unless `capture.maxBodyBytes` says otherwise. */
export const DEFAULT_CAPTURE_BODY_BYTES = 64 * 1024;

/**
 * What capture hides before anything is buffered: the values of these request and answer
 * headers (besides `authorization`, `proxy-authorization`, `cookie` and `set-cookie`, always),
 * of JSON bodies under these paths, and, with `secrets`, of every header, JSON key, form field
 * and query parameter whose name looks like a secret (as in compare samples).
 */
const CaptureRedaction = z.strictObject({
  headers: z._default(z.array(headerName).check(z.maxLength(64)), []),
  jsonPaths: z._default(z.array(jsonPath).check(z.maxLength(64)), []),
  secrets: z._default(z.boolean(), true),
});

/**
 * Capture: a sample of the route's requests, with the primary's answers, recorded to R2 for
 * export (HAR, NDJSON) and replay (src/capture). Sampled like a mirror, before anything is read.
 */
export const CaptureSpec = z
  .strictObject({
    percent: z.optional(z.number().check(z.minimum(0), z.maximum(100))),
    fraction: z.optional(Fraction),
    sampleBy: z.optional(SampleBy),
    /** Each body (the request's and the answer's) is kept up to this many bytes, then marked truncated. */
    maxBodyBytes: z._default(
      z.int().check(
        z.minimum(0),
        z.maximum(MAX_CAPTURE_BODY_BYTES, {
          error: `must be ≤ ${MAX_CAPTURE_BODY_BYTES} (captured bodies are held in the isolate until their batch is written)`,
        }),
      ),
      DEFAULT_CAPTURE_BODY_BYTES,
    ),
    /** The primary's answer (status, headers, body) is recorded beside the request. */
    includeResponse: z._default(z.boolean(), true),
    redact: z._default(CaptureRedaction, CaptureRedaction.parse({})),
  })
  .check(
    z.superRefine((capture, ctx) => {
      if (capture.percent !== undefined && capture.fraction !== undefined) {
        ctx.issues.push({
          code: "custom",
          message: "use either percent or fraction, not both",
          path: ["fraction"],
          input: capture,
        });
      }
    }),
  );

export const Backend = z
  .strictObject({ ...Target, weight: z._default(intBetween(0, 1_000_000), 1) })
  .check(exactlyOneTarget);

export const MirrorFromHeader = z
  .strictObject({
    header: headerName,
    allow: z
      .array(ClusterName, {
        error: (issue) =>
          issue.input === undefined ? "is required: list the clusters a client may choose" : undefined,
      })
      .check(z.maxLength(MAX_ALLOWED_CLUSTERS)),
    ...copySettings,
  })
  .check(deliveryRules);

/**
 * A route's fields and the rules between them, its patterns not yet compiled: what the worker
 * parses stored routes with (`parseRouteFields`), leaving the patterns to its route table, which
 * compiles each once, under its snapshot's budget (`src/match`). Everything else parses `Route`.
 */
export const RouteFields = z
  .strictObject({
    id: z.string().check(z.minLength(1), z.maxLength(128), z.regex(NAME, { error: NAME_RULE })),
    priority: z._default(intBetween(-1_000_000, 1_000_000), 0),
    match: z._default(Match, Match.parse({})),
    backends: z.optional(z.array(Backend).check(z.minLength(1), z.maxLength(64))),
    timeoutMs: z._default(intBetween(1, 300_000), 15_000),
    requestHeaders: z.optional(HeaderOps),
    mirrors: z._default(z.array(Mirror).check(z.maxLength(MAX_MIRRORS_PER_ROUTE)), []),
    mirrorFromHeader: z.optional(MirrorFromHeader),
    maxMirrorBodyBytes: z._default(
      z.int().check(
        z.minimum(0),
        z.maximum(MAX_MIRROR_BODY_BYTES, {
          error: `must be ≤ ${MAX_MIRROR_BODY_BYTES} (copies are held in memory; an isolate has 128 MB)`,
        }),
      ),
      1024 * 1024,
    ),
    capture: z.optional(CaptureSpec),
  })
  .check(
    z.superRefine((route, ctx) => {
      // Gateway API: ReplacePrefixMatch replaces what a PathPrefix matched; no other match has a prefix.
      const matchType = route.match.path.type;
      if (matchType === "PathPrefix") return;
      const check = (at: PropertyKey[], copy: { urlRewrite?: UrlRewrite | undefined }) => {
        if (copy.urlRewrite?.path.type !== "ReplacePrefixMatch") return;
        ctx.issues.push({
          code: "custom",
          message: `ReplacePrefixMatch needs match.path.type PathPrefix, not ${matchType}`,
          path: [...at, "urlRewrite", "path", "type"],
          input: copy.urlRewrite,
        });
      };
      route.mirrors.forEach((mirror, i) => {
        check(["mirrors", i], mirror);
      });
      if (route.mirrorFromHeader) check(["mirrorFromHeader"], route.mirrorFromHeader);
    }),
  );

/**
 * A route, its patterns included: each must compile in edge-mirror's engine (valid, supported,
 * within the automaton's size caps), and together they may cost at most
 * `MAX_ROUTE_PATTERN_COST`. Checked whenever `match` itself is valid, beside the other fields'
 * issues, as a field's own check would be.
 */
export const Route = RouteFields.check(
  z.superRefine(
    (route, ctx) => {
      for (const issue of compileRoutePatterns(route.match).issues) {
        ctx.issues.push({ code: "custom", message: issue.message, path: issue.at, input: route.match, continue: true });
      }
    },
    { when: (payload) => isObject(payload.value) && !payload.issues.some(aboutMatch) },
  ),
);

function isObject(value: unknown): boolean {
  return typeof value === "object" && value !== null;
}

/** An issue with `match`, or with the route as a whole (an issue's path is filled in on the way up). */
function aboutMatch(issue: { path?: PropertyKey[] | undefined }): boolean {
  return issue.path === undefined || issue.path.length === 0 || issue.path[0] === "match";
}

/**
 * The most that compiling one route's patterns may cost together, in `src/regex`'s units (about
 * 0.1 µs each in workerd): any one pattern the engine accepts fits, a 65-pattern route built from
 * costly ones does not. Every new isolate compiles every route's patterns before its first
 * request; the snapshot as a whole has a budget of its own (`src/match`).
 */
export const MAX_ROUTE_PATTERN_COST = 250_000;

/** Where a pattern sits in a route, from the route: `["match", "headers", 3, "value"]`. */
type PatternPath = Array<string | number>;

/** The RegularExpression values of a route's match (path, headers, query), with where each sits. */
export function routePatterns(match: Route["match"]): Array<{ at: PatternPath; pattern: string }> {
  const found: Array<{ at: PatternPath; pattern: string }> = [];
  if (match.path.type === "RegularExpression") {
    found.push({ at: ["match", "path", "value"], pattern: match.path.value });
  }
  for (const [field, conditions] of [
    ["headers", match.headers],
    ["query", match.query],
  ] as const) {
    conditions.forEach((condition, i) => {
      if (condition.type === "RegularExpression") {
        found.push({ at: ["match", field, i, "value"], pattern: condition.value });
      }
    });
  }
  return found;
}

export interface CompiledPatterns {
  /** By pattern: a pattern used twice in one route is compiled once. */
  matchers: Map<string, DfaMatcher>;
  /** What compiling them cost, refused ones included (see `DfaMatcher.compileCost`). */
  cost: number;
  /** Patterns the engine refused, and a route past `MAX_ROUTE_PATTERN_COST`; empty when all is well. */
  issues: Array<{ at: PatternPath; message: string }>;
}

/**
 * Compiles a route's patterns, the one check of a route that costs: validation and the worker's
 * route table both compile through here, so that a pattern is refused, and a route is too
 * costly, for the same reason everywhere. Compiling stops once the route is past
 * `MAX_ROUTE_PATTERN_COST`, so that a route written around the validator costs little more.
 */
export function compileRoutePatterns(match: Route["match"]): CompiledPatterns {
  const compiled: CompiledPatterns = { matchers: new Map(), cost: 0, issues: [] };
  for (const { at, pattern } of routePatterns(match)) {
    if (compiled.matchers.has(pattern)) continue;
    try {
      const matcher = compileRegex(pattern);
      compiled.matchers.set(pattern, matcher);
      compiled.cost += matcher.compileCost;
    } catch (err) {
      if (!(err instanceof RegexError)) throw err;
      compiled.cost += err.compileCost;
      compiled.issues.push({ at, message: err.message });
    }
    if (compiled.cost > MAX_ROUTE_PATTERN_COST) {
      compiled.issues.push({
        at: ["match"],
        message: `its patterns cost more than ${MAX_ROUTE_PATTERN_COST} to compile together (${compiled.cost} by ${formatPath(at)}), and every new isolate compiles them before its first request: use fewer or simpler patterns`,
      });
      break;
    }
  }
  return compiled;
}

export const Cluster = z.strictObject({ origin: Origin });

export const PolicyFile = z.strictObject({
  $schema: z.optional(z.string()),
  clusters: z._default(z.record(ClusterName, Cluster), {}),
  routes: z._default(z.array(Route), []),
});

export type Route = z.output<typeof Route>;
export type RouteInput = z.input<typeof Route>;
export type Mirror = z.output<typeof Mirror>;
export type CompareSpec = z.output<typeof CompareSpec>;
export type Backend = z.output<typeof Backend>;
export type Cluster = z.output<typeof Cluster>;
export type HeaderOps = z.output<typeof HeaderOps>;
export type MirrorFromHeader = z.output<typeof MirrorFromHeader>;
export type SampleBy = z.output<typeof SampleBy>;
export type CaptureSpec = z.output<typeof CaptureSpec>;
export type UrlRewrite = z.output<typeof UrlRewrite>;
export type Retry = z.output<typeof Retry>;
export type VerdictThresholds = z.output<typeof VerdictThresholds>;
export type PolicyFile = z.output<typeof PolicyFile>;

/** `compare: true`: the schema's own defaults, parsed once. */
const DEFAULT_COMPARE: CompareSpec = CompareSpec.parse({});

/** The mirror's comparison settings, or undefined when it is not compared. */
export function compareSpec(mirror: Pick<Mirror, "compare">): CompareSpec | undefined {
  if (mirror.compare === undefined || mirror.compare === false) return undefined;
  return mirror.compare === true ? DEFAULT_COMPARE : mirror.compare;
}

export function parseRoute(input: unknown): Route {
  return parseWith(Route, input);
}

/** A route whose patterns the caller compiles itself, with `compileRoutePatterns` (see `RouteFields`). */
export function parseRouteFields(input: unknown): Route {
  return parseWith(RouteFields, input);
}

export function parseCluster(input: unknown): Cluster {
  return parseWith(Cluster, input);
}

export function parsePolicyFile(input: unknown): PolicyFile {
  return parseWith(PolicyFile, input);
}

function parseWith<S extends z.ZodMiniType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  throw new PolicyValidationError(result.error.issues.flatMap(toPolicyIssues));
}

/** `["routes", 1, "mirrors", 0, "percent"]` → `routes[1].mirrors[0].percent`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else {
      const name = String(key);
      out += /^[A-Za-z_$][\w$]*$/.test(name) ? (out ? `.${name}` : name) : `[${JSON.stringify(name)}]`;
    }
  }
  return out;
}

function toPolicyIssues(issue: z.core.$ZodIssue): PolicyIssue[] {
  if (issue.code === "invalid_union" && issue.errors.length > 0) return unionIssues(issue);
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({
      path: formatPath([...issue.path, key]),
      message: "unknown field",
    }));
  }
  return [{ path: formatPath(issue.path), message: describe(issue) }];
}

/**
 * A value of the right kind for one branch (`compare: {…}`) is reported with that branch's own
 * issues; a value of no branch's kind gets "must be a boolean or an object".
 */
function unionIssues(issue: z.core.$ZodIssueInvalidUnion): PolicyIssue[] {
  const atRoot = (i: z.core.$ZodIssue) =>
    i.path.length === 0 && (i.code === "invalid_type" || i.code === "invalid_value");
  const specific = issue.errors.filter((branch) => !branch.every(atRoot));
  if (specific.length === 1) {
    return (specific[0] as z.core.$ZodIssue[]).flatMap((i) =>
      toPolicyIssues({ ...i, path: [...issue.path, ...i.path] }),
    );
  }
  const kinds = issue.errors.flatMap((branch) =>
    branch.filter((i) => i.code === "invalid_type").map((i) => i.expected),
  );
  if (specific.length === 0 && kinds.length > 0) {
    return [{ path: formatPath(issue.path), message: `must be ${[...new Set(kinds)].map(article).join(" or ")}` }];
  }
  return [{ path: formatPath(issue.path), message: describe(issue) }];
}

/** Our wording for a rule; a schema may add why (`must be ≤ 10 (reason)`), and then its message wins. */
function describe(issue: z.core.$ZodIssue): string {
  const generic = genericDescription(issue);
  return issue.message.startsWith(generic) ? issue.message : generic;
}

function genericDescription(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "too_big":
      return bound(issue.origin, "at most", issue.inclusive ? "≤" : "<", issue.maximum);
    case "too_small":
      return bound(issue.origin, "at least", issue.inclusive ? "≥" : ">", issue.minimum);
    case "invalid_type":
      return issue.input === undefined
        ? "is required"
        : `must be ${article(issue.expected)}, got ${typeName(issue.input)}`;
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_union":
      if ("options" in issue && Array.isArray(issue.options)) {
        return `must be one of ${issue.options.map((v: unknown) => JSON.stringify(v)).join(", ")}`;
      }
      return "does not match any allowed shape";
    case "invalid_key":
      return `has an invalid key: ${issue.issues.map((i) => describe(i)).join("; ")}`;
    default:
      return issue.message;
  }
}

function bound(origin: string, words: string, symbol: string, limit: number | bigint): string {
  if (origin === "string") return `must be ${words} ${limit} characters`;
  if (origin === "array" || origin === "set") return `must have ${words} ${limit} items`;
  if (origin === "number" && symbol === ">" && limit === 0) return "must be > 0";
  return `must be ${symbol} ${limit}`;
}

function article(expected: string): string {
  if (expected === "int") return "an integer";
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function typeName(input: unknown): string {
  if (input === null) return "null";
  if (Array.isArray(input)) return "array";
  return typeof input;
}

/**
 * @module policy
 * The policy model: one zod schema, the single source of truth for routes, clusters and policy
 * files. Types are inferred from it; the CLI, the admin API, the JSON Schema and the worker all
 * validate through `parseRoute`, `parseCluster` and `parsePolicyFile`.
 * Vocabulary follows the Gateway API HTTPRoute (match, backends, RequestMirror).
 */
import { z } from "zod";
import { type PolicyIssue, PolicyValidationError } from "../errors/index.js";
import { regexProblem } from "./safe-regex.js";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const HOST_PATTERN = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const HEADER_VALUE = /^[^\r\n\0]*$/;

/** The largest body a Worker can receive on any plan (enterprise: 500 MB). */
export const MAX_BODY_CAP = 500 * 1024 * 1024;
/** `waitUntil` work is cancelled 30 s after the response; a mirror cannot usefully wait longer. */
export const MAX_MIRROR_TIMEOUT_MS = 30_000;
export const MAX_MIRRORS_PER_ROUTE = 16;

const safeRegex = z.string().superRefine((pattern, ctx) => {
  const problem = regexProblem(pattern);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

const headerName = z.string().max(256).regex(TOKEN, { message: "must be a valid HTTP header name (RFC 9110 token)" });

const headerValue = z.string().max(8192).regex(HEADER_VALUE, { message: "must not contain CR, LF or NUL" });

export const ClusterName = z
  .string()
  .min(1)
  .max(63)
  .regex(NAME, { message: "must start with a letter or digit and use only letters, digits, '.', '_' or '-'" });

export const Origin = z
  .string()
  .max(2048)
  .superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({ code: "custom", message: "must be an absolute URL such as https://host:8080" });
      return;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      ctx.addIssue({ code: "custom", message: `must use http or https, not ${url.protocol.slice(0, -1)}` });
    } else if (url.username || url.password) {
      ctx.addIssue({ code: "custom", message: "must not contain credentials" });
    } else if (url.pathname !== "/" || url.search || url.hash) {
      ctx.addIssue({
        code: "custom",
        message: "must be an origin only (scheme, host, port) with no path, query or fragment",
      });
    }
  });

export const HeaderOps = z
  .strictObject({
    set: z.record(headerName, headerValue).default({}),
    add: z.record(headerName, headerValue).default({}),
    remove: z.array(headerName).max(64).default([]),
  })
  .describe("HTTPRoute-style header changes: set overwrites, add appends with ',', remove deletes.");

const PathMatch = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("Exact"),
    value: z.string().max(2048).startsWith("/", { message: "must start with '/'" }),
  }),
  z.strictObject({
    type: z.literal("PathPrefix"),
    value: z.string().max(2048).startsWith("/", { message: "must start with '/'" }),
  }),
  z.strictObject({ type: z.literal("RegularExpression"), value: safeRegex }),
]);

const ValueMatch = z.strictObject({
  name: z.string().min(1).max(256),
  type: z.enum(["Exact", "RegularExpression"]).default("Exact"),
  value: z.string().max(4096),
});

const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] as const;

const Match = z.strictObject({
  hosts: z
    .array(z.string().max(253).regex(HOST_PATTERN, { message: "must be a host name, optionally starting with '*.'" }))
    .max(64)
    .default([]),
  path: PathMatch.default({ type: "PathPrefix", value: "/" }),
  methods: z.array(z.enum(HTTP_METHODS)).max(HTTP_METHODS.length).default([]),
  headers: z
    .array(ValueMatch.extend({ name: headerName }))
    .max(32)
    .default([]),
  query: z.array(ValueMatch).max(32).default([]),
});

const Fraction = z
  .strictObject({
    numerator: z.number().int().min(0),
    denominator: z.number().int().min(1).default(100),
  })
  .refine((f) => f.numerator <= f.denominator, {
    message: "numerator must be ≤ denominator",
    path: ["numerator"],
  });

const Target = {
  cluster: ClusterName.optional(),
  origin: Origin.optional(),
};

function exactlyOneTarget(value: { cluster?: string | undefined; origin?: string | undefined }, ctx: z.RefinementCtx) {
  if ((value.cluster === undefined) === (value.origin === undefined)) {
    ctx.addIssue({ code: "custom", message: "must name exactly one of cluster or origin" });
  }
}

const mirrorTimeoutMs = z.number().int().min(1).max(MAX_MIRROR_TIMEOUT_MS).default(5000);
const hostSuffix = z
  .string()
  .max(63)
  .regex(/^[A-Za-z0-9._-]*$/, { message: "may contain only letters, digits, '.', '_' or '-'" })
  .default("-shadow");

export const Mirror = z
  .strictObject({
    ...Target,
    percent: z.number().min(0).max(100).optional(),
    fraction: Fraction.optional(),
    timeoutMs: mirrorTimeoutMs,
    hostSuffix,
    requestHeaders: HeaderOps.optional(),
  })
  .superRefine((mirror, ctx) => {
    exactlyOneTarget(mirror, ctx);
    if (mirror.percent !== undefined && mirror.fraction !== undefined) {
      ctx.addIssue({ code: "custom", message: "use either percent or fraction, not both", path: ["fraction"] });
    }
  });

export const Backend = z
  .strictObject({
    ...Target,
    weight: z.number().int().min(0).max(1_000_000).default(1),
  })
  .superRefine(exactlyOneTarget);

export const MirrorFromHeader = z.strictObject({
  header: headerName,
  allow: z.array(ClusterName).max(256).optional(),
  timeoutMs: mirrorTimeoutMs,
  hostSuffix,
  requestHeaders: HeaderOps.optional(),
});

export const Route = z.strictObject({
  id: z
    .string()
    .min(1)
    .max(128)
    .regex(NAME, { message: "must start with a letter or digit and use only letters, digits, '.', '_' or '-'" }),
  priority: z.number().int().min(-1_000_000).max(1_000_000).default(0),
  match: Match.default({
    hosts: [],
    path: { type: "PathPrefix", value: "/" },
    methods: [],
    headers: [],
    query: [],
  }),
  backends: z.array(Backend).min(1).max(64).optional(),
  timeoutMs: z.number().int().min(1).max(300_000).default(15_000),
  requestHeaders: HeaderOps.optional(),
  mirrors: z.array(Mirror).max(MAX_MIRRORS_PER_ROUTE).default([]),
  mirrorFromHeader: MirrorFromHeader.optional(),
  maxMirrorBodyBytes: z
    .number()
    .int()
    .min(0)
    .max(MAX_BODY_CAP)
    .default(1024 * 1024),
});

export const Cluster = z.strictObject({ origin: Origin });

export const PolicyFile = z.strictObject({
  $schema: z.string().optional(),
  clusters: z.record(ClusterName, Cluster).default({}),
  routes: z.array(Route).default([]),
});

export type Route = z.output<typeof Route>;
export type RouteInput = z.input<typeof Route>;
export type Mirror = z.output<typeof Mirror>;
export type Backend = z.output<typeof Backend>;
export type Cluster = z.output<typeof Cluster>;
export type HeaderOps = z.output<typeof HeaderOps>;
export type MirrorFromHeader = z.output<typeof MirrorFromHeader>;
export type PolicyFile = z.output<typeof PolicyFile>;

export function parseRoute(input: unknown): Route {
  return parseWith(Route, input);
}

export function parseCluster(input: unknown): Cluster {
  return parseWith(Cluster, input);
}

export function parsePolicyFile(input: unknown): PolicyFile {
  return parseWith(PolicyFile, input);
}

function parseWith<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
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
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({
      path: formatPath([...issue.path, key]),
      message: "unknown field",
    }));
  }
  return [{ path: formatPath(issue.path), message: describe(issue) }];
}

function describe(issue: z.core.$ZodIssue): string {
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

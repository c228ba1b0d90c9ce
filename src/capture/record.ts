/**
 * @module capture/record
 * Pure: one captured request as stored (one NDJSON line in R2, one line of an NDJSON export):
 * the request as the primary was sent it, the primary's answer, when it started, how long the
 * primary took to answer, the route and the request id — redacted (capture/redact) before it
 * exists. `buildRecord` makes one from what the request path read; `parseRecord` checks one read
 * back (an export, a replay), naming the field that is wrong.
 */
import * as z from "zod/mini";
import { formatPath } from "../policy/index.js";
import { type RedactRules, redactBody, redactHeaderPairs, redactUrl } from "./redact.js";
import { type BodyEncoding, bodyText } from "./text.js";

/** The record layout's version; a reader refuses any other. */
export const RECORD_VERSION = 1;

/** A request's or an answer's body as kept. */
export interface RecordedBody {
  /** The whole body's length in bytes as it was sent, when known (declared, or read to its end). */
  size: number | null;
  /** Only the first `maxBodyBytes` were kept. */
  truncated: boolean;
  /** The kept bytes (capture/text); absent when the body was not kept (`omitted`). */
  encoding?: BodyEncoding;
  text?: string;
  /** Values in it were replaced by `[redacted]`: these are not the bytes that were sent. */
  redacted?: true;
  /** Why nothing of the body was kept. */
  omitted?: string;
}

export interface CaptureRecord {
  v: typeof RECORD_VERSION;
  /** The request id: Cloudflare's `cf-ray`, else a random UUID. */
  id: string;
  route: string;
  /** When the request reached edge-mirror, epoch milliseconds. */
  startedAt: number;
  /** From then until the primary's response headers arrived; null when the primary failed. */
  latencyMs: number | null;
  request: {
    method: string;
    /** The URL the client asked for (secret-looking query values redacted). */
    url: string;
    /** As the primary was sent them (route header changes applied), lower-cased, in order. */
    headers: Array<[string, string]>;
    /** Null for GET and HEAD, and for a request without a body. */
    body: RecordedBody | null;
    /** Header names and query parameter names whose values were redacted. */
    redacted: { headers: string[]; query: string[] };
  };
  /** The primary's answer; null when it failed (see `error`). */
  response: {
    status: number;
    headers: Array<[string, string]>;
    /** Null when the route's capture has `includeResponse: false`, or the answer had no body. */
    body: RecordedBody | null;
    redacted: { headers: string[] };
  } | null;
  /** The client's error code when the primary failed (`primary_timeout`, `primary_unreachable`). */
  error?: string;
  /** The redaction rules the record was made with: a replay applies them to the candidate too. */
  redact: { headers: string[]; jsonPaths: string[]; secrets: boolean };
}

/** What was read of a body: its first bytes, or why nothing could be. */
export type BodyPrefix =
  | { bytes: Uint8Array; truncated: boolean; size: number | null }
  | { failed: string; size: number | null };

export interface RecordParts {
  id: string;
  route: string;
  startedAt: number;
  latencyMs: number | null;
  method: string;
  url: string;
  requestHeaders: Iterable<[string, string]>;
  requestBody: BodyPrefix | null;
  response: { status: number; headers: Headers; body: BodyPrefix | null } | null;
  error?: string | undefined;
  rules: RedactRules;
}

function contentTypeOf(pairs: ReadonlyArray<[string, string]>): string | null {
  for (const [name, value] of pairs) if (name === "content-type") return value;
  return null;
}

function recordedBody(prefix: BodyPrefix, contentType: string | null, rules: RedactRules): RecordedBody {
  if ("failed" in prefix) return { size: prefix.size, truncated: false, omitted: prefix.failed };
  const kept = redactBody(prefix.bytes, contentType, prefix.truncated, rules);
  if ("omitted" in kept) return { size: prefix.size, truncated: prefix.truncated, omitted: kept.omitted };
  return {
    size: prefix.size,
    truncated: prefix.truncated,
    ...bodyText(kept.bytes),
    ...(kept.redacted ? { redacted: true as const } : {}),
  };
}

export function buildRecord(parts: RecordParts): CaptureRecord {
  const { rules } = parts;
  const url = redactUrl(parts.url, rules);
  const requestHeaders = redactHeaderPairs(parts.requestHeaders, rules);
  // Bodies are searched by the content type that was sent, before its value could be redacted.
  const requestType = contentTypeOf([...requestHeaders.pairs]);
  const record: CaptureRecord = {
    v: RECORD_VERSION,
    id: parts.id,
    route: parts.route,
    startedAt: parts.startedAt,
    latencyMs: parts.latencyMs,
    request: {
      method: parts.method,
      url: url.url,
      headers: requestHeaders.pairs,
      body: parts.requestBody ? recordedBody(parts.requestBody, requestType, rules) : null,
      redacted: { headers: requestHeaders.redacted, query: url.redacted },
    },
    response: null,
    redact: { headers: [...rules.headers], jsonPaths: [...rules.jsonPaths], secrets: rules.secrets },
  };
  if (parts.response) {
    const headers = redactHeaderPairs(parts.response.headers, rules);
    record.response = {
      status: parts.response.status,
      headers: headers.pairs,
      body: parts.response.body
        ? recordedBody(parts.response.body, parts.response.headers.get("content-type"), rules)
        : null,
      redacted: { headers: headers.redacted },
    };
  }
  if (parts.error !== undefined) record.error = parts.error;
  return record;
}

/**
 * `[name, value]` pairs: arrays of exactly two strings, rather than `z.tuple`, which no other
 * schema uses and which alone brought 0.5 KB gzipped into the worker.
 */
const headerPairs = z.array(z.array(z.string()).check(z.minLength(2), z.maxLength(2)));

const Body = z.nullable(
  z.object({
    size: z.nullable(z.int().check(z.minimum(0))),
    truncated: z.boolean(),
    encoding: z.optional(z.enum(["utf8", "base64"])),
    text: z.optional(z.string()),
    redacted: z.optional(z.literal(true)),
    omitted: z.optional(z.string()),
  }),
);

const RecordSchema = z.object({
  v: z.literal(RECORD_VERSION),
  id: z.string(),
  route: z.string(),
  startedAt: z.number().check(z.minimum(0)),
  latencyMs: z.nullable(z.number().check(z.minimum(0))),
  request: z.object({
    method: z.string().check(z.regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, { error: "must be an HTTP method" })),
    url: z.string().check(z.regex(/^https?:\/\/[^/?#]+/, { error: "must be an absolute http(s) URL" })),
    headers: headerPairs,
    body: Body,
    redacted: z.object({ headers: z.array(z.string()), query: z.array(z.string()) }),
  }),
  response: z.nullable(
    z.object({
      status: z.int().check(z.minimum(100), z.maximum(599)),
      headers: headerPairs,
      body: Body,
      redacted: z.object({ headers: z.array(z.string()) }),
    }),
  ),
  error: z.optional(z.string()),
  redact: z.object({ headers: z.array(z.string()), jsonPaths: z.array(z.string()), secrets: z.boolean() }),
});

/** A record read back, or what is wrong with it (`request.body.size: …`). */
export function parseRecord(value: unknown): { ok: true; record: CaptureRecord } | { ok: false; error: string } {
  const result = RecordSchema.safeParse(value);
  if (result.success) {
    const body = [result.data.request.body, result.data.response?.body];
    for (const b of body) {
      if (b && b.omitted === undefined && (b.encoding === undefined || b.text === undefined)) {
        return { ok: false, error: "a body has neither encoding and text nor omitted" };
      }
    }
    return { ok: true, record: result.data as CaptureRecord };
  }
  const issue = result.error.issues[0];
  return { ok: false, error: issue ? `${formatPath(issue.path) || "(record)"}: ${issue.message}` : "invalid record" };
}

/** One NDJSON line (without its newline). */
export function recordLine(record: CaptureRecord): string {
  return JSON.stringify(record);
}

/**
 * @module compare
 * Shadow testing: the mirror's (candidate's) answer against the primary's — status, selected
 * headers, and the body, structurally for JSON and byte for byte otherwise. Differences that a
 * reference replica also shows are noise. Produces a verdict and the differing fields (array
 * indexes folded) for the counters and, when the answers differ, a bounded and redacted sample
 * for the dashboard, within the size limits of compare/bounds. Noise is learned over several
 * requests and forgotten again (`NoiseMemory`); a difference that says the whole answer differs
 * is never noise. Pure apart from hashing.
 */

import { toHex } from "../hex/index.js";
import type { CompareSpec } from "../policy/index.js";
import {
  boundSample,
  clip,
  clipField,
  MAX_EXCERPT_CHARS,
  MAX_FIELD_CHARS,
  MAX_SAMPLE_PATH_CHARS,
  MAX_VALUE_CHARS,
} from "./bounds.js";
import {
  differingPaths,
  foldIndexes,
  isCovered,
  REDACTED,
  type Redaction,
  redactHeaders,
  redactJson,
  valueAt,
} from "./json.js";
import type { DiffSample, SampleSide } from "./sample.js";

export { boundSample, clipField, MAX_FIELD_CHARS, MAX_SAMPLE_BYTES, nameHash, utf8Bytes } from "./bounds.js";
export type { DiffSample, SampleDifference, SampleSide } from "./sample.js";

/** HTTP status → "2xx" … "5xx": the class a comparison holds the reference to, and the metrics' dimension. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

/** A response read within the comparison's body cap. */
export interface CapturedResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** What reading one side produced: the response, or why there is none to compare. */
export type Capture = { ok: true; response: CapturedResponse } | { ok: false; error: string };

export type Verdict = "match" | "differ" | "error";

export interface CompareSummary {
  verdict: Verdict;
  /**
   * Every differing field once, at most `MAX_REPORTED_FIELDS`: `status`, `headers.<name>`,
   * `body`, or JSON paths with array indexes folded, such as `$.items[*].id`; each at most
   * `MAX_FIELD_CHARS` long (`clipField`).
   */
  fields: string[];
  /** Fields that differ but also differ between primary and reference; folded and bounded alike. */
  noise: string[];
  /** How many distinct fields did not fit in `fields` and `noise`; counted as `(other)`. */
  overflow?: { fields: number; noise: number };
  error?: string;
}

/** Distinct (folded) fields one comparison reports; an answer that differs everywhere is still bounded. */
export const MAX_REPORTED_FIELDS = 50;

type Parsed = { json: true; value: unknown } | { json: false };

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** JSON when the content type says so or the body looks like an object or array and parses. */
export function parseBody(response: CapturedResponse): Parsed {
  const type = response.headers.get("content-type") ?? "";
  const first = response.body.find((byte) => byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09);
  if (!/json/i.test(type) && first !== 0x7b && first !== 0x5b) return { json: false };
  try {
    return { json: true, value: JSON.parse(decoder.decode(response.body)) };
  } catch {
    return { json: false };
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface Side {
  response: CapturedResponse;
  parsed: Parsed;
}

function side(response: CapturedResponse): Side {
  return { response, parsed: parseBody(response) };
}

function fieldsBetween(a: Side, b: Side, spec: CompareSpec): string[] {
  const fields: string[] = [];
  if (a.response.status !== b.response.status) fields.push("status");
  for (const name of spec.headers) {
    if (a.response.headers.get(name) !== b.response.headers.get(name)) fields.push(`headers.${name.toLowerCase()}`);
  }
  if (a.parsed.json && b.parsed.json) {
    fields.push(...differingPaths(a.parsed.value, b.parsed.value).filter((p) => !isCovered(p, spec.ignorePaths)));
  } else if (!bytesEqual(a.response.body, b.response.body)) {
    fields.push("body");
  }
  return fields;
}

export interface CompareInput {
  primary: CapturedResponse;
  candidate: CapturedResponse;
  reference?: CapturedResponse | undefined;
  spec: CompareSpec;
  /** Fields the reference showed to be noisy on earlier requests (see `NoiseMemory`). */
  knownNoise?: readonly string[];
}

export interface Comparison {
  /** `error` when the reference's answer cannot tell noise from differences (see `error`). */
  verdict: Verdict;
  /** Why the comparison is an error. */
  error?: string;
  /** Every differing field, array indexes as they are in the answers. */
  fields: string[];
  noise: string[];
  primary: Side;
  candidate: Side;
  /**
   * Every field where the reference differed from the primary on this request, indexes folded
   * and names clipped: a timestamp noisy in one element of a list is noisy in all of them.
   * Never `status`, `$` or `body`.
   */
  referenceNoise: string[];
}

/**
 * Differences that say the whole answer differs: the status, the whole JSON document (a
 * different type at the root) and a whole body compared by hash. A reference that shows one of
 * them failed or answered something else; were it noise, every difference of the candidate would
 * be cancelled with it — and a client can make a reference fail (a create that conflicts).
 */
const NEVER_NOISE: ReadonlySet<string> = new Set(["status", "$", "body"]);

/** Why the reference's answer cannot serve as a reference for this one, or undefined. */
function referenceProblem(primary: CapturedResponse, reference: CapturedResponse): string | undefined {
  const want = statusClass(primary.status);
  const got = statusClass(reference.status);
  return want === got ? undefined : `reference: answered ${got} where the primary answered ${want}`;
}

/** The name a field is counted and remembered under: indexes folded, clipped. Idempotent. */
export const countedName = (field: string) => clipField(foldIndexes(field));

export function compareResponses(input: CompareInput): Comparison {
  const primary = side(input.primary);
  const candidate = side(input.candidate);
  const problem = input.reference ? referenceProblem(input.primary, input.reference) : undefined;
  if (problem) {
    return { verdict: "error", error: problem, fields: [], noise: [], primary, candidate, referenceNoise: [] };
  }
  const referenceNoise = input.reference
    ? fieldsBetween(primary, side(input.reference), input.spec).filter((f) => !NEVER_NOISE.has(f))
    : [];
  const noiseFields = new Set([...referenceNoise, ...(input.knownNoise ?? [])]);
  for (const field of NEVER_NOISE) noiseFields.delete(field);
  const noisePaths = [...noiseFields].filter((f) => f.startsWith("$"));
  // A clipped name no longer parses as a path: a long field is found by its clipped name.
  const clippedNoise = [...noiseFields].some((f) => f.length === MAX_FIELD_CHARS);
  const isNoise = (field: string) =>
    !NEVER_NOISE.has(field) &&
    (noiseFields.has(field) ||
      isCovered(field, noisePaths) ||
      (clippedNoise && field.length > MAX_FIELD_CHARS && noiseFields.has(countedName(field))));
  const raw = fieldsBetween(primary, candidate, input.spec);
  const fields = raw.filter((f) => !isNoise(f));
  return {
    verdict: fields.length === 0 ? "match" : "differ",
    fields,
    noise: raw.filter(isNoise),
    primary,
    candidate,
    referenceNoise: [...new Set(referenceNoise.map(countedName))],
  };
}

/** Counted names, each once, in first-seen order, at most `MAX_REPORTED_FIELDS`, and how many more. */
function distinctFolded(fields: readonly string[]): { names: string[]; more: number } {
  const seen = new Set<string>();
  for (const field of fields) seen.add(countedName(field));
  const names = [...seen];
  return { names: names.slice(0, MAX_REPORTED_FIELDS), more: Math.max(0, names.length - MAX_REPORTED_FIELDS) };
}

/** What the outcome carries: the verdict and every counted field, so that counts are exact. */
export function summarizeComparison(comparison: Comparison): CompareSummary {
  const fields = distinctFolded(comparison.fields);
  const noise = distinctFolded(comparison.noise);
  return {
    verdict: comparison.verdict,
    fields: fields.names,
    noise: noise.names,
    ...(fields.more > 0 || noise.more > 0 ? { overflow: { fields: fields.more, noise: noise.more } } : {}),
    ...(comparison.error === undefined ? {} : { error: comparison.error }),
  };
}

/** Comparisons on which the reference must show a field noisy before it is noise on later requests. */
export const NOISE_OBSERVATIONS = 3;
/** How long a field stays noise after the reference last showed it noisy. */
export const NOISE_TTL_MS = 10 * 60_000;

interface NoisyField {
  /** Comparisons on which the reference showed it noisy, since it was last forgotten. */
  observations: number;
  lastNoisyAt: number;
}

export interface NoiseMemoryOptions {
  maxFieldsPerKey?: number;
  maxKeys?: number;
  now?: () => number;
}

/**
 * Noise learned across requests, per route and mirror. A timestamp that happened to agree with
 * the reference on this request is still noise because it disagreed on earlier ones — Diffy
 * judges noise over many requests for the same reason. A field is noise only once the reference
 * showed it noisy on `NOISE_OBSERVATIONS` comparisons, and is forgotten `NOISE_TTL_MS` after the
 * last, so that one odd answer teaches nothing and nothing is taught for good; `status`, `$` and
 * `body` are never learned. Bounded: a noisy array of ids must not grow it without limit.
 */
export class NoiseMemory {
  private readonly seen = new Map<string, Map<string, NoisyField>>();
  private readonly maxFieldsPerKey: number;
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(options: NoiseMemoryOptions = {}) {
    this.maxFieldsPerKey = options.maxFieldsPerKey ?? 256;
    this.maxKeys = options.maxKeys ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** The fields that are noise for `key` now. */
  known(key: string): string[] {
    const fields = this.seen.get(key);
    if (!fields) return [];
    const now = this.now();
    const noise: string[] = [];
    for (const [field, noisy] of fields) {
      if (now - noisy.lastNoisyAt > NOISE_TTL_MS) fields.delete(field);
      else if (noisy.observations >= NOISE_OBSERVATIONS) noise.push(field);
    }
    if (fields.size === 0) this.seen.delete(key);
    return noise;
  }

  /** One comparison's reference noise (`Comparison.referenceNoise`: each field once). */
  learn(key: string, fields: readonly string[]): void {
    if (fields.length === 0) return;
    const now = this.now();
    let known = this.seen.get(key);
    if (!known) {
      if (this.seen.size >= this.maxKeys) this.forget(now);
      if (this.seen.size >= this.maxKeys) return;
      known = new Map();
      this.seen.set(key, known);
    }
    let swept = false;
    for (const field of fields) {
      if (NEVER_NOISE.has(field)) continue;
      let noisy = known.get(field);
      if (noisy && now - noisy.lastNoisyAt > NOISE_TTL_MS) noisy.observations = 0;
      if (!noisy) {
        if (known.size >= this.maxFieldsPerKey && !swept) {
          swept = true;
          expire(known, now);
        }
        if (known.size >= this.maxFieldsPerKey) continue;
        noisy = { observations: 0, lastNoisyAt: now };
        known.set(field, noisy);
      }
      noisy.observations++;
      noisy.lastNoisyAt = now;
    }
  }

  /** Drops every lesson that has expired, and the keys left without one. */
  private forget(now: number): void {
    for (const [key, fields] of this.seen) {
      expire(fields, now);
      if (fields.size === 0) this.seen.delete(key);
    }
  }
}

function expire(fields: Map<string, NoisyField>, now: number): void {
  for (const [field, noisy] of fields) if (now - noisy.lastNoisyAt > NOISE_TTL_MS) fields.delete(field);
}

async function sha256(bytes: Uint8Array): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", bytes));
}

function shownValue(s: Side, field: string, spec: CompareSpec, redactedDoc: unknown): string {
  const { response } = s;
  if (field === "status") return String(response.status);
  if (field.startsWith("headers.")) {
    const name = field.slice("headers.".length);
    const value = response.headers.get(name);
    if (value === null) return "(absent)";
    return redactHeaders([[name, value]], spec.redactHeaders, spec.redactSecrets)[name] ?? REDACTED;
  }
  if (field === "body") return `${response.body.byteLength} bytes`;
  const value = valueAt(redactedDoc, field);
  return value === undefined ? "(absent)" : clip(JSON.stringify(value), MAX_VALUE_CHARS);
}

async function sampleSide(s: Side, spec: CompareSpec, redactedDoc: unknown): Promise<SampleSide> {
  const selected: Array<[string, string]> = [];
  for (const name of spec.headers) {
    const value = s.response.headers.get(name);
    if (value !== null) selected.push([name, value]);
  }
  return {
    status: s.response.status,
    headers: redactHeaders(selected, spec.redactHeaders, spec.redactSecrets),
    bodyBytes: s.response.body.byteLength,
    sha256: await sha256(s.response.body),
    excerpt: s.parsed.json ? clip(JSON.stringify(redactedDoc, null, 2), MAX_EXCERPT_CHARS) : "",
  };
}

export interface SampleContext {
  at: number;
  route: string;
  mirror: string;
  requestId: string;
  method: string;
  pathAndQuery: string;
}

/** Each counted field once, with the first path where it differs. */
function firstPaths(fields: readonly string[]): Map<string, string> {
  const first = new Map<string, string>();
  for (const path of fields) {
    const field = countedName(path);
    if (!first.has(field) && first.size < MAX_REPORTED_FIELDS) first.set(field, path);
  }
  return first;
}

/**
 * A diff sample safe to keep: values under `redactPaths`, under secret-looking keys (unless
 * `redactSecrets` is off) and in secret headers never leave here; names are clipped as the
 * counted fields are, and the whole is at most `MAX_SAMPLE_BYTES` of JSON (`boundSample`).
 */
export async function diffSample(
  comparison: Comparison,
  spec: CompareSpec,
  context: SampleContext,
): Promise<DiffSample> {
  const redaction: Redaction = { paths: spec.redactPaths, secrets: spec.redactSecrets };
  const redact = (s: Side) => (s.parsed.json ? redactJson(s.parsed.value, redaction) : undefined);
  const primaryDoc = redact(comparison.primary);
  const candidateDoc = redact(comparison.candidate);
  const queryAt = context.pathAndQuery.indexOf("?");
  const summary = summarizeComparison(comparison);
  return boundSample({
    at: context.at,
    route: context.route,
    mirror: context.mirror,
    requestId: context.requestId,
    method: context.method,
    path: clip(queryAt === -1 ? context.pathAndQuery : context.pathAndQuery.slice(0, queryAt), MAX_SAMPLE_PATH_CHARS),
    fields: summary.fields,
    noise: summary.noise,
    differences: [...firstPaths(comparison.fields)].map(([field, path]) => ({
      field,
      path,
      primary: shownValue(comparison.primary, path, spec, primaryDoc),
      candidate: shownValue(comparison.candidate, path, spec, candidateDoc),
    })),
    primary: await sampleSide(comparison.primary, spec, primaryDoc),
    candidate: await sampleSide(comparison.candidate, spec, candidateDoc),
  });
}

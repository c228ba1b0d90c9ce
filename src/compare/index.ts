/**
 * @module compare
 * Shadow testing: the mirror's (candidate's) answer against the primary's — status, selected
 * headers, and the body, structurally for JSON and byte for byte otherwise. Differences that a
 * reference replica also shows are noise. Produces a verdict for the counters and, when the
 * answers differ, a bounded and redacted sample for the dashboard. Pure apart from hashing.
 */
import type { CompareSpec } from "../policy/index.js";
import { differingPaths, isCovered, REDACTED, redactHeaders, redactJson, valueAt } from "./json.js";

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
  /** `status`, `headers.<name>`, `body`, or JSON paths such as `$.items[0].id`. */
  fields: string[];
  /** Fields that differ but also differ between primary and reference. */
  noise: string[];
  error?: string;
}

export interface SampleSide {
  status: number;
  headers: Record<string, string>;
  bodyBytes: number;
  sha256: string;
  /** Redacted, pretty JSON (clipped), or empty for bodies compared by hash. */
  excerpt: string;
}

export interface DiffSample {
  at: number;
  route: string;
  mirror: string;
  requestId: string;
  method: string;
  /** The request path without its query, which may carry secrets. */
  path: string;
  fields: string[];
  noise: string[];
  differences: Array<{ field: string; primary: string; candidate: string }>;
  primary: SampleSide;
  candidate: SampleSide;
}

export const MAX_SAMPLE_DIFFERENCES = 20;
const MAX_EXCERPT_CHARS = 4000;
const MAX_VALUE_CHARS = 200;

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

export interface Comparison extends CompareSummary {
  primary: Side;
  candidate: Side;
  /** Every field where the reference differed from the primary on this request. */
  referenceNoise: string[];
}

export function compareResponses(input: CompareInput): Comparison {
  const primary = side(input.primary);
  const candidate = side(input.candidate);
  const referenceNoise = input.reference ? fieldsBetween(primary, side(input.reference), input.spec) : [];
  const noiseFields = [...referenceNoise, ...(input.knownNoise ?? [])];
  const noisePaths = noiseFields.filter((f) => f.startsWith("$"));
  const isNoise = (field: string) => noiseFields.includes(field) || isCovered(field, noisePaths);
  const raw = fieldsBetween(primary, candidate, input.spec);
  const fields = raw.filter((f) => !isNoise(f));
  return {
    verdict: fields.length === 0 ? "match" : "differ",
    fields,
    noise: raw.filter(isNoise),
    primary,
    candidate,
    referenceNoise,
  };
}

/**
 * Noise learned across requests, per route and mirror. A timestamp that happened to agree with
 * the reference on this request is still noise because it disagreed on an earlier one — Diffy
 * judges noise over many requests for the same reason. Bounded: a noisy array of ids must not
 * grow it without limit.
 */
export class NoiseMemory {
  private readonly seen = new Map<string, Set<string>>();

  constructor(
    private readonly maxFieldsPerKey = 256,
    private readonly maxKeys = 1000,
  ) {}

  known(key: string): string[] {
    return [...(this.seen.get(key) ?? [])];
  }

  learn(key: string, fields: readonly string[]): void {
    if (fields.length === 0) return;
    let set = this.seen.get(key);
    if (!set) {
      if (this.seen.size >= this.maxKeys) return;
      set = new Set();
      this.seen.set(key, set);
    }
    for (const field of fields) {
      if (set.size >= this.maxFieldsPerKey) break;
      set.add(field);
    }
  }
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function shownValue(s: Side, field: string, spec: CompareSpec, redactedDoc: unknown): string {
  const { response } = s;
  if (field === "status") return String(response.status);
  if (field.startsWith("headers.")) {
    const name = field.slice("headers.".length);
    const value = response.headers.get(name);
    if (value === null) return "(absent)";
    return redactHeaders([[name, value]], spec.redactHeaders)[name] ?? REDACTED;
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
    headers: redactHeaders(selected, spec.redactHeaders),
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

/** A diff sample safe to keep: values under `redactPaths` and secret headers never leave here. */
export async function diffSample(
  comparison: Comparison,
  spec: CompareSpec,
  context: SampleContext,
): Promise<DiffSample> {
  const redact = (s: Side) => (s.parsed.json ? redactJson(s.parsed.value, spec.redactPaths) : undefined);
  const primaryDoc = redact(comparison.primary);
  const candidateDoc = redact(comparison.candidate);
  const queryAt = context.pathAndQuery.indexOf("?");
  return {
    at: context.at,
    route: context.route,
    mirror: context.mirror,
    requestId: context.requestId,
    method: context.method,
    path: clip(queryAt === -1 ? context.pathAndQuery : context.pathAndQuery.slice(0, queryAt), 512),
    fields: comparison.fields.slice(0, 100),
    noise: comparison.noise.slice(0, 100),
    differences: comparison.fields.slice(0, MAX_SAMPLE_DIFFERENCES).map((field) => ({
      field,
      primary: shownValue(comparison.primary, field, spec, primaryDoc),
      candidate: shownValue(comparison.candidate, field, spec, candidateDoc),
    })),
    primary: await sampleSide(comparison.primary, spec, primaryDoc),
    candidate: await sampleSide(comparison.candidate, spec, candidateDoc),
  };
}

/**
 * @module diff
 * Pure structural comparison of a primary and a candidate (mirror) response, Diffy-style:
 * JSON bodies are compared path by path, anything else by equality, and paths that also differ
 * between the primary and a reference replica are treated as noise rather than as a difference.
 */

/** A JSON path such as `$.items[2].id`. */
export type JsonPath = string;

/** Every leaf path whose value differs between `a` and `b` (including paths present in only one). */
export function differingPaths(a: unknown, b: unknown, path: JsonPath = "$"): JsonPath[] {
  if (Object.is(a, b)) return [];
  if (Array.isArray(a) && Array.isArray(b)) {
    const out: JsonPath[] = [];
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      out.push(...differingPaths(a[i], b[i], `${path}[${i}]`));
    }
    return out;
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const out: JsonPath[] = [];
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      out.push(...differingPaths(a[key], b[key], `${path}.${key}`));
    }
    return out;
  }
  return [path];
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** True when `path` is `ignored` itself or lies beneath it (`$.meta` covers `$.meta.ts`). */
export function isCovered(path: JsonPath, ignored: readonly JsonPath[]): boolean {
  return ignored.some((p) => path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`));
}

export interface CompareInput {
  primary: unknown;
  candidate: unknown;
  /** Same version as the primary: where it differs from the primary is noise. */
  reference?: unknown;
  ignorePaths?: readonly JsonPath[];
}

export interface CompareResult {
  verdict: "match" | "differ";
  /** Differences that remain after ignore lists and noise cancellation. */
  paths: JsonPath[];
  /** Differences cancelled as noise by the reference. */
  noise: JsonPath[];
}

/** Compares parsed JSON bodies, removing ignored paths and reference noise. */
export function compareJson(input: CompareInput): CompareResult {
  const ignored = input.ignorePaths ?? [];
  const noise = input.reference === undefined ? [] : differingPaths(input.primary, input.reference);
  const raw = differingPaths(input.primary, input.candidate).filter((p) => !isCovered(p, ignored));
  const paths = raw.filter((p) => !isCovered(p, noise));
  return { verdict: paths.length === 0 ? "match" : "differ", paths, noise: raw.filter((p) => isCovered(p, noise)) };
}

/** Headers never stored in a diff sample, whatever the policy says. */
const ALWAYS_REDACTED = ["authorization", "cookie", "set-cookie", "proxy-authorization"];

/** Copies headers for a diff sample, replacing secret and configured values with `[redacted]`. */
export function redactHeaders(
  headers: Iterable<[string, string]>,
  extra: readonly string[] = [],
): Record<string, string> {
  const hidden = new Set([...ALWAYS_REDACTED, ...extra.map((h) => h.toLowerCase())]);
  const out: Record<string, string> = {};
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    out[key] = hidden.has(key) ? "[redacted]" : value;
  }
  return out;
}

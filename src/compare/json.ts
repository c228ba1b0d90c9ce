/**
 * @module compare/json
 * Pure structural comparison of JSON documents, Diffy-style: documents are compared leaf by
 * leaf, paths that differ between the primary and a reference replica are noise rather than
 * differences, and ignore or redaction lists name paths with `*` for any one key or index.
 */

/** A JSON path such as `$.items[2].id` or `$["odd.key"]`. */
export type JsonPath = string;

const PLAIN_KEY = /^[A-Za-z_$][\w$-]*$/;

function step(path: JsonPath, key: string): JsonPath {
  return PLAIN_KEY.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** Every leaf path whose value differs between `a` and `b` (including paths present in only one). */
export function differingPaths(a: unknown, b: unknown, path: JsonPath = "$"): JsonPath[] {
  const out: JsonPath[] = [];
  collect(a, b, path, out);
  return out;
}

function collect(a: unknown, b: unknown, path: JsonPath, out: JsonPath[]): void {
  if (Object.is(a, b)) return;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) collect(a[i], b[i], `${path}[${i}]`, out);
    return;
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    // Sorted, so that the same two documents always list their differences in the same order.
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const key of keys) collect(a[key], b[key], step(path, key), out);
    return;
  }
  out.push(path);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

const SEGMENT = /\.([A-Za-z_$][\w$-]*|\*)|\[(\d+|\*|"(?:[^"\\]|\\.)*")\]/gy;

/** `$.a[0]["b.c"]` → `["a", "0", "b.c"]`; undefined when `path` is not a JSON path. */
export function pathSegments(path: JsonPath): string[] | undefined {
  if (!path.startsWith("$")) return undefined;
  const segments: string[] = [];
  SEGMENT.lastIndex = 1;
  while (SEGMENT.lastIndex < path.length) {
    const at = SEGMENT.lastIndex;
    const match = SEGMENT.exec(path);
    if (!match || match.index !== at) return undefined;
    const raw = match[1] ?? (match[2] as string);
    segments.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return segments;
}

/** True when `path` is `pattern` itself or lies beneath it; `*` in `pattern` matches one step. */
export function isCovered(path: JsonPath, patterns: readonly JsonPath[]): boolean {
  if (patterns.length === 0) return false;
  const segments = pathSegments(path);
  if (!segments) return false;
  return patterns.some((pattern) => {
    const wanted = pathSegments(pattern);
    if (!wanted || wanted.length > segments.length) return false;
    return wanted.every((w, i) => w === "*" || w === segments[i]);
  });
}

/** The value at `path`, or undefined when the document has nothing there. */
export function valueAt(document: unknown, path: JsonPath): unknown {
  let node = document;
  for (const segment of pathSegments(path) ?? []) {
    if (Array.isArray(node)) node = node[Number(segment)];
    else if (isPlainObject(node)) node = Object.hasOwn(node, segment) ? node[segment] : undefined;
    else return undefined;
  }
  return node;
}

export const REDACTED = "[redacted]";

/** A copy of `document` with every value under `paths` replaced by `[redacted]`. */
export function redactJson(document: unknown, paths: readonly JsonPath[], path: JsonPath = "$"): unknown {
  if (paths.length === 0) return document;
  if (isCovered(path, paths)) return REDACTED;
  if (Array.isArray(document)) return document.map((item, i) => redactJson(item, paths, `${path}[${i}]`));
  if (isPlainObject(document)) {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(document)) out[key] = redactJson(value, paths, step(path, key));
    return out;
  }
  return document;
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
    out[key] = hidden.has(key) ? REDACTED : value;
  }
  return out;
}

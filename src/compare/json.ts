/**
 * @module compare/json
 * Pure structural comparison of JSON documents, Diffy-style: documents are compared leaf by
 * leaf, paths that differ between the primary and a reference replica are noise rather than
 * differences, and ignore or redaction lists name paths with `*` for any one key or index.
 * Counted fields fold array indexes (`$.items[3].price` → `$.items[*].price`), and values under
 * keys that look like secrets are redacted by default.
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
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      if (!Object.is(a[i], b[i])) collect(a[i], b[i], `${path}[${i}]`, out);
    }
    return;
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    // Sorted, so that the same two documents always list their differences in the same order.
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const key of keys) {
      // Equal values add no path, so none is built: a key can be as long as the answer itself.
      if (!Object.is(a[key], b[key])) collect(a[key], b[key], step(path, key), out);
    }
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

// A quoted key is matched first so that a `[3]` inside a key's own text is never folded.
const INDEX_STEP = /\["(?:[^"\\]|\\.)*"\]|\[\d+\]/g;

/**
 * `$.items[3].price` → `$.items[*].price`. Counted and sampled fields name a field of every
 * element, so that one changed list is one row rather than one per index, and a field keeps its
 * name in answers of different lengths.
 */
export function foldIndexes(path: string): string {
  if (!path.includes("[")) return path;
  return path.replace(INDEX_STEP, (step) => (step.startsWith('["') ? step : "[*]"));
}

/**
 * Key names whose values are secrets (matched case-insensitively on the name alone, `-` and `_`
 * ignored): passwords, tokens, API keys, credentials, cookies, sessions and private keys.
 */
const SECRET_KEY =
  /pass(word|wd)|secret|token|apikey|authori[sz]ation|cookie|session|privatekey|credential|^(pwd|auth)$/;

export function isSecretKey(name: string): boolean {
  return SECRET_KEY.test(name.toLowerCase().replace(/[-_]/g, ""));
}

/** The value at `path`, or undefined when the document has nothing there. */
export function valueAt(document: unknown, path: JsonPath): unknown {
  let node = document;
  for (const segment of pathSegments(path) ?? []) {
    // Below a redacted value there is only the redaction.
    if (node === REDACTED) return REDACTED;
    if (Array.isArray(node)) node = node[Number(segment)];
    else if (isPlainObject(node)) node = Object.hasOwn(node, segment) ? node[segment] : undefined;
    else return undefined;
  }
  return node;
}

export const REDACTED = "[redacted]";

export interface Redaction {
  paths: readonly JsonPath[];
  /** Also every value under a key for which `isSecretKey` holds. */
  secrets: boolean;
}

/** A copy of `document` with every value under `paths` (and secret keys) replaced by `[redacted]`. */
export function redactJson(document: unknown, redaction: Redaction, path: JsonPath = "$"): unknown {
  if (redaction.paths.length === 0 && !redaction.secrets) return document;
  if (isCovered(path, redaction.paths)) return REDACTED;
  if (Array.isArray(document)) return document.map((item, i) => redactJson(item, redaction, `${path}[${i}]`));
  if (isPlainObject(document)) {
    // Keys come from the answers: fromEntries defines them, so "__proto__" stays an ordinary
    // key, and the copy stays a plain object that RPC can clone.
    return Object.fromEntries(
      Object.entries(document).map(([key, value]) => [
        key,
        redaction.secrets && isSecretKey(key) ? REDACTED : redactJson(value, redaction, step(path, key)),
      ]),
    );
  }
  return document;
}

/** Headers never stored in a diff sample, whatever the policy says. */
export const ALWAYS_REDACTED: readonly string[] = ["authorization", "cookie", "set-cookie", "proxy-authorization"];

/**
 * Copies headers for a diff sample, replacing secret and configured values with `[redacted]`;
 * with `secrets`, also headers whose names look like secrets (`x-api-key`, `x-session-id`).
 */
export function redactHeaders(
  headers: Iterable<[string, string]>,
  extra: readonly string[] = [],
  secrets = false,
): Record<string, string> {
  const hidden = new Set([...ALWAYS_REDACTED, ...extra.map((h) => h.toLowerCase())]);
  const out = new Map<string, string>();
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    out.set(key, hidden.has(key) || (secrets && isSecretKey(key)) ? REDACTED : value);
  }
  return Object.fromEntries(out);
}

/**
 * @module capture/redact
 * Pure: what capture hides before a record is kept. Header values of `authorization`,
 * `proxy-authorization`, `cookie` and `set-cookie` always, of the route's `redact.headers`, and
 * with `redact.secrets` (the default) of every header whose name looks like a secret; with
 * `secrets`, the values of query parameters and form fields with such names; in JSON bodies, the
 * values under `redact.jsonPaths` and, with `secrets`, under secret-looking keys — the rules of
 * compare samples (src/compare/json), so that what one hides the other hides too. Anything
 * redacted is `[redacted]`. A body is rewritten only when something in it was redacted; one that
 * cannot be searched (JSON cut at the size cap, or not parseable) is not kept at all.
 */
import { ALWAYS_REDACTED, isSecretKey, REDACTED, redactJson } from "../compare/json.js";

export interface RedactRules {
  headers: readonly string[];
  jsonPaths: readonly string[];
  secrets: boolean;
}

/** A redacted value in a URL query or a form body: `[redacted]`, percent-encoded. */
const ENCODED_REDACTED = encodeURIComponent(REDACTED);

/** The header names whose values are always hidden, with the route's own. */
export function hiddenHeaders(rules: RedactRules): ReadonlySet<string> {
  return new Set([...ALWAYS_REDACTED, ...rules.headers.map((h) => h.toLowerCase())]);
}

/** Header pairs in order, names lower-cased, secret values replaced; and which names were. */
export function redactHeaderPairs(
  headers: Iterable<[string, string]>,
  rules: RedactRules,
  hidden: ReadonlySet<string> = hiddenHeaders(rules),
): { pairs: Array<[string, string]>; redacted: string[] } {
  const pairs: Array<[string, string]> = [];
  const redacted: string[] = [];
  for (const [rawName, value] of headers) {
    const name = rawName.toLowerCase();
    if (hidden.has(name) || (rules.secrets && isSecretKey(name))) {
      pairs.push([name, REDACTED]);
      if (!redacted.includes(name)) redacted.push(name);
    } else {
      pairs.push([name, value]);
    }
  }
  return { pairs, redacted };
}

/** A form or query name as the application reads it; the raw text when it does not decode. */
function decodedName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    return raw;
  }
}

/**
 * `a=1&token=x&b` with secret-looking names' values replaced, every other byte kept; and the
 * names that were. Used for query strings and form bodies.
 */
export function redactPairs(text: string): { text: string; redacted: string[] } {
  const redacted: string[] = [];
  const parts = text.split("&");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    const eq = part.indexOf("=");
    const name = decodedName(eq === -1 ? part : part.slice(0, eq));
    if (eq === -1 || !isSecretKey(name)) continue;
    parts[i] = `${part.slice(0, eq)}=${ENCODED_REDACTED}`;
    if (!redacted.includes(name)) redacted.push(name);
  }
  return redacted.length === 0 ? { text, redacted } : { text: parts.join("&"), redacted };
}

/** The URL with secret-looking query parameters' values replaced (with `secrets` only). */
export function redactUrl(url: string, rules: RedactRules): { url: string; redacted: string[] } {
  const queryAt = url.indexOf("?");
  if (!rules.secrets || queryAt === -1) return { url, redacted: [] };
  const hashAt = url.indexOf("#", queryAt);
  const query = hashAt === -1 ? url.slice(queryAt + 1) : url.slice(queryAt + 1, hashAt);
  const { text, redacted } = redactPairs(query);
  if (redacted.length === 0) return { url, redacted };
  return { url: `${url.slice(0, queryAt + 1)}${text}${hashAt === -1 ? "" : url.slice(hashAt)}`, redacted };
}

export type RedactedBody = { bytes: Uint8Array; redacted: boolean } | { omitted: string };

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const utf8 = new TextEncoder();

function firstByte(bytes: Uint8Array): number | undefined {
  return bytes.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09);
}

/** The content type says JSON. */
function declaredJson(contentType: string | null): boolean {
  return contentType !== null && /json/i.test(contentType);
}

/** JSON when the content type says so, or when the body starts like an object or an array. */
export function looksLikeJson(contentType: string | null, bytes: Uint8Array): boolean {
  if (declaredJson(contentType)) return true;
  const first = firstByte(bytes);
  return first === 0x7b || first === 0x5b;
}

/**
 * The body as text when it is UTF-8; a body cut at the cap may end inside a character, whose
 * first bytes are dropped for the check.
 */
function utf8Text(bytes: Uint8Array, truncated: boolean): string | undefined {
  for (let drop = 0; drop <= (truncated ? 3 : 0) && drop < bytes.byteLength; drop++) {
    try {
      return strictUtf8.decode(bytes.subarray(0, bytes.byteLength - drop));
    } catch {
      // Not UTF-8 (yet): try without the last bytes of a cut body.
    }
  }
  return undefined;
}

function isForm(contentType: string | null): boolean {
  return contentType !== null && /^\s*application\/x-www-form-urlencoded/i.test(contentType);
}

/**
 * A body as capture keeps it. JSON is searched whole, so a JSON body that was cut at the cap or
 * does not parse is not kept when any JSON rule applies: a secret in it could not be found. A
 * body that only starts like JSON (no JSON content type) and is not UTF-8 is binary, kept as is.
 */
export function redactBody(
  bytes: Uint8Array,
  contentType: string | null,
  truncated: boolean,
  rules: RedactRules,
): RedactedBody {
  const jsonRules = rules.secrets || rules.jsonPaths.length > 0;
  if (jsonRules && bytes.byteLength > 0 && looksLikeJson(contentType, bytes)) {
    const text = utf8Text(bytes, truncated);
    if (text === undefined && !declaredJson(contentType)) return { bytes, redacted: false };
    if (truncated) return { omitted: "JSON cut at maxBodyBytes cannot be searched for secrets" };
    let document: unknown;
    try {
      document = JSON.parse(text as string);
    } catch {
      return { omitted: "a body that looks like JSON but does not parse cannot be searched for secrets" };
    }
    const redacted = JSON.stringify(redactJson(document, { paths: rules.jsonPaths, secrets: rules.secrets }));
    // Only a body in which something was hidden is rewritten: any other keeps its bytes.
    return redacted === JSON.stringify(document)
      ? { bytes, redacted: false }
      : { bytes: utf8.encode(redacted), redacted: true };
  }
  if (rules.secrets && isForm(contentType)) {
    let text: string;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      return { omitted: "a form body that is not UTF-8 cannot be searched for secrets" };
    }
    const form = redactPairs(text);
    return form.redacted.length === 0 ? { bytes, redacted: false } : { bytes: utf8.encode(form.text), redacted: true };
  }
  return { bytes, redacted: false };
}

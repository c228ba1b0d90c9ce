/**
 * @module url
 * Pure: the two forms of a request's path that edge-mirror works with. `rawPathAndQuery` is the
 * path and query exactly as the client sent them, for whatever is forwarded (the primary, the
 * copies); `normalizePath` is the form that decides things (which route matches, whether a request
 * is the admin surface's), so that every spelling of one URI is decided alike.
 */

/** `https://h:1/a%2Fb?x=1#f` → `/a%2Fb?x=1`, copied from the URL string rather than re-serialised. */
export function rawPathAndQuery(url: string): string {
  const afterScheme = url.indexOf("//") + 2;
  const pathAt = url.indexOf("/", afterScheme);
  const queryAt = url.indexOf("?", afterScheme);
  const start = pathAt === -1 ? queryAt : queryAt === -1 ? pathAt : Math.min(pathAt, queryAt);
  if (start === -1) return "/";
  const hashAt = url.indexOf("#", start);
  const tail = hashAt === -1 ? url.slice(start) : url.slice(start, hashAt);
  return tail.startsWith("/") ? tail : `/${tail}`;
}

const ESCAPE = /%[0-9A-Fa-f]{2}/g;

/**
 * A URL parser's pathname (dot segments already resolved, `%2e` ones included) in RFC 3986's
 * normal form: percent-encoded unreserved characters decoded (§6.2.2.2: `/%70ay` and `/pay` are
 * the same URI, and origins route them alike) and the hex digits of the other escapes upper-cased
 * (§6.2.2.1). An encoded reserved character stays encoded: `/pay%2Ftransfer` is one segment, not
 * `/pay/transfer`. Invalid escapes (`%`, `%zz`) are left as they are, and bytes above ASCII are
 * never decoded, so that no UTF-8 is ever interpreted. A path without `%` is returned as it is,
 * with nothing allocated: most requests pay one `indexOf`.
 */
export function normalizePath(path: string): string {
  if (path.indexOf("%") === -1) return path;
  return path.replace(ESCAPE, normalizeEscape);
}

/** RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~". */
const UNRESERVED = /^[A-Za-z0-9._~-]$/;

function normalizeEscape(encoded: string): string {
  const char = String.fromCharCode(Number.parseInt(encoded.slice(1), 16));
  return UNRESERVED.test(char) ? char : encoded.toUpperCase();
}

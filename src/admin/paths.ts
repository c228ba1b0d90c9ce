/**
 * @module admin/paths
 * Which requests belong to the admin surface. The decision and the path the admin app then sees
 * come from one form of the path: the URL parser's (dot segments resolved) with percent-encoded
 * unreserved characters decoded — RFC 3986 §6.2.2.2 makes `/%5F%5Fmirror` and `/__mirror` the
 * same URI, so both are the admin surface, behind the same auth, and neither is ever proxied.
 * An encoded reserved character is not decoded: `/__mirror%2Fapi` is one segment, and proxied.
 */

const UNRESERVED = /^[A-Za-z0-9._~-]$/;

function decodeUnreserved(path: string): string {
  return path.replace(/%[0-9A-Fa-f]{2}/g, (encoded) => {
    const char = String.fromCharCode(Number.parseInt(encoded.slice(1), 16));
    return UNRESERVED.test(char) ? char : encoded;
  });
}

/** True for the prefix itself and anything below it (segment-aware). */
export function isAdminPath(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

/** The path as `request.url` spells it, without parsing the whole URL. */
function spelledPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return "/";
  const end = url.slice(start).search(/[?#]/);
  return end === -1 ? url.slice(start) : url.slice(start, start + end);
}

/**
 * The request re-targeted at the admin app (its path relative to the prefix), or undefined when
 * it is not an admin request.
 */
export function adminRequest(request: Request, prefix: string): Request | undefined {
  const spelled = spelledPath(request.url);
  // Most requests are proxied traffic: without an escape, a backslash or a dot segment the
  // spelled path is already the normal form, and a string comparison decides.
  if (!/[%\\]|\/\./.test(spelled) && !isAdminPath(spelled, prefix)) return undefined;
  const url = new URL(request.url);
  const path = decodeUnreserved(url.pathname);
  if (!isAdminPath(path, prefix)) return undefined;
  url.pathname = path.slice(prefix.length) || "/";
  return new Request(url, request);
}

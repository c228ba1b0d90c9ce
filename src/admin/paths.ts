/**
 * @module admin/paths
 * Which requests belong to the admin surface. The decision and the path the admin app then sees
 * come from one form of the path, the one routes are matched on (`normalizePath`): the URL parser's
 * (dot segments resolved) with percent-encoded unreserved characters decoded — RFC 3986 §6.2.2.2
 * makes `/%5F%5Fmirror` and `/__mirror` the same URI, so both are the admin surface, behind the
 * same auth, and neither is ever proxied. An encoded reserved character is not decoded:
 * `/__mirror%2Fapi` is one segment, and proxied.
 * With `ADMIN_HOST` set, only requests to that host are the admin surface; under any other host
 * the prefix is a path like any other, and proxied.
 */
import { normalizePath } from "../url/index.js";

/** True for the prefix itself and anything below it (segment-aware). */
export function isAdminPath(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(`${prefix}/`);
}

const SLASH = 47;
const DOT = 46;
const PERCENT = 37;
const BACKSLASH = 92;
const QUERY = 63;
const HASH = 35;

/**
 * Whether the path as `url` spells it might name the admin surface: it starts with the prefix,
 * or it holds an escape, a backslash or a dot segment that the URL parser may turn into it.
 * For the zone's own traffic that is one scan of the path, with nothing allocated.
 */
function mayBeAdmin(url: string, prefix: string): boolean {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start === -1) return false;
  if (url.startsWith(prefix, start)) return true;
  for (let i = start + 1; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === QUERY || c === HASH) return false;
    if (c === PERCENT || c === BACKSLASH || (c === DOT && url.charCodeAt(i - 1) === SLASH)) return true;
  }
  return false;
}

/** Whether `url`'s host is `host` (both lower case, as the URL parser leaves a host). Nothing allocated. */
function onHost(url: string, host: string): boolean {
  const start = url.indexOf("//") + 2;
  return url.startsWith(host, start) && url.charCodeAt(start + host.length) === SLASH;
}

/**
 * The request re-targeted at the admin app (its path relative to the prefix), or undefined when
 * it is not an admin request: not under the prefix, or (with `host`, from ADMIN_HOST) not on it.
 */
export function adminRequest(request: Request, prefix: string, host?: string): Request | undefined {
  const href = request.url;
  // Most requests are proxied traffic and leave here.
  if (host !== undefined && !onHost(href, host)) return undefined;
  if (!mayBeAdmin(href, prefix)) return undefined;
  const url = new URL(href);
  const path = normalizePath(url.pathname);
  if (!isAdminPath(path, prefix)) return undefined;
  url.pathname = path.slice(prefix.length) || "/";
  return new Request(url, request);
}

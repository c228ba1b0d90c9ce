/**
 * @module mirror/rewrite
 * Gateway API `HTTPURLRewriteFilter` path modifiers, applied to copies only. Pure string work.
 * `ReplacePrefixMatch` works on the path the route matched: its normal form (`normalizePath`),
 * which RFC 3986 makes the same URI as the path received, so `/%70ay/x` under the prefix `/pay`
 * is rewritten as `/pay/x` is. What is not replaced keeps its bytes but for that normalisation,
 * and the query string follows untouched.
 */
import { normalizePath } from "../url/index.js";

/** A copy's path change; `prefix` is the route's `PathPrefix` value that `ReplacePrefixMatch` replaces. */
export type PathRewrite = { replaceFullPath: string } | { replacePrefixMatch: string; prefix: string };

const SLASH = 0x2f;

/** `pathAndQuery` (`/path?query`, as received) with its path rewritten and its query kept byte for byte. */
export function rewritePathAndQuery(pathAndQuery: string, rewrite: PathRewrite): string {
  const queryAt = pathAndQuery.indexOf("?");
  const path = queryAt === -1 ? pathAndQuery : pathAndQuery.slice(0, queryAt);
  const query = queryAt === -1 ? "" : pathAndQuery.slice(queryAt);
  if ("replaceFullPath" in rewrite) return rewrite.replaceFullPath + query;
  return replacePrefixMatch(path, rewrite.prefix, rewrite.replacePrefixMatch) + query;
}

/**
 * Replaces the whole segments of `path` (in its normal form) that `prefix` matched with
 * `replacement`; a trailing `/` on the prefix or the replacement is ignored, one on the path is
 * kept (`/foo/` → `/xyz/`), and an empty result is `/` — the Gateway API's table of examples, row
 * for row.
 */
export function replacePrefixMatch(path: string, prefix: string, replacement: string): string {
  const matched = normalizePath(path);
  const rest = matched.slice(matchedPrefixEnd(matched, normalizePath(prefix)));
  let end = replacement.length;
  while (end > 0 && replacement.charCodeAt(end - 1) === SLASH) end--;
  const rewritten = replacement.slice(0, end) + rest;
  return rewritten === "" ? "/" : rewritten;
}

/**
 * Where the part of `path` that `prefix` matched ends: after its last segment, at the end of the
 * path or at a `/`. Empty segments are skipped as the matcher skips them (`/foo//bar`). Segments
 * are compared without regard to case: the route matched already, and one with `ignoreCase`
 * matched `/PAY/x` under `/pay`; only where its prefix ends is sought here.
 */
function matchedPrefixEnd(path: string, prefix: string): number {
  let at = 0;
  for (const segment of prefix.split("/")) {
    if (segment === "") continue;
    while (path.charCodeAt(at) === SLASH) at++;
    const end = at + segment.length;
    const same = path.slice(at, end).toLowerCase() === segment.toLowerCase();
    if (!same || (end < path.length && path.charCodeAt(end) !== SLASH)) {
      throw new Error(`path does not start with the route's prefix ${prefix}`);
    }
    at = end;
  }
  return at;
}

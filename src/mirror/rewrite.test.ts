import { describe, expect, it } from "vitest";
import { replacePrefixMatch, rewritePathAndQuery } from "./rewrite.js";

/** The Gateway API's HTTPPathModifier table, every row: request path, prefix match, replacement, result. */
const GATEWAY_API_EXAMPLES = [
  ["/foo/bar", "/foo", "/xyz", "/xyz/bar"],
  ["/foo/bar", "/foo", "/xyz/", "/xyz/bar"],
  ["/foo/bar", "/foo/", "/xyz", "/xyz/bar"],
  ["/foo/bar", "/foo/", "/xyz/", "/xyz/bar"],
  ["/foo", "/foo", "/xyz", "/xyz"],
  ["/foo/", "/foo", "/xyz", "/xyz/"],
  ["/foo/bar", "/foo", "", "/bar"],
  ["/foo/", "/foo", "", "/"],
  ["/foo", "/foo", "", "/"],
  ["/foo/", "/foo", "/", "/"],
  ["/foo", "/foo", "/", "/"],
] as const;

const MORE_EXAMPLES = [
  ["/api/v1/users/7", "/api/v1", "/v2", "/v2/users/7"],
  ["/users/7", "/", "/v2", "/v2/users/7"],
  ["/", "/", "/v2", "/v2/"],
  ["/a/b/c/d", "/a/b", "/x/y/z", "/x/y/z/c/d"],
  // The part not replaced keeps its bytes: escapes, doubled slashes, a trailing slash.
  ["/foo/a%2Fb/%E2%9C%93/", "/foo", "/xyz", "/xyz/a%2Fb/%E2%9C%93/"],
  ["/foo//bar", "/foo", "/xyz", "/xyz//bar"],
  ["//foo/bar", "/foo", "/xyz", "/xyz/bar"],
  // The path the route matched is the normal form: encoded unreserved characters are decoded,
  // wherever they are, and the other escapes are kept with their hex upper-cased.
  ["/f%6Fo/bar", "/f%6Fo", "/xyz", "/xyz/bar"],
  ["/%70ay/transfer", "/pay", "/audit", "/audit/transfer"],
  ["/pay/%74ransfer/a%2fb", "/pay", "/audit", "/audit/transfer/a%2Fb"],
  ["/p%61y/x", "/%70ay", "/audit", "/audit/x"],
  // A route with ignoreCase matched /PAY/transfer under /pay: the prefix ends where it does.
  ["/PAY/transfer", "/pay", "/audit", "/audit/transfer"],
  ["/%50ay/Transfer", "/pay", "", "/Transfer"],
] as const;

describe("ReplacePrefixMatch", () => {
  it.each([...GATEWAY_API_EXAMPLES, ...MORE_EXAMPLES])(
    "%s with prefix %s and replacement %j → %s",
    (path, prefix, replacement, expected) => {
      expect(replacePrefixMatch(path, prefix, replacement)).toBe(expected);
    },
  );

  it.each([
    ["/foobar", "/foo"],
    ["/fo", "/foo"],
    ["/bar/foo", "/foo"],
    ["/foo%2Fbar", "/foo"],
  ])("refuses %s, which prefix %s does not match", (path, prefix) => {
    expect(() => replacePrefixMatch(path, prefix, "/xyz")).toThrow(
      `path does not start with the route's prefix ${prefix}`,
    );
  });
});

describe("rewritePathAndQuery", () => {
  it("keeps the query string byte for byte", () => {
    const rewrite = { replacePrefixMatch: "/v2", prefix: "/api/v1" };
    expect(rewritePathAndQuery("/api/v1/search?q=a%20b&q=%2F&flag&x=1?y=2", rewrite)).toBe(
      "/v2/search?q=a%20b&q=%2F&flag&x=1?y=2",
    );
    expect(rewritePathAndQuery("/api/v1?", rewrite)).toBe("/v2?");
    expect(rewritePathAndQuery("/%61pi/v1/x?%61=%2f", rewrite)).toBe("/v2/x?%61=%2f");
  });

  it("replaces the full path and keeps the query", () => {
    const rewrite = { replaceFullPath: "/shadow/sink" };
    expect(rewritePathAndQuery("/anything/at/all?b=2&a=1", rewrite)).toBe("/shadow/sink?b=2&a=1");
    expect(rewritePathAndQuery("/x", rewrite)).toBe("/shadow/sink");
  });
});

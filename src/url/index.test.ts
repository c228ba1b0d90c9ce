import { describe, expect, it } from "vitest";
import { normalizePath, rawPathAndQuery } from "./index.js";

describe("rawPathAndQuery", () => {
  it.each([
    ["https://h.test/a%2Fb/%7Euser?x=1&x=2&y=%20#frag", "/a%2Fb/%7Euser?x=1&x=2&y=%20"],
    ["https://h.test:8443/", "/"],
    ["https://h.test?q=1", "/?q=1"],
    ["http://[::1]:8787/api/v1/push", "/api/v1/push"],
    ["https://h.test/p?redirect=https://other.test/x", "/p?redirect=https://other.test/x"],
    ["https://h.test/%70ay/transfer?%70=1", "/%70ay/transfer?%70=1"],
  ])("%s → %s", (url, expected) => {
    expect(rawPathAndQuery(url)).toBe(expected);
  });
});

describe("normalizePath", () => {
  it.each([
    ["/%70ay/transfer", "/pay/transfer"],
    ["/%70%61%79/%74ransfer", "/pay/transfer"],
    ["/%5F%5Fmirror/api", "/__mirror/api"],
    ["/a%2Db%2Ec%5Fd%7Ee%41%5A%30%39", "/a-b.c_d~eAZ09"],
    ["/%7e%5f", "/~_"],
  ])("decodes the unreserved escapes of %s", (path, expected) => {
    expect(normalizePath(path)).toBe(expected);
  });

  it.each([
    ["/pay%2Ftransfer", "/pay%2Ftransfer"],
    ["/pay%2ftransfer", "/pay%2Ftransfer"],
    ["/a%3fb%23c%25d%20e%3Bf", "/a%3Fb%23c%25d%20e%3Bf"],
    ["/%e2%9c%93", "/%E2%9C%93"],
  ])("keeps reserved and non-ASCII escapes encoded, hex upper-cased: %s", (path, expected) => {
    expect(normalizePath(path)).toBe(expected);
  });

  it("decodes once: an escaped percent sign stays one", () => {
    expect(normalizePath("/%2570ay")).toBe("/%2570ay");
  });

  it.each(["/%", "/%Z1", "/%7", "/a%", "/%%70"])("leaves the invalid escape in %s as it is", (path) => {
    expect(normalizePath(path)).toBe(path.replace("%70", "p"));
  });

  it("never decodes bytes above ASCII, valid UTF-8 or not", () => {
    for (const path of ["/%C3%28", "/%ED%A0%80", "/%FF%FE", "/%E2%82"]) expect(normalizePath(path)).toBe(path);
  });

  it("returns a path without escapes as it is", () => {
    const path = "/api/v1/users/Ada";
    expect(normalizePath(path)).toBe(path);
  });

  it("gives every spelling of one URI one form", () => {
    const spellings = ["/pay%2Fx", "/%70ay%2fx", "/%70%61%79%2Fx", "/p%61y%2fx"];
    expect(new Set(spellings.map(normalizePath))).toEqual(new Set(["/pay%2Fx"]));
  });
});

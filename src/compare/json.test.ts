import { describe, expect, it } from "vitest";
import { compareJson, differingPaths, isCovered, redactHeaders } from "./index";

describe("differingPaths", () => {
  it("finds nothing in equal documents", () => {
    expect(differingPaths({ a: [1, { b: "x" }] }, { a: [1, { b: "x" }] })).toEqual([]);
  });

  it("names changed, added and removed leaves", () => {
    expect(differingPaths({ a: 1, b: [1, 2], c: true }, { a: 2, b: [1], d: null })).toEqual([
      "$.a",
      "$.b[1]",
      "$.c",
      "$.d",
    ]);
  });

  it("reports a type change at the node where it happens", () => {
    expect(differingPaths({ a: { b: 1 } }, { a: [1] })).toEqual(["$.a"]);
  });
});

describe("isCovered", () => {
  it("covers a path and its descendants only", () => {
    expect(isCovered("$.meta.ts", ["$.meta"])).toBe(true);
    expect(isCovered("$.meta[0]", ["$.meta"])).toBe(true);
    expect(isCovered("$.metadata", ["$.meta"])).toBe(false);
  });
});

describe("compareJson", () => {
  it("matches when only ignored paths differ", () => {
    const result = compareJson({ primary: { v: 1, at: 5 }, candidate: { v: 1, at: 6 }, ignorePaths: ["$.at"] });
    expect(result).toEqual({ verdict: "match", paths: [], noise: [] });
  });

  it("cancels as noise what also differs between primary and reference", () => {
    const result = compareJson({
      primary: { id: "r1", total: 3 },
      reference: { id: "r2", total: 3 },
      candidate: { id: "r3", total: 4 },
    });
    expect(result).toEqual({ verdict: "differ", paths: ["$.total"], noise: ["$.id"] });
  });
});

describe("redactHeaders", () => {
  it("hides authorization, cookie and configured headers, keeps the rest", () => {
    const headers: [string, string][] = [
      ["Authorization", "Bearer s3cret"],
      ["cookie", "sid=1"],
      ["X-Api-Key", "k"],
      ["content-type", "application/json"],
    ];
    expect(redactHeaders(headers, ["x-api-key"])).toEqual({
      authorization: "[redacted]",
      cookie: "[redacted]",
      "x-api-key": "[redacted]",
      "content-type": "application/json",
    });
  });
});

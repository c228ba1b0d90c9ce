import { describe, expect, it } from "vitest";
import {
  differingPaths,
  foldIndexes,
  isCovered,
  isSecretKey,
  pathSegments,
  REDACTED,
  redactHeaders,
  redactJson,
  valueAt,
} from "./json.js";

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

  it("quotes keys that are not plain names, so that every path parses back", () => {
    const paths = differingPaths({ "a.b": 1, "x y": { '"q"': 1 } }, { "a.b": 2, "x y": { '"q"': 2 } });
    expect(paths).toEqual(['$["a.b"]', '$["x y"]["\\"q\\""]']);
    expect(paths.map(pathSegments)).toEqual([["a.b"], ["x y", '"q"']]);
  });
});

describe("pathSegments", () => {
  it("splits keys, indexes and wildcards; refuses what is not a path", () => {
    expect(pathSegments("$.items[2].id")).toEqual(["items", "2", "id"]);
    expect(pathSegments("$.items[*].*")).toEqual(["items", "*", "*"]);
    expect(pathSegments("$")).toEqual([]);
    expect(pathSegments("items.id")).toBeUndefined();
    expect(pathSegments("$.a..b")).toBeUndefined();
  });
});

describe("isCovered", () => {
  it("covers a path and its descendants only", () => {
    expect(isCovered("$.meta.ts", ["$.meta"])).toBe(true);
    expect(isCovered("$.meta[0]", ["$.meta"])).toBe(true);
    expect(isCovered("$.metadata", ["$.meta"])).toBe(false);
    expect(isCovered("$.meta", ["$.meta.ts"])).toBe(false);
  });

  it("lets * stand for any one key or index", () => {
    expect(isCovered("$.items[7].ts", ["$.items[*].ts"])).toBe(true);
    expect(isCovered("$.items[7].id", ["$.items[*].ts"])).toBe(false);
    expect(isCovered("$.a.b.c", ["$.*.b"])).toBe(true);
    expect(isCovered('$["odd key"].ts', ['$["odd key"]'])).toBe(true);
  });
});

describe("valueAt and redactJson", () => {
  const doc = { user: { email: "a@b.c", name: "A" }, items: [{ token: "t1" }, { token: "t2" }] };

  it("reads the value at a path, or undefined", () => {
    expect(valueAt(doc, "$.items[1].token")).toBe("t2");
    expect(valueAt(doc, "$.items[5].token")).toBeUndefined();
    expect(valueAt(doc, "$.user.email.x")).toBeUndefined();
  });

  it("replaces every value under the redacted paths and leaves the input alone", () => {
    const redacted = redactJson(doc, { paths: ["$.user.email", "$.items[*].token"], secrets: false });
    expect(redacted).toEqual({
      user: { email: REDACTED, name: "A" },
      items: [{ token: REDACTED }, { token: REDACTED }],
    });
    expect(doc.user.email).toBe("a@b.c");
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
      authorization: REDACTED,
      cookie: REDACTED,
      "x-api-key": REDACTED,
      "content-type": "application/json",
    });
  });
});

describe("foldIndexes", () => {
  it("folds every array index, and nothing inside a quoted key", () => {
    expect(foldIndexes("$.items[3].price")).toBe("$.items[*].price");
    expect(foldIndexes("$[0][12].a")).toBe("$[*][*].a");
    expect(foldIndexes('$["a[3]"][4]')).toBe('$["a[3]"][*]');
    expect(foldIndexes('$["x\\"]"][1]')).toBe('$["x\\"]"][*]');
    expect(foldIndexes("headers.content-type")).toBe("headers.content-type");
    expect(foldIndexes("status")).toBe("status");
  });

  it("gives a path that still parses and covers every index it stands for", () => {
    const folded = foldIndexes("$.items[7].tags[2]");
    expect(pathSegments(folded)).toEqual(["items", "*", "tags", "*"]);
    expect(isCovered("$.items[0].tags[9]", [folded])).toBe(true);
  });
});

describe("secret keys", () => {
  it("match key names that look like secrets, whatever their case or separators", () => {
    for (const key of [
      "password",
      "Passwd",
      "token",
      "access_token",
      "refreshToken",
      "client_secret",
      "api_key",
      "apiKey",
      "API-KEY",
      "x-api-key",
      "Authorization",
      "private_key",
      "cookie",
      "session",
      "sessionId",
      "credentials",
      "pwd",
    ]) {
      expect(isSecretKey(key), key).toBe(true);
    }
    for (const key of ["price", "id", "name", "keyboard", "author", "passage", "content-type", "count"]) {
      expect(isSecretKey(key), key).toBe(false);
    }
  });

  it("are redacted whole, with everything under them, and valueAt sees only the redaction", () => {
    const doc = { user: { name: "A", token: "t-1", session: { id: "s-1" } }, list: [{ password: "p" }] };
    const redacted = redactJson(doc, { paths: [], secrets: true });
    expect(redacted).toEqual({
      user: { name: "A", token: REDACTED, session: REDACTED },
      list: [{ password: REDACTED }],
    });
    expect(valueAt(redacted, "$.user.session.id")).toBe(REDACTED);
    expect(redactJson(doc, { paths: [], secrets: false })).toBe(doc);
  });

  it("keep __proto__ an ordinary key of the copy", () => {
    const doc = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
    const redacted = redactJson(doc, { paths: ["$.a"], secrets: true }) as Record<string, unknown>;
    expect(Object.keys(redacted)).toEqual(["__proto__", "a"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(JSON.stringify(redacted)).toBe('{"__proto__":{"polluted":true},"a":"[redacted]"}');
  });

  it("apply to header names too when asked", () => {
    const headers: [string, string][] = [
      ["x-api-key", "k"],
      ["x-session-id", "s"],
      ["etag", "1"],
    ];
    expect({ ...redactHeaders(headers, [], true) }).toEqual({
      "x-api-key": REDACTED,
      "x-session-id": REDACTED,
      etag: "1",
    });
    expect({ ...redactHeaders(headers) }).toEqual({ "x-api-key": "k", "x-session-id": "s", etag: "1" });
  });
});

import { describe, expect, it } from "vitest";
import {
  applyHeaderOps,
  dropUnforwardable,
  forwardedElement,
  forwardedFrom,
  headerChangeRefusal,
  isWebSocketUpgrade,
  refusedHeaderPattern,
  setForwarded,
  shadowHost,
} from "./index.js";

/** What the primary would be sent of `incoming`: the request's own copy, with the unforwardable dropped. */
function forwardableHeaders(incoming: HeadersInit, method = "GET"): Headers {
  const { headers } = new Request("https://edge.test/", { headers: incoming });
  dropUnforwardable(headers, method);
  return headers;
}

/** The forwarding fields the primary is sent for `incoming` at `url`. */
function forwarded(url: string, incoming: Record<string, string>): Record<string, string | null> {
  const request = new Request(url, { headers: incoming });
  const { headers } = new Request(request);
  const carried = dropUnforwardable(headers, "GET");
  setForwarded(headers, forwardedFrom(request, new URL(url)), carried);
  const fields = ["x-forwarded-host", "x-forwarded-proto", "x-forwarded-for", "x-real-ip", "forwarded"];
  return Object.fromEntries(fields.map((name) => [name, headers.get(name)]));
}

describe("dropUnforwardable", () => {
  it("drops hop-by-hop, Connection-named and Cloudflare edge fields and keeps the rest, Access's included", () => {
    const out = forwardableHeaders(
      new Headers({
        connection: "keep-alive, x-private",
        "keep-alive": "timeout=5",
        "transfer-encoding": "chunked",
        upgrade: "websocket",
        "proxy-authorization": "Basic x",
        te: "trailers",
        "x-private": "secret",
        "cf-connecting-ip": "203.0.113.9",
        "cf-ray": "abc",
        "cf-ipcountry": "NZ",
        "cf-access-jwt-assertion": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "cf-access-client-id": "id.access",
        authorization: "Bearer t",
        "content-type": "application/x-protobuf",
        "content-encoding": "snappy",
        // A client's copy id would make a deduplicating receiver drop real copies.
        "x-edge-mirror-id": "forged;mirror=audit",
      }),
    );
    expect([...out.keys()].sort()).toEqual([
      "authorization",
      "cf-access-client-id",
      "cf-access-jwt-assertion",
      "content-encoding",
      "content-type",
    ]);
  });

  // Browsers differ: Firefox sends `Connection: keep-alive, Upgrade`, Chrome `Connection: Upgrade`.
  it.each([
    ["Upgrade, x-private", "websocket"],
    ["keep-alive, Upgrade, x-private", "WebSocket"],
    ["x-private ,upgrade", " websocket "],
  ])("keeps a WebSocket upgrade (Connection: %s, Upgrade: %s) and only that", (connection, upgrade) => {
    const incoming = new Headers({ connection, upgrade, "x-private": "secret", "sec-websocket-key": "k" });
    expect(isWebSocketUpgrade("GET", incoming)).toBe(true);
    expect(Object.fromEntries(forwardableHeaders(incoming))).toEqual({
      connection: "upgrade",
      upgrade: "websocket",
      "sec-websocket-key": "k",
    });
  });

  it.each([
    ["Upgrade", "h2c"],
    ["keep-alive", "websocket"],
    ["upgraded", "websocket"],
  ])("drops any other upgrade (Connection: %s, Upgrade: %s): served as plain HTTP", (connection, upgrade) => {
    const incoming = new Headers({ connection, upgrade, "sec-websocket-key": "k" });
    expect(isWebSocketUpgrade("GET", incoming)).toBe(false);
    expect([...forwardableHeaders(incoming).keys()]).toEqual(["sec-websocket-key"]);
  });

  // workerd's fetch makes any request carrying `Upgrade: websocket` a WebSocket GET without a body.
  it.each(["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])(
    "a %s is no WebSocket handshake, whatever it carries: Upgrade and Connection are dropped",
    (method) => {
      const incoming = new Headers({ connection: "Upgrade", upgrade: "websocket", "sec-websocket-key": "k" });
      expect(isWebSocketUpgrade(method, incoming)).toBe(false);
      expect(Object.fromEntries(forwardableHeaders(incoming, method))).toEqual({ "sec-websocket-key": "k" });
    },
  );

  it("a GET without Sec-WebSocket-Key is no WebSocket handshake: Upgrade and Connection are dropped", () => {
    const incoming = new Headers({ connection: "Upgrade", upgrade: "websocket", accept: "*/*" });
    expect(isWebSocketUpgrade("GET", incoming)).toBe(false);
    expect(Object.fromEntries(forwardableHeaders(incoming))).toEqual({ accept: "*/*" });
  });

  it("drops only Connection-named fields that are there, whatever their case, and ignores tokens that name none", () => {
    const out = forwardableHeaders({
      connection: "X-Private, not a header, a/b, [x], , close",
      "x-private": "secret",
      "x-kept": "1",
    });
    expect(Object.fromEntries(out)).toEqual({ "x-kept": "1" });
  });

  it("leaves a request with nothing to drop as it was", () => {
    const incoming = { accept: "*/*", "x-forwarded-for": "198.51.100.1", authorization: "Bearer t" };
    expect(Object.fromEntries(forwardableHeaders(incoming))).toEqual(incoming);
  });
});

describe("setForwarded", () => {
  const url = "https://api.example.com:8443/x";
  const client = "203.0.113.9";

  it("sets host and proto, lists the client in X-Forwarded-For and sets X-Real-IP to it", () => {
    expect(forwarded(url, { "cf-connecting-ip": client })).toEqual({
      "x-forwarded-host": "api.example.com:8443",
      "x-forwarded-proto": "https",
      "x-forwarded-for": client,
      "x-real-ip": client,
      forwarded: null,
    });
  });

  it("overwrites a client's own X-Forwarded-Host, -Proto and X-Real-IP", () => {
    const out = forwarded(url, {
      "cf-connecting-ip": client,
      "x-forwarded-host": "evil.test",
      "x-forwarded-proto": "http",
      "x-real-ip": "10.0.0.1",
    });
    expect(out).toMatchObject({
      "x-forwarded-host": "api.example.com:8443",
      "x-forwarded-proto": "https",
      "x-real-ip": client,
    });
  });

  it("removes a client's X-Real-IP when the client's address is not known", () => {
    expect(forwarded(url, { "x-real-ip": "10.0.0.1" })).toMatchObject({ "x-real-ip": null, "x-forwarded-for": null });
  });

  it.each([
    ["198.51.100.1", `198.51.100.1, ${client}`],
    [`${client}, 198.51.100.1`, `${client}, 198.51.100.1, ${client}`],
  ])("appends the client to an X-Forwarded-For that does not end with it (%s)", (incoming, expected) => {
    expect(forwarded(url, { "cf-connecting-ip": client, "x-forwarded-for": incoming })["x-forwarded-for"]).toBe(
      expected,
    );
  });

  // Cloudflare's edge appends the address that connected to it to a client's X-Forwarded-For.
  it.each([client, `198.51.100.1, ${client}`, `198.51.100.1,${client}`, `198.51.100.1, ${client} `])(
    "never lists the client twice: an X-Forwarded-For that ends with it (%j) is passed as it is",
    (incoming) => {
      expect(forwarded(url, { "cf-connecting-ip": client, "x-forwarded-for": incoming })["x-forwarded-for"]).toBe(
        incoming.trim(),
      );
    },
  );

  it("appends its own element to a client's Forwarded, quoting what is no token (RFC 7239)", () => {
    const out = forwarded(url, { "cf-connecting-ip": client, forwarded: "for=10.0.0.1;host=evil.test;proto=http" });
    expect(out.forwarded).toBe(
      `for=10.0.0.1;host=evil.test;proto=http, for=${client};host="api.example.com:8443";proto=https`,
    );
  });

  it("brackets and quotes an IPv6 client in Forwarded, and leaves out `for` when the client is not known", () => {
    const v6 = forwarded("https://api.example.com/x", { "cf-connecting-ip": "2001:db8::7", forwarded: "for=unknown" });
    expect(v6.forwarded).toBe('for=unknown, for="[2001:db8::7]";host=api.example.com;proto=https');
    expect(forwardedElement({ host: "[::1]:8787", proto: "http", clientIp: null })).toBe(
      'host="[::1]:8787";proto=http',
    );
  });
});

describe("applyHeaderOps", () => {
  it("sets, appends with ',' and removes (HTTPRoute semantics)", () => {
    const headers = new Headers({ "x-a": "1", "x-b": "2", authorization: "secret" });
    applyHeaderOps(headers, { set: { "x-a": "one" }, add: { "x-b": "3", "x-new": "n" }, remove: ["authorization"] });
    expect(Object.fromEntries(headers)).toEqual({ "x-a": "one", "x-b": "2,3", "x-new": "n" });
  });

  it("does nothing without ops", () => {
    const headers = new Headers({ "x-a": "1" });
    applyHeaderOps(headers, undefined);
    expect(Object.fromEntries(headers)).toEqual({ "x-a": "1" });
  });
});

describe("headerChangeRefusal", () => {
  const refused = ["host", "Content-Length", "transfer-encoding", "connection", "Keep-Alive", "proxy-connection"]
    .concat(["TE", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"])
    .concat(["x-edge-mirror", "X-Edge-Mirror-Hops", "cf-ray", "CF-Connecting-IP", "cf-access"]);
  const allowed = ["cf-access-jwt-assertion", "CF-Access-Client-Id", "authorization", "x-custom", "hostname"].concat([
    "x-host",
    "content-length-x",
    "tea",
    "cf",
    "cfx-a",
    "x-edge-mirror-x",
    "forwarded",
  ]);

  it.each(refused)("refuses %s, and the JSON Schema pattern marks it", (name) => {
    expect(headerChangeRefusal(name)).toMatch(/cannot be changed/);
    expect(new RegExp(refusedHeaderPattern()).test(name)).toBe(true);
  });

  it.each(allowed)("allows %s, and the JSON Schema pattern does not mark it", (name) => {
    expect(headerChangeRefusal(name)).toBeUndefined();
    expect(new RegExp(refusedHeaderPattern()).test(name)).toBe(false);
  });
});

describe("shadowHost", () => {
  it.each([
    ["localhost:10000", "-shadow", "localhost-shadow:10000"],
    ["api.example.com", "-shadow", "api.example.com-shadow"],
    ["[::1]:8787", "-shadow", "[::1]-shadow:8787"],
    ["api.example.com", "", "api.example.com"],
    ["a.test:80", ".mirror", "a.test.mirror:80"],
  ])("%s + %s → %s", (host, suffix, expected) => {
    expect(shadowHost(host, suffix)).toBe(expected);
  });
});

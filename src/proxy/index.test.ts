import { describe, expect, it, vi } from "vitest";
import { parseRoute } from "../policy/index.js";
import { UpstreamError } from "./errors.js";
import { chooseBackend, errorResponse, pickBackend } from "./index.js";

describe("pickBackend", () => {
  const backends = [
    { cluster: "a", weight: 1 },
    { cluster: "b", weight: 3 },
    { cluster: "z", weight: 0 },
  ];
  it("splits by weight and never picks weight 0", () => {
    expect(pickBackend(backends, () => 0)?.cluster).toBe("a");
    expect(pickBackend(backends, () => 0.24)?.cluster).toBe("a");
    expect(pickBackend(backends, () => 0.26)?.cluster).toBe("b");
    expect(pickBackend(backends, () => 0.999999)?.cluster).toBe("b");
  });
  it("returns nothing when every weight is 0", () => {
    expect(pickBackend([{ cluster: "z", weight: 0 }], () => 0.5)).toBeUndefined();
  });
});

describe("chooseBackend", () => {
  const clusters = new Map([["svc", "http://127.0.0.1:9001"]]);
  const url = new URL("https://edge.example.com/x");
  it("prefers route backends, then PRIMARY_ORIGIN, then the request URL", () => {
    const route = parseRoute({ id: "r", backends: [{ cluster: "svc" }] });
    expect(chooseBackend(route, clusters, "http://fallback.test", url, Math.random)).toBe("http://127.0.0.1:9001");
    expect(chooseBackend(parseRoute({ id: "r" }), clusters, "http://fallback.test:81", url, Math.random)).toBe(
      "http://fallback.test:81",
    );
    expect(chooseBackend(undefined, clusters, "", url, Math.random)).toBe("https://edge.example.com");
  });
  it("sends a backend whose cluster is not defined to the default primary: PRIMARY_ORIGIN, else the request URL", () => {
    const unknown = parseRoute({ id: "r", backends: [{ cluster: "nope" }] });
    expect(chooseBackend(unknown, clusters, "http://fallback.test:81", url, Math.random)).toBe(
      "http://fallback.test:81",
    );
    expect(chooseBackend(unknown, clusters, undefined, url, Math.random)).toBe("https://edge.example.com");
    const split = parseRoute({ id: "r", backends: [{ cluster: "svc" }, { cluster: "nope" }] });
    expect(chooseBackend(split, clusters, "", url, () => 0.1)).toBe("http://127.0.0.1:9001");
    expect(chooseBackend(split, clusters, "", url, () => 0.9)).toBe("https://edge.example.com");
  });

  it("throws a typed error when every weight is 0", () => {
    const zero = parseRoute({ id: "r", backends: [{ cluster: "svc", weight: 0 }] });
    expect(() => chooseBackend(zero, clusters, "", url, Math.random)).toThrowError(UpstreamError);
    expect(() => chooseBackend(zero, clusters, "", url, Math.random)).toThrowError(/no backend with weight > 0/);
    expect(new UpstreamError("no_backend", "x").status).toBe(500);
  });
});

describe("errorResponse", () => {
  const detail = "primary unreachable: connect ECONNREFUSED 10.1.2.3:8443 (route internal-billing, cluster billing-v2)";

  it("gives the client the code and a fixed message, and the log the detail with the route", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const response = errorResponse(new UpstreamError("primary_unreachable", detail), "internal-billing", "info");
      expect(response.status).toBe(502);
      expect(response.headers.get("x-edge-mirror-error")).toBe("primary_unreachable");
      const text = await response.text();
      expect(JSON.parse(text)).toEqual({ error: "primary_unreachable", message: "the primary could not be reached" });
      expect(text).not.toMatch(/10\.1\.2\.3|billing|ECONNREFUSED/);
      expect(errors.mock.calls.map(([line]) => JSON.parse(String(line)))).toEqual([
        {
          msg: "edge-mirror.primary_failed",
          route: "internal-billing",
          code: "primary_unreachable",
          status: 502,
          detail,
        },
      ]);
    } finally {
      errors.mockRestore();
    }
  });

  it.each([
    ["primary_timeout", 504, "the primary did not answer in time"],
    ["loop_detected", 508, "the request came back to edge-mirror too many times"],
    ["no_backend", 500, "no backend can take this request"],
  ] as const)("%s → %i with a fixed message, nothing logged at LOG_LEVEL=off", async (code, status, message) => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const response = errorResponse(new UpstreamError(code, `route "secret-route": ${detail}`), "secret-route", "off");
      expect(response.status).toBe(status);
      expect(await response.json()).toEqual({ error: code, message });
      expect(errors).not.toHaveBeenCalled();
    } finally {
      errors.mockRestore();
    }
  });

  it("rethrows anything that is no failure of the primary leg", () => {
    const bug = new TypeError("a bug");
    expect(() => errorResponse(bug, undefined, "info")).toThrow(bug);
  });
});

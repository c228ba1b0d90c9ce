import { describe, expect, it } from "vitest";
import { fanOut, logSink, type MirrorOutcome, parseLogLevel, statusClass } from "./index.js";

const sent: MirrorOutcome = {
  kind: "sent",
  route: "r",
  mirror: "m",
  requestId: "id",
  status: 503,
  latencyMs: 4,
  bodyBytes: 10,
};
const unsampled: MirrorOutcome = { kind: "skipped", route: "r", mirror: "m", requestId: "id", reason: "not_sampled" };

describe("logSink", () => {
  it("writes one JSON line per outcome, leaving out unsampled ones at info", () => {
    const lines: string[] = [];
    const sink = logSink("info", (l) => lines.push(l));
    sink(sent);
    sink(unsampled);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toEqual({ msg: "edge-mirror.mirror", ...sent });
  });

  it("writes everything at debug and nothing when off", () => {
    const debug: string[] = [];
    logSink("debug", (l) => debug.push(l))(unsampled);
    expect(debug).toHaveLength(1);
    const off: string[] = [];
    logSink("off", (l) => off.push(l))(sent);
    expect(off).toHaveLength(0);
  });

  it("parses levels, defaulting to info", () => {
    expect(parseLogLevel("debug")).toBe("debug");
    expect(parseLogLevel("off")).toBe("off");
    expect(parseLogLevel(undefined)).toBe("info");
    expect(parseLogLevel("loud")).toBe("info");
  });
});

describe("fanOut and statusClass", () => {
  it("keeps delivering to later sinks when one throws", () => {
    const seen: MirrorOutcome[] = [];
    fanOut([
      () => {
        throw new Error("broken sink");
      },
      (o) => seen.push(o),
    ])(sent);
    expect(seen).toEqual([sent]);
  });

  it("groups statuses by class", () => {
    expect([200, 302, 404, 503].map(statusClass)).toEqual(["2xx", "3xx", "4xx", "5xx"]);
  });
});

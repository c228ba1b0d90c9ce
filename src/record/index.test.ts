import { describe, expect, it } from "vitest";
import { analyticsSink } from "./analytics.js";
import { fanOut, logSink, type MirrorOutcome, parseLogLevel, parseSampleRate, statusClass } from "./index.js";

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
  const failed: MirrorOutcome = {
    kind: "failed",
    route: "r",
    mirror: "m",
    requestId: "id",
    error: "timeout",
    message: "slow",
    latencyMs: 5000,
  };
  const skipped: MirrorOutcome = { ...unsampled, reason: "body_too_large" };
  const differ: MirrorOutcome = { ...sent, compare: { verdict: "differ", fields: ["$.a"], noise: [] } };

  function lines(level: "debug" | "info" | "off", sampleRate: number, outcomes: MirrorOutcome[], draws = [0.5]) {
    const written: string[] = [];
    let at = 0;
    const sink = logSink({
      level,
      sampleRate,
      write: (l) => written.push(l),
      random: () => draws[at++ % draws.length] as number,
    });
    for (const o of outcomes) sink(o);
    return written.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  it("always logs failures, skips other than not_sampled and differ verdicts, at rate 1", () => {
    const logged = lines("info", 0, [failed, skipped, differ, unsampled]);
    expect(logged).toEqual([
      { msg: "edge-mirror.mirror", ...failed, sampleRate: 1 },
      { msg: "edge-mirror.mirror", ...skipped, sampleRate: 1 },
      { msg: "edge-mirror.mirror", ...differ, sampleRate: 1 },
    ]);
  });

  it("logs successful copies with probability sampleRate, each line carrying the rate", () => {
    // Draws below the rate are logged: 0.005 is, 0.5 is not.
    const logged = lines("info", 0.01, [sent, sent, sent, sent], [0.005, 0.5, 0.5, 0.009]);
    expect(logged).toEqual([
      { msg: "edge-mirror.mirror", ...sent, sampleRate: 0.01 },
      { msg: "edge-mirror.mirror", ...sent, sampleRate: 0.01 },
    ]);
    expect(lines("info", 1, [sent, sent])).toHaveLength(2);
  });

  it("logs a durable copy's spooling, refusal, death and redrive always; a failed retry at debug only; a redelivery sampled", () => {
    const base = { route: "r", mirror: "m", requestId: "id" };
    const failure = { error: "connect", message: "refused" } as const;
    const spooled: MirrorOutcome = {
      ...base,
      kind: "spooled",
      ...failure,
      latencyMs: 3,
      bodyBytes: 9,
      bodyIn: "message",
    };
    const retrying: MirrorOutcome = {
      ...base,
      kind: "retrying",
      ...failure,
      attempt: 2,
      delaySeconds: 10,
      latencyMs: 3,
    };
    const rejected: MirrorOutcome = { ...base, kind: "rejected", attempt: 1, status: 400, latencyMs: 3, ageMs: 5000 };
    const dead: MirrorOutcome = { ...base, kind: "dead", ...failure, attempts: 10, ageMs: 5_115_000 };
    const redriven: MirrorOutcome = { ...base, kind: "redriven", ageMs: 6_000_000 };
    const redelivered: MirrorOutcome = {
      ...base,
      kind: "redelivered",
      attempt: 3,
      status: 204,
      latencyMs: 3,
      bodyBytes: 9,
      ageMs: 35_000,
    };
    const kinds = (logged: Record<string, unknown>[]) => logged.map((l) => [l.kind, l.sampleRate]);
    expect(kinds(lines("info", 0, [spooled, retrying, rejected, dead, redriven, redelivered]))).toEqual([
      ["spooled", 1],
      ["rejected", 1],
      ["dead", 1],
      ["redriven", 1],
    ]);
    expect(kinds(lines("info", 0.01, [redelivered, retrying], [0.001]))).toEqual([["redelivered", 0.01]]);
    expect(kinds(lines("debug", 0, [retrying]))).toEqual([["retrying", 1]]);
  });

  it("writes everything at debug and nothing when off", () => {
    expect(lines("debug", 0.01, [unsampled, sent])).toEqual([
      { msg: "edge-mirror.mirror", ...unsampled, sampleRate: 1 },
      { msg: "edge-mirror.mirror", ...sent, sampleRate: 1 },
    ]);
    expect(lines("off", 1, [sent, failed])).toHaveLength(0);
  });

  it("parses levels, defaulting to info, and sample rates, defaulting to 1 in 100", () => {
    expect(parseLogLevel("debug")).toBe("debug");
    expect(parseLogLevel("off")).toBe("off");
    expect(parseLogLevel(undefined)).toBe("info");
    expect(parseLogLevel("loud")).toBe("info");
    expect(parseSampleRate(undefined)).toBe(0.01);
    expect(parseSampleRate("0.25")).toBe(0.25);
    expect(parseSampleRate("1")).toBe(1);
    expect(parseSampleRate("0")).toBe(0);
    expect(parseSampleRate("2")).toBe(0.01);
    expect(parseSampleRate("lots")).toBe(0.01);
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

describe("analyticsSink", () => {
  it("writes a point per outcome but for not_sampled skips, which the counters count", () => {
    const points: AnalyticsEngineDataPoint[] = [];
    const sink = analyticsSink({ writeDataPoint: (p?: AnalyticsEngineDataPoint) => p && points.push(p) });
    const tooLarge: MirrorOutcome = { ...unsampled, reason: "body_too_large" };
    for (const outcome of [unsampled, sent, tooLarge, unsampled]) sink(outcome);
    expect(points.map((p) => p.blobs?.slice(2, 4))).toEqual([
      ["sent", "5xx"],
      ["skipped", "body_too_large"],
    ]);
  });
});

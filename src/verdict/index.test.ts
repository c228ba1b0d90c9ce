import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { seeded } from "../../test/worker/seeded.js";
import { DEFAULT_VERDICT_THRESHOLDS, parseRoute } from "../policy/index.js";
import { LatencySketch, slotBounds, slotOf } from "../sketch/index.js";
import {
  CHECKS,
  type CheckName,
  decideVerdict,
  emptyStatus,
  newcombeDifference,
  quantileInterval,
  type ReportThresholds,
  type StatusCounts,
  thresholdsFor,
  type VerdictInput,
  wilsonInterval,
} from "./index.js";

const WINDOW = { minutes: 15, from: "2026-07-01T12:00:00.000Z", to: "2026-07-01T12:15:00.000Z" };
const DEFAULTS: ReportThresholds = thresholdsFor({ mirrors: [], mirrorFromHeader: undefined }, "canary");

/** `n` latencies of a log-normal around `median` ms (σ = 0.5), whole milliseconds as the Workers clock gives them. */
function latencies(n: number, median: number, random: () => number): number[] {
  return Array.from({ length: n }, () => {
    const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    return Math.round(median * Math.exp(0.5 * normal));
  });
}

function sketchOf(values: readonly number[]): LatencySketch {
  const sketch = new LatencySketch();
  for (const v of values) sketch.add(v);
  return sketch;
}

function status(counts: Partial<StatusCounts>): StatusCounts {
  return { ...emptyStatus(), ...counts };
}

/**
 * `n` mirrored requests: the primary answers 2xx in `primaryMs`, the mirror as the options say
 * (by default like the primary: same status, latencies of the same distribution drawn anew).
 */
function window(
  n: number,
  options: {
    differ?: number;
    noisy?: number;
    compared?: boolean;
    mirror5xx?: number;
    mirrorFailed?: number;
    primary5xx?: number;
    mirrorMs?: number[];
    primaryMs?: number[];
  } = {},
): VerdictInput {
  const random = seeded(n);
  const primaryMs = options.primaryMs ?? latencies(n, 80, random);
  const mirrorMs = options.mirrorMs ?? latencies(n, 80, random);
  const mirror5xx = options.mirror5xx ?? 0;
  const mirrorFailed = options.mirrorFailed ?? 0;
  const primary5xx = options.primary5xx ?? 0;
  return {
    window: WINDOW,
    shards: { asked: 16, answered: 16 },
    ...(options.compared === false
      ? {}
      : { compare: { compared: n, differ: options.differ ?? 0, noisy: options.noisy ?? 0 } }),
    status: {
      primary: status({ "2xx": n - primary5xx, "5xx": primary5xx }),
      mirror: status({ "2xx": n - mirror5xx - mirrorFailed, "5xx": mirror5xx, failed: mirrorFailed }),
    },
    latency: { primary: sketchOf(primaryMs), mirror: sketchOf(mirrorMs) },
  };
}

const reason = (report: ReturnType<typeof decideVerdict>, check: CheckName) =>
  report.reasons.find((r) => r.check === check);

describe("the issue's cases", () => {
  it("a candidate equal to the primary passes", () => {
    const report = decideVerdict("api", "canary", window(1000, { noisy: 20 }), DEFAULTS);
    expect(report.verdict).toBe("pass");
    expect(report.reasons.map((r) => [r.check, r.outcome, r.passed])).toEqual([
      ["diffRate", "pass", true],
      ["errorRateIncrease", "pass", true],
      ["latencyP50Ratio", "pass", true],
      ["latencyP99Ratio", "pass", true],
    ]);
    expect(report).toMatchObject({
      route: "api",
      mirror: "canary",
      window: WINDOW,
      shards: { asked: 16, answered: 16 },
      samples: 1000,
      diffRate: 0,
      noiseRate: 0.02,
      status: { primary: { "2xx": 1000, "5xx": 0 }, mirror: { "2xx": 1000, failed: 0 } },
      thresholds: { maxDiffRate: 0.01, maxErrorRateIncrease: 0.01, maxLatencyRatio: { p50: 1.5, p99: 1.5 } },
    });
    // 0 differences in 1,000: at most 0.38 % at 95 % confidence, below 1 %.
    expect(report.diffRateCI95?.[0]).toBe(0);
    expect(report.diffRateCI95?.[1]).toBeCloseTo(0.00383, 5);
    expect(report.latencyMs.primary?.p50).toBeGreaterThan(70);
    expect(report.latencyMs.primary?.p50).toBeLessThan(90);
  });

  it("a candidate that differs in 30 % of requests fails, with the diffRate reason", () => {
    const report = decideVerdict("api", "canary", window(1000, { differ: 300 }), DEFAULTS);
    expect(report.verdict).toBe("fail");
    const diff = reason(report, "diffRate");
    expect(diff).toMatchObject({ outcome: "fail", passed: false, observed: 0.3, threshold: 0.01, samples: 1000 });
    expect(diff?.ci95?.[0]).toBeGreaterThan(0.27);
    expect(diff?.reason).toMatch(
      /^30\.00 % of 1000 compared answers differ; 95 % interval 27\.\d\d % to 32\.\d\d %, wholly above the threshold 1\.00 %$/,
    );
    expect(report.reasons.filter((r) => r.outcome === "fail").map((r) => r.check)).toEqual(["diffRate"]);
  });

  it("five samples with minSamples 100 are inconclusive, however they look", () => {
    const report = decideVerdict("api", "canary", window(5, { differ: 5 }), DEFAULTS);
    expect(report.verdict).toBe("inconclusive");
    for (const r of report.reasons) {
      expect(r).toMatchObject({ outcome: "inconclusive", passed: null, ci95: null, samples: 5 });
    }
    expect(reason(report, "diffRate")?.reason).toBe("5 compared requests, fewer than minSamples 100");
    expect(reason(report, "latencyP99Ratio")?.reason).toBe(
      "5 latencies on the smaller side, fewer than minSamples 100",
    );
  });

  it("a candidate answering 5xx to 10 % of requests fails, with the error-rate reason", () => {
    const report = decideVerdict("api", "canary", window(1000, { mirror5xx: 100 }), DEFAULTS);
    expect(report.verdict).toBe("fail");
    const error = reason(report, "errorRateIncrease");
    expect(error).toMatchObject({ outcome: "fail", passed: false, observed: 0.1, threshold: 0.01 });
    expect(error?.reason).toMatch(
      /^\+10\.00 points of 5xx answers and failures over the primary's \(10\.00 % of the mirror's 1000, 0\.00 % of the primary's 1000\); 95 % interval \+8\.\d\d points to \+1\d\.\d\d points, wholly above the threshold \+1\.00 points$/,
    );
    expect(report.errorRate).toMatchObject({ primary: 0, mirror: 0.1, increase: 0.1 });
  });

  it("a candidate 3× slower at p99 fails, with the latency reason", () => {
    const random = seeded(3);
    const primaryMs = latencies(2000, 80, random);
    // The same answers, but the slowest 3 % take three times as long: the median is unchanged.
    const sorted = [...primaryMs].sort((a, b) => a - b);
    const cut = sorted[Math.floor(sorted.length * 0.97)] as number;
    const mirrorMs = primaryMs.map((ms) => (ms >= cut ? ms * 3 : ms));
    const report = decideVerdict("api", "canary", window(2000, { primaryMs, mirrorMs }), DEFAULTS);
    expect(report.verdict).toBe("fail");
    const p99 = reason(report, "latencyP99Ratio");
    expect(p99?.outcome).toBe("fail");
    expect(p99?.observed).toBeGreaterThan(2.8);
    expect(p99?.observed).toBeLessThan(3.2);
    expect(p99?.ci95?.[0]).toBeGreaterThan(1.5);
    expect(p99?.reason).toMatch(
      /^\d\.\d\d× the primary's p99 latency \(\d+(\.\d+)? ms against \d+(\.\d+)? ms\); 95 % interval/,
    );
    expect(reason(report, "latencyP50Ratio")?.outcome).toBe("pass");
  });
});

describe("checks", () => {
  it("are inconclusive while the interval holds the threshold, and decide once the evidence does", () => {
    // 1 % observed against a 1 % threshold: no number of requests decides it.
    expect(reason(decideVerdict("r", "m", window(10_000, { differ: 100 }), DEFAULTS), "diffRate")?.outcome).toBe(
      "inconclusive",
    );
    // 0.5 % is below 1 %, but 200 requests cannot show it; 5,000 can.
    expect(reason(decideVerdict("r", "m", window(200, { differ: 1 }), DEFAULTS), "diffRate")?.outcome).toBe(
      "inconclusive",
    );
    expect(reason(decideVerdict("r", "m", window(5000, { differ: 25 }), DEFAULTS), "diffRate")?.outcome).toBe("pass");
    // 0 differences: 381 compared requests are the fewest that show the rate is below 1 %.
    expect(reason(decideVerdict("r", "m", window(380), DEFAULTS), "diffRate")?.outcome).toBe("inconclusive");
    expect(reason(decideVerdict("r", "m", window(381), DEFAULTS), "diffRate")?.outcome).toBe("pass");
  });

  it("count a mirror's failures as errors, and compare with the primary's own 5xx", () => {
    const failing = decideVerdict("r", "m", window(1000, { mirrorFailed: 60 }), DEFAULTS);
    expect(reason(failing, "errorRateIncrease")?.outcome).toBe("fail");
    // Both answer 5xx to 10 %: the mirror is no worse than the primary (10,000 requests show it within 1 point).
    const both = decideVerdict("r", "m", window(10_000, { mirror5xx: 1000, primary5xx: 1000 }), DEFAULTS);
    expect(reason(both, "errorRateIncrease")).toMatchObject({ outcome: "pass", observed: 0 });
  });

  it("say how many comparisons ended in error, which judge nothing", () => {
    const input = window(1000);
    const errored = { ...input, compare: { compared: 40, differ: 0, noisy: 0, errors: 960 } };
    expect(reason(decideVerdict("r", "m", errored, DEFAULTS), "diffRate")?.reason).toBe(
      "40 compared requests (besides 960 that ended in error), fewer than minSamples 100",
    );
  });

  it("leave diffRate out for a mirror that is not compared", () => {
    const report = decideVerdict("r", "audit", window(1000, { compared: false }), DEFAULTS);
    expect(report.reasons.map((r) => r.check)).toEqual(["errorRateIncrease", "latencyP50Ratio", "latencyP99Ratio"]);
    expect(report).toMatchObject({
      verdict: "pass",
      samples: 1000,
      diffRate: null,
      diffRateCI95: null,
      noiseRate: null,
    });
  });

  it("treat latencies under 1 ms as 1 ms: two origins that answer at once are equally fast", () => {
    const zeros = new Array<number>(500).fill(0);
    const report = decideVerdict(
      "r",
      "m",
      window(500, { primaryMs: zeros, mirrorMs: zeros.map((_, i) => i % 2) }),
      DEFAULTS,
    );
    expect(reason(report, "latencyP50Ratio")).toMatchObject({ outcome: "pass", observed: 1 });
    expect(reason(report, "latencyP99Ratio")).toMatchObject({ outcome: "pass", observed: 1 });
  });

  it("decide no p99 on a tail too thin to bound, either way", () => {
    // 150 latencies: the 99th percentile's upper bound would need values past the sample's end.
    const random = seeded(9);
    const primaryMs = latencies(150, 80, random);
    const same = decideVerdict("r", "m", window(150, { primaryMs, mirrorMs: primaryMs }), DEFAULTS);
    expect(reason(same, "latencyP99Ratio")).toMatchObject({ outcome: "inconclusive" });
    expect(reason(same, "latencyP99Ratio")?.ci95?.[1]).toBeNull();
    const slow = decideVerdict(
      "r",
      "m",
      window(150, { primaryMs, mirrorMs: primaryMs.map((ms) => ms * 10) }),
      DEFAULTS,
    );
    expect(reason(slow, "latencyP99Ratio")).toMatchObject({ outcome: "inconclusive", ci95: [0, null] });
    // The median is well bounded: ten times slower fails.
    expect(reason(slow, "latencyP50Ratio")?.outcome).toBe("fail");
    expect(slow.verdict).toBe("fail");
  });

  it("use the mirror's own thresholds", () => {
    const strict = { ...DEFAULTS, maxLatencyRatio: { p50: 1.05, p99: 1.5 }, minSamples: 10 };
    const random = seeded(4);
    const primaryMs = latencies(3000, 80, random);
    const report = decideVerdict(
      "r",
      "m",
      window(3000, { primaryMs, mirrorMs: primaryMs.map((ms) => ms * 1.2) }),
      strict,
    );
    expect(reason(report, "latencyP50Ratio")).toMatchObject({ outcome: "fail", threshold: 1.05 });
    expect(reason(report, "latencyP99Ratio")).toMatchObject({ outcome: "pass", threshold: 1.5 });
  });

  it("list every check in order and decide the verdict from them, whatever the counts", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3000 }),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        fc.integer({ min: 1, max: 500 }),
        (n, differ, mirror5xx, primary5xx, compared, minSamples) => {
          const input = window(n, {
            differ: n === 0 ? 0 : differ % (n + 1),
            mirror5xx: n === 0 ? 0 : mirror5xx % (n + 1),
            primary5xx: n === 0 ? 0 : primary5xx % (n + 1),
            compared,
          });
          const report = decideVerdict("r", "m", input, { ...DEFAULTS, minSamples });
          expect(report.reasons.map((r) => r.check)).toEqual(CHECKS.filter((c) => compared || c !== "diffRate"));
          const outcomes = report.reasons.map((r) => r.outcome);
          const expected = outcomes.includes("fail")
            ? "fail"
            : outcomes.every((o) => o === "pass")
              ? "pass"
              : "inconclusive";
          expect(report.verdict).toBe(expected);
          for (const r of report.reasons) {
            if (r.samples < minSamples) expect(r.outcome).toBe("inconclusive");
            if (r.outcome === "fail") expect(r.ci95?.[0]).toBeGreaterThan(r.threshold);
            if (r.outcome === "pass") expect(r.ci95?.[1]).toBeLessThan(r.threshold);
          }
          // What the endpoint sends is JSON: nothing infinite or undefined in it.
          expect(JSON.parse(JSON.stringify(report))).toEqual(report);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("intervals", () => {
  it("Wilson's score interval matches published values", () => {
    // Newcombe (1998), Table I: 0/10, 1/29, 15/148, 81/263.
    const cases: Array<[number, number, number, number]> = [
      [0, 10, 0, 0.2775],
      [1, 29, 0.0061, 0.1718],
      [15, 148, 0.0624, 0.1605],
      [81, 263, 0.2553, 0.3662],
    ];
    for (const [k, n, low, high] of cases) {
      const [l, h] = wilsonInterval(k, n);
      expect(l).toBeCloseTo(low, 4);
      expect(h).toBeCloseTo(high, 4);
    }
    expect(wilsonInterval(0, 0)).toEqual([0, 1]);
    expect(wilsonInterval(7, 7)[1]).toBe(1);
  });

  it("Newcombe's hybrid score interval for a difference matches published values", () => {
    // Newcombe (1998b), Table II, method 10: 56/70 − 48/80 and 9/10 − 3/10.
    const [l1, h1] = newcombeDifference(56, 70, 48, 80);
    expect(l1).toBeCloseTo(0.0524, 4);
    expect(h1).toBeCloseTo(0.3339, 4);
    const [l2, h2] = newcombeDifference(9, 10, 3, 10);
    expect(l2).toBeCloseTo(0.1705, 4);
    expect(h2).toBeCloseTo(0.809, 3);
  });

  it("a quantile's interval holds the true quantile in at least 95 % of samples", () => {
    // 1,000 samples of 300 exponential latencies (mean 50 ms): the median is 50 ln 2, the p99 50 ln 100.
    const random = seeded(95);
    let medianCovered = 0;
    let p99Covered = 0;
    for (let run = 0; run < 1000; run++) {
      const sketch = sketchOf(Array.from({ length: 300 }, () => -50 * Math.log(1 - random())));
      const [ml, mh] = quantileInterval(sketch, 0.5);
      const [pl, ph] = quantileInterval(sketch, 0.99);
      if (ml <= 50 * Math.LN2 && 50 * Math.LN2 <= mh) medianCovered++;
      if (pl <= 50 * Math.log(100) && 50 * Math.log(100) <= ph) p99Covered++;
    }
    expect(medianCovered).toBeGreaterThanOrEqual(950);
    expect(p99Covered).toBeGreaterThanOrEqual(950);
  });

  it("a quantile with nothing to read it from is unbounded", () => {
    expect(quantileInterval(new LatencySketch(), 0.5)).toEqual([0, Number.POSITIVE_INFINITY]);
    // One value: it is likely below the 99th percentile, but nothing says how far.
    expect(quantileInterval(sketchOf([10]), 0.99)).toEqual([slotBounds(slotOf(10)).low, Number.POSITIVE_INFINITY]);
  });
});

describe("thresholds", () => {
  it("are the mirror's own, the header-chosen mirrors', or the defaults", () => {
    const route = parseRoute({
      id: "api",
      mirrors: [
        { cluster: "canary", verdict: { maxDiffRate: 0.05, maxLatencyRatio: { p99: 2 } } },
        { origin: "https://audit.example.net" },
      ],
      mirrorFromHeader: { header: "x-mirror", allow: ["branch"], verdict: { minSamples: 20 } },
    });
    expect(thresholdsFor(route, "canary")).toEqual({
      maxDiffRate: 0.05,
      maxErrorRateIncrease: 0.01,
      maxLatencyRatio: { p50: 1.5, p99: 2 },
      minSamples: 100,
    });
    expect(thresholdsFor(route, "https://audit.example.net")).toEqual(DEFAULTS);
    expect(thresholdsFor(route, "branch")).toMatchObject({ minSamples: 20, maxDiffRate: 0.01 });
    expect(thresholdsFor(route, "(not allowed)")).toEqual(DEFAULTS);
    expect(DEFAULTS).toEqual({ ...DEFAULT_VERDICT_THRESHOLDS, maxLatencyRatio: { p50: 1.5, p99: 1.5 } });
  });
});

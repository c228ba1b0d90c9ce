import { describe, expect, it } from "vitest";
import { MirrorBreaker } from "./breaker.js";

const options = { threshold: 3, baseEjectionMs: 1000, maxEjectionMs: 4000 };

describe("MirrorBreaker", () => {
  it("admits a healthy target and forgets isolated failures after a success", () => {
    const b = new MirrorBreaker(options);
    b.report("t", false, 0);
    b.report("t", false, 0);
    b.report("t", true, 0);
    b.report("t", false, 0);
    b.report("t", false, 0);
    expect(b.admit("t", 0)).toEqual({ allowed: true });
  });

  it("ejects after `threshold` consecutive failures, then lets one probe through", () => {
    const b = new MirrorBreaker(options);
    expect(b.report("t", false, 0)).toBeUndefined();
    expect(b.report("t", false, 0)).toBeUndefined();
    expect(b.report("t", false, 100)).toBe(1100);
    expect(b.admit("t", 500)).toEqual({ allowed: false, ejectedUntil: 1100, failures: 3 });
    expect(b.admit("t", 1100)).toEqual({ allowed: true });
    // While the probe is out, nobody else goes.
    expect(b.admit("t", 1101)).toMatchObject({ allowed: false });
  });

  it("doubles the ejection when the probe fails, up to the maximum, and closes on success", () => {
    const b = new MirrorBreaker(options);
    for (let i = 0; i < 3; i++) b.report("t", false, 0);
    const ends: number[] = [];
    let now = 1000;
    for (let i = 0; i < 4; i++) {
      expect(b.admit("t", now)).toEqual({ allowed: true });
      const until = b.report("t", false, now) as number;
      ends.push(until - now);
      now = until;
    }
    expect(ends).toEqual([2000, 4000, 4000, 4000]);
    expect(b.admit("t", now)).toEqual({ allowed: true });
    b.report("t", true, now);
    expect(b.admit("t", now)).toEqual({ allowed: true });
    expect(b.report("t", false, now)).toBeUndefined();
  });

  it("keeps targets apart", () => {
    const b = new MirrorBreaker(options);
    for (let i = 0; i < 3; i++) b.report("dead", false, 0);
    expect(b.admit("dead", 1)).toMatchObject({ allowed: false });
    expect(b.admit("alive", 1)).toEqual({ allowed: true });
  });
});

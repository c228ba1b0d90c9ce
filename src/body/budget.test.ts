import { describe, expect, it } from "vitest";
import { DEFAULT_MEMORY_BUDGET_BYTES, MemoryBudget, parseBudgetBytes } from "./budget.js";

describe("MemoryBudget", () => {
  it("lets holds take bytes up to the limit, together, and refuses what would pass it", () => {
    const budget = new MemoryBudget(100);
    const a = budget.hold();
    const b = budget.hold();
    expect(a.take(60)).toBe(true);
    expect(b.take(41)).toBe(false);
    expect(b.bytes).toBe(0);
    expect(b.take(40)).toBe(true);
    expect(budget.held).toBe(100);
    expect(a.take(1)).toBe(false);
    expect(a.bytes).toBe(60);
  });

  it("gives every byte of a hold back once, and a released hold takes nothing more", () => {
    const budget = new MemoryBudget(100);
    const a = budget.hold();
    const b = budget.hold();
    a.take(30);
    a.take(20);
    b.take(10);
    a.release();
    expect(budget.held).toBe(10);
    a.release();
    expect(budget.held).toBe(10);
    expect(a.take(1)).toBe(false);
    expect(budget.held).toBe(10);
    b.release();
    expect(budget.held).toBe(0);
  });

  it("says what was refused and how much is free", () => {
    const budget = new MemoryBudget(100);
    budget.hold().take(70);
    const hold = budget.hold();
    expect(hold.take(50)).toBe(false);
    expect(hold.refusal("content-length 50")).toBe(
      "content-length 50 does not fit the isolate's memory budget (30 of 100 bytes free)",
    );
  });

  it("admits one copy at the 32 MiB maxMirrorBodyBytes ceiling by default, well under an isolate's 128 MB", () => {
    const hold = new MemoryBudget(DEFAULT_MEMORY_BUDGET_BYTES).hold();
    expect(hold.take(32 * 1024 * 1024)).toBe(true);
    expect(DEFAULT_MEMORY_BUDGET_BYTES).toBeLessThanOrEqual(64 * 1024 * 1024);
  });
});

describe("parseBudgetBytes", () => {
  it.each([
    ["50331648", 50331648],
    [" 0 ", 0],
    ["1.5", undefined],
    ["-1", undefined],
    ["48MiB", undefined],
    ["1e9", undefined],
    ["99999999999999999999", undefined],
  ])("%j → %j", (value, bytes) => {
    expect(parseBudgetBytes(value)).toBe(bytes);
  });
});

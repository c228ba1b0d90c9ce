import { describe, expect, it } from "vitest";
import { copyBytes, joinBytes } from "./bytes.js";

describe("joinBytes and copyBytes", () => {
  const a = Uint8Array.of(1, 2);
  const b = Uint8Array.of(3);

  it("join parts in order, into one new array", () => {
    expect([...joinBytes([a, b], 3)]).toEqual([1, 2, 3]);
    expect([...copyBytes([a, b], 3)]).toEqual([1, 2, 3]);
  });

  it("hand back the only part when it is all of the bytes, and copyBytes never does", () => {
    expect(joinBytes([a], 2)).toBe(a);
    expect(copyBytes([a], 2)).not.toBe(a);
    expect([...copyBytes([a], 2)]).toEqual([1, 2]);
  });
});

import { describe, expect, it } from "vitest";
import { fromHex, HEX_BYTE, toHex } from "./index.js";

/** The form every caller used before: one `toString(16)` per byte. */
const reference = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

describe("hex", () => {
  it("writes every byte value as two lowercase digits", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(toHex(all)).toBe(reference(all));
    expect(toHex(all.buffer)).toBe(reference(all));
    expect(HEX_BYTE[0]).toBe("00");
    expect(HEX_BYTE[255]).toBe("ff");
  });

  it("reads a view at its own offset, not its buffer's start", () => {
    const all = Uint8Array.from({ length: 16 }, (_, i) => i * 16 + 1);
    const middle = all.subarray(4, 8);
    expect(toHex(middle)).toBe("41516171");
  });

  it("reads back what it wrote, and nothing of an empty input", () => {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    expect(fromHex(toHex(bytes))).toEqual(bytes);
    expect(toHex(new Uint8Array(0))).toBe("");
    expect(fromHex("")).toEqual(new Uint8Array(0));
    expect([...fromHex("00ff10A0")]).toEqual([0, 255, 16, 160]);
  });
});

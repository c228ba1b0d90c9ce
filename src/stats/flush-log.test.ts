import { describe, expect, it } from "vitest";
import { SLOT, SLOT_COUNT } from "./counters.js";
import { addTally, decodeTally, encodeTally } from "./flush-log.js";
import { countOutcome, countRequest, emptyBatch, type Tally } from "./tally.js";

function tallyOf(route: string, mirror: string, fields: string[] = []): Tally {
  const batch = emptyBatch();
  countRequest(batch.tally, route, true);
  countOutcome(batch, {
    route,
    mirror,
    requestId: "",
    kind: "sent",
    status: 200,
    latencyMs: 7,
    bodyBytes: 0,
    ...(fields.length > 0 ? { compare: { verdict: "differ", fields, noise: ["$.ts"] } } : {}),
  });
  return batch.tally;
}

describe("the flush log's rows", () => {
  it("encode a tally and decode it back exactly, names that look like prototypes included", () => {
    const tally = tallyOf("constructor", "__proto__", ["$.a", "$.toString"]);
    const decoded = decodeTally(encodeTally(tally));
    expect(decoded).toEqual(tally);
    expect(Object.getPrototypeOf(decoded.get("constructor")?.mirrors)).toBe(Map.prototype);
  });

  it.each([
    ["not a list", "{}"],
    ["a route without counts", '[["r"]]'],
    ["a mirror with too few counters", '[["r",1,1,[["m",[1,2],[]]]]]'],
    ["a negative count", `[["r",1,1,[["m",[${Array(SLOT_COUNT).fill(-1).join(",")}],[]]]]]`],
    ["a field without numbers", `[["r",1,1,[["m",[${Array(SLOT_COUNT).fill(0).join(",")}],[["$.a","x",0]]]]]]`],
  ])("refuse %s, so that a damaged row is never half counted", (_, text) => {
    expect(() => decodeTally(text)).toThrow();
  });

  it("add up as the minute rows do: counts slot by slot, fields by name", () => {
    const into = tallyOf("r", "m", ["$.a"]);
    addTally(into, tallyOf("r", "m", ["$.a", "$.b"]));
    addTally(into, tallyOf("s", "m"));
    const m = into.get("r")?.mirrors.get("m");
    expect([into.get("r")?.requests, m?.counts[SLOT.sent], m?.counts[SLOT.latencyMaxMs]]).toEqual([2, 2, 7]);
    expect(Object.fromEntries(m?.fields ?? [])).toEqual({
      "$.a": { differ: 2, noise: 0 },
      "$.b": { differ: 1, noise: 0 },
      "$.ts": { differ: 0, noise: 2 },
    });
    expect(into.get("s")?.requests).toBe(1);
  });
});

import { describe, expectTypeOf, it } from "vitest";
import type { Merged } from "../../stats/merge.js";
import type { readFieldSamples, StatsRead } from "../../stats/shards.js";
import type { summarize } from "../../stats/summary.js";
import type { FieldSamplesAnswer, StatsAnswer } from "./wire.js";

/**
 * The browser script is type-checked against dashboard/wire, not against the worker's types (it
 * cannot import them). These assertions are checked by `npm run typecheck`: a field the API
 * renames, drops or retypes fails there, before the dashboard shows "undefined" or stops drawing.
 */
describe("what the dashboard's script reads of the stats API", () => {
  it("is what api/stats answers: its routes, samples and shards", () => {
    expectTypeOf<ReturnType<typeof summarize>>().toExtend<StatsAnswer["routes"]>();
    expectTypeOf<Merged["samples"]>().toExtend<StatsAnswer["samples"]>();
    expectTypeOf<StatsRead["shards"]>().toExtend<StatsAnswer["sources"]["shards"]>();
  });

  it("is what api/stats/samples answers", () => {
    expectTypeOf<Awaited<ReturnType<typeof readFieldSamples>>>().toExtend<FieldSamplesAnswer["samples"]>();
  });
});

import { describe, expect, it } from "vitest";
import type { MirrorOutcome } from "../record/index.js";
import { StatsBuffer } from "./buffer.js";
import { skippedByReason } from "./counters.js";
import type { StatsBatch } from "./tally.js";

const outcome: MirrorOutcome = { route: "r", mirror: "m", requestId: "1", kind: "skipped", reason: "not_sampled" };

describe("StatsBuffer", () => {
  it("sends one batch for everything added before its flush, then opens a new one", async () => {
    const sent: StatsBatch[] = [];
    const pending: Promise<unknown>[] = [];
    const buffer = new StatsBuffer(async (batch) => {
      sent.push(batch);
    }, 10);
    const waitUntil = (p: Promise<unknown>) => pending.push(p);
    buffer.countRequest("r", false, waitUntil);
    buffer.sink(waitUntil)(outcome);
    buffer.sink(waitUntil)(outcome);
    expect(pending).toHaveLength(1);
    await Promise.all(pending);
    buffer.countRequest("r", true, waitUntil);
    await Promise.all(pending);
    expect(pending).toHaveLength(2);
    expect(sent.map((b) => b.tally.get("r")?.requests)).toEqual([1, 1]);
    expect({ ...skippedByReason(sent[0]?.tally.get("r")?.mirrors.get("m")?.counts ?? []) }).toEqual({ not_sampled: 2 });
    // What goes over RPC is the tally and the samples, not the batch's bookkeeping.
    expect(Object.keys(sent[0] ?? {}).sort()).toEqual(["samples", "tally"]);
  });

  it("swallows a failing store: counting never throws into the request", async () => {
    const pending: Promise<unknown>[] = [];
    const buffer = new StatsBuffer(() => Promise.reject(new Error("object unavailable")), 0);
    buffer.countRequest("r", true, (p) => pending.push(p));
    await expect(Promise.all(pending)).resolves.toBeDefined();
  });
});

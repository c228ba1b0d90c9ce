import { describe, expect, it } from "vitest";
import type { MirrorOutcome } from "../record/index.js";
import { StatsBuffer } from "./buffer.js";
import { skippedByReason } from "./counters.js";
import { decodeTally } from "./flush-log.js";
import type { StatsBatch } from "./tally.js";

const outcome: MirrorOutcome = { route: "r", mirror: "m", requestId: "1", kind: "skipped", reason: "not_sampled" };

describe("StatsBuffer", () => {
  it("sends one batch for everything added before its flush, then opens a new one", async () => {
    const sent: StatsBatch[] = [];
    const pending: Promise<unknown>[] = [];
    const keys: string[][] = [];
    const buffer = new StatsBuffer(async (batch) => {
      keys.push(Object.keys(batch).sort());
      sent.push({ tally: decodeTally(batch.encoded), samples: batch.samples });
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
    // What goes over RPC is the tally, encoded as the flush log keeps it, and the samples, not the batch's bookkeeping.
    expect(keys[0]).toEqual(["encoded", "samples"]);
  });

  it("swallows a failing store, logs the failure, and still sends the next batch", async () => {
    const sent: StatsBatch[] = [];
    const lines: string[] = [];
    let failing = true;
    const buffer = new StatsBuffer(
      async (batch) => {
        if (failing) throw new Error("SQLITE_TOOBIG: string or blob too big");
        sent.push({ tally: decodeTally(batch.encoded), samples: batch.samples });
      },
      0,
      { log: (line) => lines.push(line), now: () => 0 },
    );
    const pending: Promise<unknown>[] = [];
    const waitUntil = (p: Promise<unknown>) => pending.push(p);
    buffer.countRequest("lost", true, waitUntil);
    // Counting never throws into the request, and the flush's promise resolves.
    await expect(Promise.all(pending)).resolves.toBeDefined();
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      {
        msg: "edge-mirror.stats_flush_failed",
        failedFlushes: 1,
        error: "Error: SQLITE_TOOBIG: string or blob too big",
      },
    ]);
    failing = false;
    buffer.countRequest("next", true, waitUntil);
    await Promise.all(pending);
    expect(sent.map((b) => [...b.tally.keys()])).toEqual([["next"]]);
  });

  it("logs failed flushes at most once a minute, with how many failed since the last line", async () => {
    const lines: Array<Record<string, unknown>> = [];
    let now = Date.UTC(2026, 0, 1);
    let failing = true;
    const buffer = new StatsBuffer(
      async () => {
        if (failing) throw new Error("object unavailable");
      },
      0,
      { log: (line) => lines.push(JSON.parse(line)), now: () => now },
    );
    const flush = async () => {
      const pending: Promise<unknown>[] = [];
      buffer.countRequest("r", false, (p) => pending.push(p));
      await Promise.all(pending);
    };
    await flush();
    for (let i = 0; i < 4; i++) {
      now += 10_000;
      await flush();
    }
    expect(lines.map((l) => l.failedFlushes)).toEqual([1]);
    now += 20_000;
    await flush();
    // The four held back and this one, a minute after the first line.
    expect(lines[1]).toEqual({
      msg: "edge-mirror.stats_flush_failed",
      failedFlushes: 5,
      since: "2026-01-01T00:00:00.000Z",
      error: "Error: object unavailable",
    });
    now += 30_000;
    await flush();
    failing = false;
    now += 30_000;
    await flush();
    // One more failure, reported with the next flush after the minute although that one succeeded.
    expect(lines.map((l) => l.failedFlushes)).toEqual([1, 5, 1]);
    now += 60_000;
    await flush();
    expect(lines).toHaveLength(3);
  });
});

/**
 * @module stats/buffer
 * Batches an isolate's counts so that its stats shard gets at most one write per isolate per
 * `STATS_FLUSH_MS` however busy the route. The flush waits inside the `waitUntil` of the request
 * that opened the batch, so nothing is left behind when the isolate idles. Counting itself is
 * pure and allocation-light (stats/tally); the send is the only I/O.
 */
import type { OutcomeSink } from "../record/index.js";
import { countOutcome, countRequest, emptyBatch, type OpenBatch, type StatsBatch } from "./tally.js";

type WaitUntil = (promise: Promise<unknown>) => void;

export class StatsBuffer {
  private pending: OpenBatch | undefined;
  private warned = false;

  constructor(
    private readonly send: (batch: StatsBatch) => Promise<unknown>,
    private readonly flushAfterMs: number,
  ) {}

  /** The open batch; the first addition schedules the batch's flush in `waitUntil`. */
  private open(waitUntil: WaitUntil): OpenBatch {
    if (this.pending) return this.pending;
    const batch = emptyBatch();
    this.pending = batch;
    waitUntil(this.flushLater(batch));
    return batch;
  }

  private async flushLater(batch: OpenBatch): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.flushAfterMs));
    if (this.pending === batch) this.pending = undefined;
    try {
      await this.send({ tally: batch.tally, samples: batch.samples });
    } catch (err) {
      // Counters are best effort: a lost batch must cost neither the client nor the mirrors.
      if (!this.warned) console.error(JSON.stringify({ msg: "edge-mirror.stats_unavailable", error: String(err) }));
      this.warned = true;
    }
  }

  sink(waitUntil: WaitUntil): OutcomeSink {
    return (outcome) => countOutcome(this.open(waitUntil), outcome);
  }

  countRequest(route: string, mirrored: boolean, waitUntil: WaitUntil): void {
    countRequest(this.open(waitUntil).tally, route, mirrored);
  }
}

/**
 * @module stats/buffer
 * Batches an isolate's counts so that the `MirrorStats` object gets at most one write per
 * isolate per `STATS_FLUSH_MS` however busy the route. The flush waits inside the `waitUntil`
 * of the request that opened the batch, so nothing is left behind when the isolate idles.
 */
import type { MirrorOutcome, OutcomeSink } from "../record/index.js";
import { countOutcome, countRequest, emptyBatch, type StatsBatch } from "./index.js";

export class StatsBuffer {
  private pending: StatsBatch | undefined;
  private warned = false;

  constructor(
    private readonly send: (batch: StatsBatch) => Promise<void>,
    private readonly flushAfterMs: number,
  ) {}

  /** Adds to the open batch; the first addition schedules the batch's flush in `waitUntil`. */
  add(update: (batch: StatsBatch) => void, waitUntil: (promise: Promise<unknown>) => void): void {
    if (!this.pending) {
      const batch = emptyBatch();
      this.pending = batch;
      waitUntil(this.flushLater(batch));
    }
    update(this.pending);
  }

  private async flushLater(batch: StatsBatch): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.flushAfterMs));
    if (this.pending === batch) this.pending = undefined;
    try {
      await this.send(batch);
    } catch (err) {
      // Counters are best effort: a lost batch must cost neither the client nor the mirrors.
      if (!this.warned) console.error(JSON.stringify({ msg: "edge-mirror.stats_unavailable", error: String(err) }));
      this.warned = true;
    }
  }

  sink(waitUntil: (promise: Promise<unknown>) => void): OutcomeSink {
    return (outcome: MirrorOutcome) => this.add((batch) => countOutcome(batch, outcome), waitUntil);
  }

  countRequest(route: string, mirrored: boolean, waitUntil: (promise: Promise<unknown>) => void): void {
    this.add((batch) => countRequest(batch.tally, route, mirrored), waitUntil);
  }
}

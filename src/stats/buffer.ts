/**
 * @module stats/buffer
 * Batches an isolate's counts so that its stats shard gets at most one write per isolate per
 * `STATS_FLUSH_MS` however busy the route. The flush waits inside the `waitUntil` of the request
 * that opened the batch, so nothing is left behind when the isolate idles. A failed flush is
 * logged, at most one line per `FAILED_FLUSH_LOG_MS` saying how many failed since the last.
 * Counting itself is pure and allocation-light (stats/tally); the send and that line are the
 * only I/O.
 */
import type { OutcomeSink } from "../record/index.js";
import { type EncodedBatch, encodeTally } from "./flush-log.js";
import { countOutcome, countRequest, emptyBatch, type OpenBatch } from "./tally.js";

type WaitUntil = (promise: Promise<unknown>) => void;

/** At most one line about failed flushes per isolate in this long. */
export const FAILED_FLUSH_LOG_MS = 60_000;

export interface StatsBufferOptions {
  /** Where the failed-flush line goes (tests). */
  log?: (line: string) => void;
  now?: () => number;
}

export class StatsBuffer {
  private pending: OpenBatch | undefined;
  /** Flushes that failed since the last line about them. */
  private failedSinceLine = 0;
  private lineAt: number | undefined;
  private lastError = "";
  private readonly log: (line: string) => void;
  private readonly now: () => number;

  constructor(
    /** Sends a batch, its tally encoded as the shard's flush log keeps it (stats/flush-log). */
    private readonly send: (batch: EncodedBatch) => Promise<unknown>,
    private readonly flushAfterMs: number,
    options: StatsBufferOptions = {},
  ) {
    this.log = options.log ?? console.error;
    this.now = options.now ?? Date.now;
  }

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
      await this.send({ encoded: encodeTally(batch.tally), samples: batch.samples });
    } catch (err) {
      // Counters are best effort: a lost batch must cost neither the client nor the mirrors.
      this.failedSinceLine++;
      this.lastError = String(err).slice(0, 500);
    }
    if (this.failedSinceLine > 0) this.report();
  }

  /**
   * Every failed flush is counted in a line, but a shard that keeps failing writes one line a
   * minute per isolate rather than one per flush (Workers Logs bills per line). Failures held
   * back are reported with the next flush after the minute, failed or not.
   */
  private report(): void {
    const now = this.now();
    if (this.lineAt !== undefined && now - this.lineAt < FAILED_FLUSH_LOG_MS) return;
    this.log(
      JSON.stringify({
        msg: "edge-mirror.stats_flush_failed",
        failedFlushes: this.failedSinceLine,
        ...(this.lineAt === undefined ? {} : { since: new Date(this.lineAt).toISOString() }),
        error: this.lastError,
      }),
    );
    this.lineAt = now;
    this.failedSinceLine = 0;
  }

  sink(waitUntil: WaitUntil): OutcomeSink {
    return (outcome) => countOutcome(this.open(waitUntil), outcome);
  }

  countRequest(route: string, mirrored: boolean, waitUntil: WaitUntil): void {
    countRequest(this.open(waitUntil).tally, route, mirrored);
  }
}

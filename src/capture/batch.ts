/**
 * @module capture/batch
 * Batches an isolate's captured records so that R2 gets one object per route per batch, never
 * one per request: a batch opens with its first record and is written `flushMs` later, or at
 * once when it reaches `maxBatchChars`, inside the `waitUntil` of the request that opened (or
 * filled) it — as stats/buffer does for the counters — so nothing is left behind when the isolate
 * idles. What an isolate that dies loses is its open batch: at most one window of records.
 * Every record held takes its size from the isolate's memory budget until its batch is written;
 * one that does not fit is dropped. Lost records (dropped, or in a write that failed) are logged,
 * at most one line per `LOST_LOG_MS`. The write itself is handed in (capture/r2).
 */
import type { Hold, MemoryBudget } from "../body/budget.js";
import { LOOKBACK_MS } from "./keys.js";

type WaitUntil = (promise: Promise<unknown>) => void;

/** One route's records of one batch: what becomes one R2 object. */
export interface BatchObject {
  route: string;
  /** Earliest and latest start among `lines`, epoch ms. */
  firstStart: number;
  lastStart: number;
  /** NDJSON lines, without their newlines. */
  lines: string[];
  /** Characters in `lines`. */
  chars: number;
}

/** Writes one object; `hold` is the batch's, for what the write itself holds (the gzipped bytes). */
export type WriteObject = (object: BatchObject, hold: Hold) => Promise<void>;

/** Defaults: a batch is written 5 s after it opens, or once it holds 4 MiB of records. */
export const DEFAULT_CAPTURE_FLUSH_MS = 5000;
export const MAX_CAPTURE_FLUSH_MS = 60_000;
export const DEFAULT_BATCH_CHARS = 4 * 1024 * 1024;

/** At most one line about lost records per isolate in this long. */
export const LOST_LOG_MS = 60_000;

/**
 * A record that started this long before it is added would make its object span more than keys'
 * `LOOKBACK_MS` (the batch may stay open `MAX_CAPTURE_FLUSH_MS` more), and an export could miss
 * it: it is dropped. No request lives this long (a route's longest timeout is 300 s).
 */
export const MAX_RECORD_AGE_MS = LOOKBACK_MS - MAX_CAPTURE_FLUSH_MS - 30_000;

/**
 * Bytes a line of `chars` characters takes from the budget: two per character, the most a
 * JavaScript string needs, so that the budget is never under-counted.
 */
export const lineBytes = (chars: number) => 2 * chars;

export type LossReason = "memory_budget" | "write_failed" | "too_old";

export interface CaptureBufferOptions {
  flushMs: number;
  maxBatchChars?: number;
  /** Where the lost-records line goes (tests). */
  log?: (line: string) => void;
  now?: () => number;
}

interface OpenBatch {
  objects: Map<string, BatchObject>;
  chars: number;
  hold: Hold;
}

export class CaptureBuffer {
  private pending: OpenBatch | undefined;
  private readonly lost = new Map<LossReason, number>();
  private lastError = "";
  private lineAt: number | undefined;
  private readonly flushMs: number;
  private readonly maxBatchChars: number;
  private readonly log: (line: string) => void;
  private readonly now: () => number;

  constructor(
    private readonly write: WriteObject,
    private readonly budget: MemoryBudget,
    options: CaptureBufferOptions,
  ) {
    this.flushMs = options.flushMs;
    this.maxBatchChars = options.maxBatchChars ?? DEFAULT_BATCH_CHARS;
    this.log = options.log ?? console.error;
    this.now = options.now ?? Date.now;
  }

  /**
   * Adds one record's line to the open batch (opening one, whose write waits in `waitUntil`);
   * false when it was dropped (the budget, or its age). A batch this line would take past
   * `maxBatchChars` is written now, and the line opens the next one.
   */
  add(route: string, startedAt: number, line: string, waitUntil: WaitUntil): boolean {
    if (this.now() - startedAt > MAX_RECORD_AGE_MS) return this.drop("too_old", waitUntil);
    let batch = this.pending;
    if (batch && batch.chars > 0 && batch.chars + line.length > this.maxBatchChars) {
      this.pending = undefined;
      waitUntil(this.flush(batch));
      batch = undefined;
    }
    if (!batch) {
      batch = { objects: new Map(), chars: 0, hold: this.budget.hold() };
      this.pending = batch;
      waitUntil(this.flushLater(batch));
    }
    if (!batch.hold.take(lineBytes(line.length))) return this.drop("memory_budget", waitUntil);
    let object = batch.objects.get(route);
    if (!object) {
      object = { route, firstStart: startedAt, lastStart: startedAt, lines: [], chars: 0 };
      batch.objects.set(route, object);
    }
    object.lines.push(line);
    object.chars += line.length;
    object.firstStart = Math.min(object.firstStart, startedAt);
    object.lastStart = Math.max(object.lastStart, startedAt);
    batch.chars += line.length;
    return true;
  }

  /** Counts a record that was lost without a batch to report it with: the next flush's line does. */
  private drop(reason: LossReason, waitUntil: WaitUntil): false {
    this.count(reason, 1);
    // Reported with the open batch's write; with none open, on its own.
    if (!this.pending) waitUntil(Promise.resolve().then(() => this.report()));
    return false;
  }

  private count(reason: LossReason, records: number): void {
    this.lost.set(reason, (this.lost.get(reason) ?? 0) + records);
  }

  private async flushLater(batch: OpenBatch): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.flushMs));
    if (this.pending !== batch) return;
    this.pending = undefined;
    await this.flush(batch);
  }

  private async flush(batch: OpenBatch): Promise<void> {
    try {
      for (const object of batch.objects.values()) {
        try {
          await this.write(object, batch.hold);
        } catch (err) {
          // Captures are best effort: a lost object must cost neither the client nor the next batch.
          this.count("write_failed", object.lines.length);
          this.lastError = String(err).slice(0, 500);
        }
      }
    } finally {
      batch.hold.release();
    }
    this.report();
  }

  /**
   * Every lost record is counted in a line, but an isolate whose bucket keeps failing writes one
   * line a minute rather than one per batch (Workers Logs bills per line).
   */
  private report(): void {
    if (this.lost.size === 0) return;
    const now = this.now();
    if (this.lineAt !== undefined && now - this.lineAt < LOST_LOG_MS) return;
    const reasons = Object.fromEntries(this.lost);
    const records = [...this.lost.values()].reduce((a, b) => a + b, 0);
    this.log(
      JSON.stringify({
        msg: "edge-mirror.capture_lost",
        records,
        reasons,
        ...(this.lineAt === undefined ? {} : { since: new Date(this.lineAt).toISOString() }),
        ...(this.lastError ? { error: this.lastError } : {}),
      }),
    );
    this.lineAt = now;
    this.lost.clear();
    this.lastError = "";
  }
}

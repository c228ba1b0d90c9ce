/**
 * @module record
 * The typed outcome of every mirror decision and its one structured log line. Metrics sinks
 * consume the same `MirrorOutcome` value, so what is logged and what is counted never drift.
 */

import type { CompareSummary, DiffSample } from "../compare/index.js";

export { statusClass } from "../compare/index.js";

export type SkipReason =
  | "not_sampled"
  | "body_too_large"
  | "body_read_failed"
  /** The body copy would not fit the isolate's memory budget (`MIRROR_MEMORY_BUDGET_BYTES`). */
  | "memory_budget"
  | "loop_marker"
  | "unknown_cluster"
  | "cluster_not_allowed"
  | "headers_too_large"
  | "upgrade"
  | "policy_store_unavailable"
  /**
   * A durable copy failed and could not be spooled (the queue refused it or is not bound, its
   * body could not be stored): it was sent once, as a best-effort copy is.
   */
  | "spool_unavailable";

export type MirrorErrorKind = "timeout" | "dns" | "connect" | "network" | "circuit_open";

interface OutcomeBase {
  route: string;
  /** Cluster name, or the origin for an `origin` mirror. */
  mirror: string;
  /** The request's `cf-ray` (or a generated id), to join with the primary's logs. */
  requestId: string;
}

/**
 * Why a durable copy's attempt did not deliver it: no answer (the error kinds of a failed copy),
 * a `status` worth retrying (408, 425, 429, 5xx), inline no time left to try within `waitUntil`
 * (`wait_until_budget`), or, from the spool, a body gone from R2 (`body_lost`, which kills it).
 */
export type RetryCause = MirrorErrorKind | "status" | "wait_until_budget" | "body_lost";

/** What a durable copy's attempt met: the cause, the status when it was one, and a short message. */
interface AttemptFailure {
  error: RetryCause;
  status?: number;
  message: string;
}

/** Where a spooled copy's body waits: in the queue message, in the R2 bucket, or nowhere (none). */
export type SpooledBodyPlace = "message" | "r2" | "none";

/** Present on outcomes of mirrors with `compare` set: the verdict and, when they differ, a sample. */
interface Compared {
  compare?: CompareSummary;
  sample?: DiffSample;
}

/**
 * The primary's answer to the request a copy was made of: its status (`null` when it gave none,
 * a timeout or refused connection) and its time to response headers, as the request path saw them.
 * The release verdict judges the mirror against it, request by request (src/verdict).
 */
export interface PrimaryAnswer {
  status: number | null;
  latencyMs: number;
}

/** Set on the `sent` and `failed` outcomes of a copy that went out (not one the breaker held back). */
interface BesidePrimary {
  primary?: PrimaryAnswer;
}

/**
 * One per planned copy (`sent`, `failed`, `skipped` or, for a durable copy, `spooled`); then, for
 * a spooled copy, one `retrying` per attempt from the spool that failed in a way worth another
 * and one final `redelivered`, `rejected` or `dead` (a `redriven` dead copy is pending again).
 * Every sink sees the same values; docs/metrics.md has the accounting.
 */
export type MirrorOutcome =
  | (OutcomeBase & Compared & BesidePrimary & { kind: "sent"; status: number; latencyMs: number; bodyBytes: number })
  | (OutcomeBase &
      Compared &
      BesidePrimary & { kind: "failed"; error: MirrorErrorKind; message: string; latencyMs: number })
  | (OutcomeBase & { kind: "skipped"; reason: SkipReason; detail?: string })
  /** A durable copy whose inline send failed (or was not tried) went to the spool. */
  | (OutcomeBase & AttemptFailure & { kind: "spooled"; latencyMs: number; bodyBytes: number; bodyIn: SpooledBodyPlace })
  /** An attempt from the spool failed; the copy waits `delaySeconds` for the next. */
  | (OutcomeBase & AttemptFailure & { kind: "retrying"; attempt: number; delaySeconds: number; latencyMs: number })
  /** A spooled copy delivered by an attempt from the spool, `ageMs` after the request came. */
  | (OutcomeBase & {
      kind: "redelivered";
      attempt: number;
      status: number;
      latencyMs: number;
      bodyBytes: number;
      ageMs: number;
    })
  /** A spooled copy the mirror answered with a status not worth retrying (a 4xx but 408, 425, 429): final. */
  | (OutcomeBase & { kind: "rejected"; attempt: number; status: number; latencyMs: number; ageMs: number })
  /** A spooled copy that used its attempts (or whose body was lost): it went to the dead-letter queue. */
  | (OutcomeBase & AttemptFailure & { kind: "dead"; attempts: number; ageMs: number })
  /** A dead copy sent again from the dead-letter queue: pending once more. */
  | (OutcomeBase & { kind: "redriven"; ageMs: number });

export type LogLevel = "debug" | "info" | "off";

export function parseLogLevel(value: string | undefined): LogLevel {
  return value === "debug" || value === "off" ? value : "info";
}

/** Share of successful copies logged at `info`: 1 in 100 unless `LOG_SAMPLE_RATE` says otherwise. */
export const DEFAULT_LOG_SAMPLE_RATE = 0.01;

/** `LOG_SAMPLE_RATE` as a share from 0 to 1; anything else means the default. */
export function parseSampleRate(value: string | undefined): number {
  if (value === undefined || value.trim() === "") return DEFAULT_LOG_SAMPLE_RATE;
  const rate = Number(value);
  return Number.isFinite(rate) && rate >= 0 && rate <= 1 ? rate : DEFAULT_LOG_SAMPLE_RATE;
}

/** Anything that wants every outcome (logs now; counters and Analytics Engine later). */
export type OutcomeSink = (outcome: MirrorOutcome) => void;

export interface LogOptions {
  level: LogLevel;
  /** At `info`, the share of successful copies (`sent`, verdict not `differ`) that are logged. */
  sampleRate: number;
  write?: (line: string) => void;
  random?: () => number;
}

/**
 * Whether `outcome` is always worth a line at `info`: whatever went wrong (failures, timeouts,
 * skips) and every `differ` verdict. Unsampled requests are the common case on low-percentage
 * routes and are logged only at `debug`.
 */
function alwaysLogged(outcome: MirrorOutcome): boolean {
  switch (outcome.kind) {
    case "skipped":
      return outcome.reason !== "not_sampled";
    case "failed":
    case "spooled":
    case "rejected":
    case "dead":
    case "redriven":
      return true;
    case "retrying":
    case "redelivered":
      return false;
    case "sent":
      return outcome.compare?.verdict === "differ" || outcome.compare?.verdict === "error";
  }
}

/**
 * Logged at `debug` only: an unsampled mirror, and a spooled copy's attempt that failed and will
 * be tried again — a mirror down for an hour would write one line per copy per attempt; the
 * `spooled` line, the final one and the counters say what happened.
 */
function debugOnly(outcome: MirrorOutcome): boolean {
  return outcome.kind === "skipped" || outcome.kind === "retrying";
}

/**
 * One JSON line per outcome worth reading. Workers Logs bills per line, so at `info` a
 * successful copy is logged with probability `sampleRate`, and every line carries the rate it
 * was sampled at (1 for lines that are always written) so that counts can be scaled back.
 * Counters and Analytics Engine see every outcome regardless.
 */
export function logSink(options: LogOptions): OutcomeSink {
  const { level, sampleRate } = options;
  const write = options.write ?? console.log;
  const random = options.random ?? Math.random;
  return (outcome) => {
    if (level === "off") return;
    let rate = 1;
    if (level === "info" && !alwaysLogged(outcome)) {
      if (debugOnly(outcome) || sampleRate <= 0 || random() >= sampleRate) return;
      rate = sampleRate;
    }
    // Samples go to the dashboard's store; the log line carries the verdict and field names only.
    write(JSON.stringify({ msg: "edge-mirror.mirror", ...outcome, sample: undefined, sampleRate: rate }));
  };
}

export function fanOut(sinks: readonly OutcomeSink[]): OutcomeSink {
  return (outcome) => {
    for (const sink of sinks) {
      try {
        sink(outcome);
      } catch {
        // A broken sink must never turn a mirror outcome into a client-visible failure.
      }
    }
  };
}

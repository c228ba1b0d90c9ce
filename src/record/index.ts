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
  | "policy_store_unavailable";

export type MirrorErrorKind = "timeout" | "dns" | "connect" | "network" | "circuit_open";

interface OutcomeBase {
  route: string;
  /** Cluster name, or the origin for an `origin` mirror. */
  mirror: string;
  /** The request's `cf-ray` (or a generated id), to join with the primary's logs. */
  requestId: string;
}

/** Present on outcomes of mirrors with `compare` set: the verdict and, when they differ, a sample. */
interface Compared {
  compare?: CompareSummary;
  sample?: DiffSample;
}

export type MirrorOutcome =
  | (OutcomeBase & Compared & { kind: "sent"; status: number; latencyMs: number; bodyBytes: number })
  | (OutcomeBase & Compared & { kind: "failed"; error: MirrorErrorKind; message: string; latencyMs: number })
  | (OutcomeBase & { kind: "skipped"; reason: SkipReason; detail?: string });

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
  if (outcome.kind === "skipped") return outcome.reason !== "not_sampled";
  return outcome.kind === "failed" || outcome.compare?.verdict === "differ" || outcome.compare?.verdict === "error";
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
      if (outcome.kind === "skipped" || sampleRate <= 0 || random() >= sampleRate) return;
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

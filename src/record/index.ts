/**
 * @module record
 * The typed outcome of every mirror decision and its one structured log line. Metrics sinks
 * consume the same `MirrorOutcome` value, so what is logged and what is counted never drift.
 */

import type { CompareSummary, DiffSample } from "../compare/index.js";

export type SkipReason =
  | "not_sampled"
  | "body_too_large"
  | "body_read_failed"
  | "loop_marker"
  | "unknown_cluster"
  | "cluster_not_allowed"
  | "headers_too_large"
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

/** HTTP status → "2xx" … "5xx"; the metrics dimension for mirror answers. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

/** Anything that wants every outcome (logs now; counters and Analytics Engine later). */
export type OutcomeSink = (outcome: MirrorOutcome) => void;

/**
 * One JSON line per outcome. Unsampled requests are the common case on low-percentage routes,
 * so they are logged only at `debug`; everything else at `info`.
 */
export function logSink(level: LogLevel, write: (line: string) => void = console.log): OutcomeSink {
  return (outcome) => {
    if (level === "off") return;
    if (level === "info" && outcome.kind === "skipped" && outcome.reason === "not_sampled") return;
    // Samples go to the dashboard's store; the log line carries the verdict and field names only.
    write(JSON.stringify({ msg: "edge-mirror.mirror", ...outcome, sample: undefined }));
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

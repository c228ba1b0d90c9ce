/**
 * @module record/analytics
 * One Workers Analytics Engine data point per mirror outcome, when the optional
 * `MIRROR_ANALYTICS` binding exists — but for `not_sampled` skips, which are most outcomes of a
 * sampled mirror and tell nothing the live counters do not (they count every one): a point costs
 * as much whatever it says. The column layout is documented in docs/metrics.md and is
 * append-only: queries written against it keep working.
 */
import { type MirrorOutcome, type OutcomeSink, statusClass } from "./index.js";

export function analyticsPoint(outcome: MirrorOutcome): AnalyticsEngineDataPoint {
  const detail =
    outcome.kind === "skipped"
      ? outcome.reason
      : outcome.kind === "failed"
        ? outcome.error
        : statusClass(outcome.status);
  const compared = outcome.kind === "skipped" ? undefined : outcome.compare;
  return {
    indexes: [outcome.route.slice(0, 96)],
    blobs: [outcome.route, outcome.mirror, outcome.kind, detail, compared?.verdict ?? "", outcome.requestId],
    doubles: [
      outcome.kind === "skipped" ? 0 : outcome.latencyMs,
      outcome.kind === "sent" ? outcome.status : 0,
      outcome.kind === "sent" ? outcome.bodyBytes : 0,
    ],
  };
}

export function analyticsSink(dataset: AnalyticsEngineDataset): OutcomeSink {
  return (outcome) => {
    if (outcome.kind === "skipped" && outcome.reason === "not_sampled") return;
    dataset.writeDataPoint(analyticsPoint(outcome));
  };
}

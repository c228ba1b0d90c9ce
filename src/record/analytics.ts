/**
 * @module record/analytics
 * One Workers Analytics Engine data point per mirror outcome, when the optional
 * `MIRROR_ANALYTICS` binding exists — but for `not_sampled` skips, which are most outcomes of a
 * sampled mirror and tell nothing the live counters do not (they count every one): a point costs
 * as much whatever it says. The column layout is documented in docs/metrics.md and is
 * append-only: queries written against it keep working.
 */
import { type MirrorOutcome, type OutcomeSink, statusClass } from "./index.js";

/** `blob4`: the status class of an answer, the error kind of a failure, the reason of a skip. */
function detailOf(outcome: MirrorOutcome): string {
  switch (outcome.kind) {
    case "skipped":
      return outcome.reason;
    case "failed":
      return outcome.error;
    case "sent":
    case "redelivered":
    case "rejected":
      return statusClass(outcome.status);
    case "spooled":
    case "retrying":
    case "dead":
      return outcome.error === "status" && outcome.status !== undefined ? statusClass(outcome.status) : outcome.error;
    case "redriven":
      return "";
  }
}

export function analyticsPoint(outcome: MirrorOutcome): AnalyticsEngineDataPoint {
  const compared = outcome.kind === "sent" || outcome.kind === "failed" ? outcome.compare : undefined;
  const latency = "latencyMs" in outcome ? outcome.latencyMs : 0;
  const status = "status" in outcome && outcome.status !== undefined ? outcome.status : 0;
  const bodyBytes = "bodyBytes" in outcome ? outcome.bodyBytes : 0;
  return {
    indexes: [outcome.route.slice(0, 96)],
    blobs: [outcome.route, outcome.mirror, outcome.kind, detailOf(outcome), compared?.verdict ?? "", outcome.requestId],
    doubles: [latency, status, bodyBytes],
  };
}

export function analyticsSink(dataset: AnalyticsEngineDataset): OutcomeSink {
  return (outcome) => {
    if (outcome.kind === "skipped" && outcome.reason === "not_sampled") return;
    dataset.writeDataPoint(analyticsPoint(outcome));
  };
}

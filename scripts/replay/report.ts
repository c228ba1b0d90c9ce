/**
 * @module scripts/replay/report
 * What a replay found, built as it goes: status classes of the recorded primary and of the
 * candidate, latency percentiles of both, and with `--compare` each answer against the recorded
 * one through the compare engine of live shadowing (src/compare: JSON field by field, array
 * indexes folded, `ignorePaths`), after the capture's own redaction rules are applied to the
 * candidate's answer too — so that a redacted field does not differ, and no value capture hid
 * can reach the report. Pure apart from hashing (the engine's samples).
 */

import type { CaptureRecord, RecordedBody } from "../../src/capture/record.js";
import { looksLikeJson, redactHeaderPairs } from "../../src/capture/redact.js";
import { bodyBytes } from "../../src/capture/text.js";
import { compareResponses, diffSample, summarizeComparison } from "../../src/compare/index.js";
import { redactJson } from "../../src/compare/json.js";
import type { CompareSpec } from "../../src/policy/index.js";
import { statusClass } from "../../src/record/index.js";

/** What came back for one replayed request. */
export type Answer =
  | { ok: true; status: number; headers: Array<[string, string]>; body: Uint8Array | undefined; latencyMs: number }
  | { ok: false; error: string; latencyMs: number };

export interface CompareOptions {
  ignorePaths: readonly string[];
  /** Response headers compared besides the status and the body. */
  headers: readonly string[];
}

/** Examples kept per differing field. */
export const EXAMPLES_PER_FIELD = 3;

interface FieldRow {
  field: string;
  count: number;
  examples: Array<{ at: string; method: string; path: string; primary: string; candidate: string }>;
}

export function percentiles(
  values: readonly number[],
): { count: number; p50: number; p90: number; p99: number; max: number; mean: number } | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    count: sorted.length,
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(sorted[sorted.length - 1] as number),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
}

const increment = (counts: Map<string, number>, key: string, by = 1) => counts.set(key, (counts.get(key) ?? 0) + by);
const sortedObject = (counts: Map<string, number>) =>
  Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)));

function recordedBytes(body: RecordedBody | null | undefined): Uint8Array | undefined {
  if (!body || body.omitted !== undefined || body.truncated || body.text === undefined) return undefined;
  return bodyBytes(body.encoding ?? "utf8", body.text);
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The candidate's body as capture would have kept it: JSON redacted by the record's rules. */
function redactedCandidateBody(record: CaptureRecord, headers: Headers, body: Uint8Array): Uint8Array {
  const { jsonPaths, secrets } = record.redact;
  if ((!secrets && jsonPaths.length === 0) || !looksLikeJson(headers.get("content-type"), body)) return body;
  try {
    const document = JSON.parse(strictUtf8.decode(body));
    return utf8.encode(JSON.stringify(redactJson(document, { paths: jsonPaths, secrets })));
  } catch {
    return body;
  }
}

export class ReplayReport {
  private readonly recordedStatus = new Map<string, number>();
  private readonly candidateStatus = new Map<string, number>();
  private readonly statusChanges = new Map<string, number>();
  private readonly recordedLatency: number[] = [];
  private readonly candidateLatency: number[] = [];
  private readonly fields = new Map<string, FieldRow>();
  private readonly verdicts = { match: 0, differ: 0, error: 0 };
  private readonly errors = new Map<string, number>();
  /** Requests with a recorded answer whose status class the candidate did not give (failures included). */
  private statusDiffering = 0;
  private statusCompared = 0;
  private bodiesNotCompared = 0;
  private noRecordedAnswer = 0;
  sent = 0;
  failed = 0;

  constructor(private readonly compare: CompareOptions | undefined) {}

  /** Counts one answer; with a comparison, resolves once it is compared (nothing to wait for otherwise). */
  add(at: string, record: CaptureRecord, answer: Answer): Promise<void> | undefined {
    this.sent++;
    const recorded = record.response;
    const recordedClass = recorded ? statusClass(recorded.status) : `failed (${record.error ?? "no answer"})`;
    const candidateClass = answer.ok ? statusClass(answer.status) : "failed";
    increment(this.recordedStatus, recordedClass);
    increment(this.candidateStatus, candidateClass);
    if (recordedClass !== candidateClass) increment(this.statusChanges, `${recordedClass} → ${candidateClass}`);
    if (record.latencyMs !== null) this.recordedLatency.push(record.latencyMs);
    if (answer.ok) this.candidateLatency.push(answer.latencyMs);
    else {
      this.failed++;
      increment(this.errors, answer.error);
    }
    if (!recorded) {
      this.noRecordedAnswer++;
      return undefined;
    }
    this.statusCompared++;
    if (recordedClass !== candidateClass) this.statusDiffering++;
    return this.compare ? this.compareOne(at, record, recorded, answer) : undefined;
  }

  private async compareOne(
    at: string,
    record: CaptureRecord,
    recorded: NonNullable<CaptureRecord["response"]>,
    answer: Answer,
  ): Promise<void> {
    const options = this.compare as CompareOptions;
    if (!answer.ok) {
      this.verdicts.error++;
      return;
    }
    if (answer.body === undefined) {
      // The candidate's body was past what is read for a comparison.
      this.verdicts.error++;
      increment(this.errors, "candidate body too large to compare");
      return;
    }
    const primaryBody = recordedBytes(recorded.body);
    const rules = record.redact;
    const candidateHeaders = new Headers(redactHeaderPairs(answer.headers, rules).pairs);
    // A body capture did not keep whole cannot be compared: status and headers still are. A HEAD's
    // answer has no body to compare.
    const head = record.request.method === "HEAD";
    const compareBodies = primaryBody !== undefined && !head;
    if (!compareBodies && !head) this.bodiesNotCompared++;
    const empty = new Uint8Array();
    const spec: CompareSpec = {
      headers: [...options.headers],
      ignorePaths: [...options.ignorePaths],
      redactHeaders: rules.headers,
      redactPaths: rules.jsonPaths,
      redactSecrets: rules.secrets,
      maxBodyBytes: Number.MAX_SAFE_INTEGER,
    };
    const comparison = compareResponses({
      primary: {
        status: recorded.status,
        headers: new Headers(recorded.headers),
        body: compareBodies ? (primaryBody as Uint8Array) : empty,
      },
      candidate: {
        status: answer.status,
        headers: candidateHeaders,
        body: compareBodies ? redactedCandidateBody(record, candidateHeaders, answer.body) : empty,
      },
      spec,
    });
    const summary = summarizeComparison(comparison);
    this.verdicts[summary.verdict]++;
    if (summary.verdict !== "differ") return;
    const url = record.request.url;
    const sample = await diffSample(comparison, spec, {
      at: record.startedAt,
      route: record.route,
      mirror: "candidate",
      requestId: record.id,
      method: record.request.method,
      pathAndQuery: url.slice(url.indexOf("/", url.indexOf("//") + 2)),
    });
    for (const field of summary.fields) {
      let row = this.fields.get(field);
      if (!row) {
        row = { field, count: 0, examples: [] };
        this.fields.set(field, row);
      }
      row.count++;
      const difference = sample.differences.find((d) => d.field === field);
      if (difference && row.examples.length < EXAMPLES_PER_FIELD) {
        row.examples.push({
          at,
          method: sample.method,
          path: sample.path,
          primary: difference.primary,
          candidate: difference.candidate,
        });
      }
    }
  }

  /** Compared answers that differed so far (for the progress bar). */
  get differing(): number {
    return this.verdicts.differ;
  }

  /** How many of the compared requests differed (an answer that failed counts as differing). */
  diffRate(): number | undefined {
    const compared = this.verdicts.match + this.verdicts.differ + this.verdicts.error;
    return compared === 0 ? undefined : (this.verdicts.differ + this.verdicts.error) / compared;
  }

  /** How many requests with a recorded answer got another status class (failures included). */
  statusRate(): number | undefined {
    return this.statusCompared === 0 ? undefined : this.statusDiffering / this.statusCompared;
  }

  result() {
    const compared = this.verdicts.match + this.verdicts.differ + this.verdicts.error;
    return {
      sent: this.sent,
      failed: this.failed,
      errors: sortedObject(this.errors),
      statusClasses: {
        recorded: sortedObject(this.recordedStatus),
        candidate: sortedObject(this.candidateStatus),
        changes: sortedObject(this.statusChanges),
        differingRate: this.statusRate() ?? null,
      },
      latencyMs: { recorded: percentiles(this.recordedLatency), candidate: percentiles(this.candidateLatency) },
      noRecordedAnswer: this.noRecordedAnswer,
      ...(this.compare
        ? {
            compare: {
              compared,
              ...this.verdicts,
              diffRate: this.diffRate() ?? null,
              bodiesNotCompared: this.bodiesNotCompared,
              ignorePaths: [...this.compare.ignorePaths],
              headers: [...this.compare.headers],
              fields: [...this.fields.values()]
                .sort((a, b) => b.count - a.count || a.field.localeCompare(b.field))
                .map((row) => ({ ...row, rate: compared === 0 ? 0 : row.count / compared })),
            },
          }
        : {}),
    };
  }
}

/**
 * @module stats/counters
 * The fixed layout of one mirror's counters. Every number an outcome can change has a slot in
 * one flat array, and the same slots, in the same order, are the columns of the shard's
 * `mirror_minute` table. Adding two batches is adding arrays slot by slot (the maximum latency
 * excepted), so isolates, minutes and shards merge exactly. Pure.
 */
import type { MirrorErrorKind, SkipReason } from "../record/index.js";
import type { StatusCounts } from "../verdict/report.js";

/** Upper bounds of the latency histogram's buckets, in ms; one more bucket holds the rest. */
export const LATENCY_BOUNDS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000] as const;

// `satisfies Record<…>` makes the compiler list every skip reason and error kind here, so a new
// one cannot be counted nowhere.
const SKIP_REASONS = Object.keys({
  not_sampled: 1,
  body_too_large: 1,
  body_read_failed: 1,
  memory_budget: 1,
  loop_marker: 1,
  unknown_cluster: 1,
  cluster_not_allowed: 1,
  headers_too_large: 1,
  upgrade: 1,
  policy_store_unavailable: 1,
  spool_unavailable: 1,
} satisfies Record<SkipReason, 1>) as SkipReason[];

const ERROR_KINDS = Object.keys({
  timeout: 1,
  dns: 1,
  connect: 1,
  network: 1,
  circuit_open: 1,
} satisfies Record<MirrorErrorKind, 1>) as MirrorErrorKind[];

const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;
export const VERDICTS = ["match", "differ", "error"] as const;
export type Verdict = (typeof VERDICTS)[number];

/**
 * What happened to durable copies after their inline send, one slot each: `spooled` (an inline
 * outcome, like sent, failed and skipped), `retried` (attempts from the spool that failed and
 * were scheduled again), and the finals of spooled copies — `redelivered`, `rejected` (a status
 * not worth retrying), `dead` — and `redriven` (dead copies sent again, pending once more).
 */
export const DELIVERY_EVENTS = ["spooled", "retried", "redelivered", "rejected", "dead", "redriven"] as const;
export type DeliveryEvent = (typeof DELIVERY_EVENTS)[number];

const SKIPPED_AT = 2;
const ERRORS_AT = SKIPPED_AT + SKIP_REASONS.length;
const STATUS_AT = ERRORS_AT + ERROR_KINDS.length;
const LATENCY_AT = STATUS_AT + STATUS_CLASSES.length;
const BUCKETS_AT = LATENCY_AT + 3;
const COMPARE_AT = BUCKETS_AT + LATENCY_BOUNDS_MS.length + 1;
const DELIVERY_AT = COMPARE_AT + VERDICTS.length;
/** The primary's answers to the copied requests: its status classes, then `failed` (no answer). */
const PRIMARY_AT = DELIVERY_AT + DELIVERY_EVENTS.length;
const NOISY_AT = PRIMARY_AT + STATUS_CLASSES.length + 1;

/** Named slots of a counter array. */
export const SLOT = {
  sent: 0,
  failed: 1,
  latencyCount: LATENCY_AT,
  latencySumMs: LATENCY_AT + 1,
  latencyMaxMs: LATENCY_AT + 2,
} as const;

export const SLOT_COUNT = NOISY_AT + 1;

/** SQL column names, slot by slot: plain identifiers, safe to build statements from. */
export const COLUMNS: readonly string[] = [
  "sent",
  "failed",
  ...SKIP_REASONS.map((r) => `skip_${r}`),
  ...ERROR_KINDS.map((k) => `err_${k}`),
  ...STATUS_CLASSES.map((s) => `status_${s}`),
  "lat_count",
  "lat_sum_ms",
  "lat_max_ms",
  ...[...LATENCY_BOUNDS_MS, "inf"].map((b) => `lat_le_${b}`),
  ...VERDICTS.map((v) => `cmp_${v}`),
  ...DELIVERY_EVENTS,
  ...STATUS_CLASSES.map((s) => `primary_${s}`),
  "primary_failed",
  "cmp_noisy",
];

const SKIP_SLOT = new Map(SKIP_REASONS.map((r, i) => [r, SKIPPED_AT + i]));
const ERROR_SLOT = new Map(ERROR_KINDS.map((k, i) => [k, ERRORS_AT + i]));

/** One mirror's counters: `SLOT_COUNT` numbers. */
export type Counts = number[];

export function newCounts(): Counts {
  return new Array<number>(SLOT_COUNT).fill(0);
}

export function latencyBucket(ms: number): number {
  const at = LATENCY_BOUNDS_MS.findIndex((bound) => ms <= bound);
  return at === -1 ? LATENCY_BOUNDS_MS.length : at;
}

export function countSkip(c: Counts, reason: SkipReason): void {
  const slot = SKIP_SLOT.get(reason);
  if (slot !== undefined) c[slot] = (c[slot] as number) + 1;
}

export function countSent(c: Counts, status: number): void {
  c[SLOT.sent] = (c[SLOT.sent] as number) + 1;
  // fetch() answers 101 or 200–599; anything else would be a runtime bug, kept in range here.
  const slot = STATUS_AT + Math.min(Math.max(Math.floor(status / 100) - 1, 0), STATUS_CLASSES.length - 1);
  c[slot] = (c[slot] as number) + 1;
}

export function countFailed(c: Counts, error: MirrorErrorKind): void {
  c[SLOT.failed] = (c[SLOT.failed] as number) + 1;
  const slot = ERROR_SLOT.get(error);
  if (slot !== undefined) c[slot] = (c[slot] as number) + 1;
}

export function countLatency(c: Counts, ms: number): void {
  c[SLOT.latencyCount] = (c[SLOT.latencyCount] as number) + 1;
  c[SLOT.latencySumMs] = (c[SLOT.latencySumMs] as number) + ms;
  c[SLOT.latencyMaxMs] = Math.max(c[SLOT.latencyMaxMs] as number, ms);
  const slot = BUCKETS_AT + latencyBucket(ms);
  c[slot] = (c[slot] as number) + 1;
}

export function countVerdict(c: Counts, verdict: Verdict): void {
  const slot = COMPARE_AT + VERDICTS.indexOf(verdict);
  c[slot] = (c[slot] as number) + 1;
}

/**
 * The primary's answer to a request whose copy went out (`status` null: it gave none), counted
 * beside the mirror's outcome so that both sides count the same requests.
 */
export function countPrimary(c: Counts, status: number | null): void {
  const slot =
    status === null
      ? PRIMARY_AT + STATUS_CLASSES.length
      : PRIMARY_AT + Math.min(Math.max(Math.floor(status / 100) - 1, 0), STATUS_CLASSES.length - 1);
  c[slot] = (c[slot] as number) + 1;
}

/** A comparison (match or differ) on which the reference cancelled at least one difference as noise. */
export function countNoisy(c: Counts): void {
  c[NOISY_AT] = (c[NOISY_AT] as number) + 1;
}

export function countDelivery(c: Counts, event: DeliveryEvent): void {
  const slot = DELIVERY_AT + DELIVERY_EVENTS.indexOf(event);
  c[slot] = (c[slot] as number) + 1;
}

export function addCounts(into: Counts, from: readonly number[]): Counts {
  for (let i = 0; i < SLOT_COUNT; i++) {
    into[i] =
      i === SLOT.latencyMaxMs ? Math.max(into[i] as number, from[i] ?? 0) : (into[i] as number) + (from[i] ?? 0);
  }
  return into;
}

/** The mirror's decisions, one per copy it was offered: sends, failures, skips and spooled copies. */
export function outcomes(c: readonly number[]): number {
  let n = (c[SLOT.sent] as number) + (c[SLOT.failed] as number) + delivery(c).spooled;
  for (let i = SKIPPED_AT; i < ERRORS_AT; i++) n += c[i] as number;
  return n;
}

export function skippedTotal(c: readonly number[]): number {
  let n = 0;
  for (let i = SKIPPED_AT; i < ERRORS_AT; i++) n += c[i] as number;
  return n;
}

export function delivery(c: readonly number[]): Record<DeliveryEvent, number> {
  const out = {} as Record<DeliveryEvent, number>;
  DELIVERY_EVENTS.forEach((event, i) => {
    out[event] = c[DELIVERY_AT + i] as number;
  });
  return out;
}

/** Copies the mirror was not sampled for: never planned, so outside the accounting below. */
export function notSampled(c: readonly number[]): number {
  return c[SKIP_SLOT.get("not_sampled") as number] as number;
}

/**
 * Every planned copy accounted for (docs/metrics.md): `planned` = `deliveredInline` +
 * `redelivered` + `dead` + `failedFinal` + `skipped` + `pending`, where `planned` is every copy
 * the mirror was sampled for. An inline answer below 400 delivered the copy; one of 400 or more,
 * and a send that failed, are final for a best-effort copy (a durable copy is spooled instead,
 * unless the answer is a 4xx not worth retrying); a spooled copy stays pending until it is
 * redelivered, rejected or dead. Over a window, `pending` is the net of copies spooled in it less
 * spooled copies that became final in it (those spooled before the window included), and `dead`
 * the copies that died in it less those sent again from the dead-letter queue.
 */
export interface Accounting {
  planned: number;
  deliveredInline: number;
  redelivered: number;
  dead: number;
  failedFinal: number;
  skipped: number;
  pending: number;
  spooled: number;
  /** Attempts from the spool that failed and were scheduled again; not copies. */
  retried: number;
  redriven: number;
}

export function accounting(c: readonly number[]): Accounting {
  const d = delivery(c);
  const answered = (cls: number) => c[STATUS_AT + cls] as number;
  const deliveredInline = answered(0) + answered(1) + answered(2);
  const failedFinal = answered(3) + answered(4) + (c[SLOT.failed] as number) + d.rejected;
  const skipped = skippedTotal(c) - notSampled(c);
  const dead = d.dead - d.redriven;
  const pending = d.spooled - d.redelivered - d.rejected - d.dead + d.redriven;
  return {
    planned: outcomes(c) - notSampled(c),
    deliveredInline,
    redelivered: d.redelivered,
    dead,
    failedFinal,
    skipped,
    pending,
    spooled: d.spooled,
    retried: d.retried,
    redriven: d.redriven,
  };
}

export function verdicts(c: readonly number[]): Record<Verdict, number> {
  return {
    match: c[COMPARE_AT] as number,
    differ: c[COMPARE_AT + 1] as number,
    error: c[COMPARE_AT + 2] as number,
  };
}

function side(c: readonly number[], at: number, failed: number): StatusCounts {
  return {
    "1xx": c[at] as number,
    "2xx": c[at + 1] as number,
    "3xx": c[at + 2] as number,
    "4xx": c[at + 3] as number,
    "5xx": c[at + 4] as number,
    failed,
  };
}

/** The primary's answers to the requests whose copies went out. */
export function primaryStatus(c: readonly number[]): StatusCounts {
  return side(c, PRIMARY_AT, c[PRIMARY_AT + STATUS_CLASSES.length] as number);
}

/**
 * The mirror's answers to the same requests: its status classes, and its failures but those the
 * breaker held back (`circuit_open`: the copy never went out, so the primary is not counted either).
 */
export function mirrorStatus(c: readonly number[]): StatusCounts {
  const heldBack = c[ERROR_SLOT.get("circuit_open") as number] as number;
  return side(c, STATUS_AT, (c[SLOT.failed] as number) - heldBack);
}

/** Comparisons on which the reference cancelled a difference as noise (the verdict's `noiseRate`). */
export function noisyComparisons(c: readonly number[]): number {
  return c[NOISY_AT] as number;
}

/** Only the non-zero counts, keyed by name; the keys are ours, never a client's. */
function named(c: readonly number[], at: number, names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = Object.create(null);
  names.forEach((name, i) => {
    const n = c[at + i] as number;
    if (n > 0) out[name] = n;
  });
  return out;
}

export const skippedByReason = (c: readonly number[]) => named(c, SKIPPED_AT, SKIP_REASONS);
export const failedByKind = (c: readonly number[]) => named(c, ERRORS_AT, ERROR_KINDS);
export const sentByStatus = (c: readonly number[]) => named(c, STATUS_AT, STATUS_CLASSES);

/**
 * The histogram's estimate of quantile `q` (0–1): the upper bound of the bucket holding it, or
 * the largest latency seen when it falls in the open-ended last bucket.
 */
export function latencyQuantile(c: readonly number[], q: number): number | undefined {
  const count = c[SLOT.latencyCount] as number;
  if (count === 0) return undefined;
  const max = c[SLOT.latencyMaxMs] as number;
  const rank = Math.ceil(q * count);
  let seen = 0;
  for (let i = 0; i <= LATENCY_BOUNDS_MS.length; i++) {
    seen += c[BUCKETS_AT + i] as number;
    if (seen >= rank) return Math.min(LATENCY_BOUNDS_MS[i] ?? max, max);
  }
  return max;
}

/**
 * @module signature
 * Divergence signatures: compared requests grouped by the set of fields that differ, so that one
 * bug (every answer differs in `$.price`) is told from many (each in a field of its own). A
 * request's signature is its differing fields as the field table counts them — indexes folded,
 * names clipped (compare's `countedName`) — each once, sorted, joined by line breaks, and at most
 * `MAX_SIGNATURE_CHARS` long. `SignatureCounter` counts signatures in a bounded table that merges
 * across isolates, shards and minutes:
 *
 * - exact, always: `total` (differing requests counted) and `other` + the kept counts = `total`;
 * - exact, while no part of what was merged had to fold a signature away (`exact` on each kept
 *   signature): a kept signature's count, the number of requests that differed in exactly its
 *   fields;
 * - otherwise a lower bound: a table that was full counted a new signature under `other`, and a
 *   kept signature's occurrences there are in `other`, not in its count (never more than `other`).
 *
 * Which signatures are kept when a merge passes `capacity`: the most frequent, ties by key. Pure.
 */
import { countedName, nameHash } from "../compare/index.js";

/** A signature's key, at most this long: a few dozen field names, or four that are 256 characters long. */
export const MAX_SIGNATURE_CHARS = 1024;
/** Signatures a counter keeps, per route and mirror; the rest are counted under `other`. */
export const MAX_SIGNATURES = 50;
/** Signatures `api/stats` and the dashboard show, per mirror. */
export const TOP_SIGNATURES = 20;
/** The field standing for the fields past `MAX_REPORTED_FIELDS` that a comparison did not name. */
export const MORE_FIELDS = "(other)";
/** A request id is a `cf-ray`; anything longer is cut. */
const MAX_REQUEST_ID_CHARS = 128;

/** What a comparison reports of its differences (`CompareSummary`). */
export interface DifferingFields {
  fields: readonly string[];
  /** How many distinct differing fields it could not name (`CompareSummary.overflow.fields`). */
  overflow?: { fields: number } | undefined;
}

/**
 * The signature of a comparison that differs: its fields counted as the field table counts them,
 * each once, sorted, joined by `\n` (no field name holds a line break: JSON paths write odd keys
 * as JSON strings, header names are tokens; one that did would be escaped). `(other)` stands for
 * the fields a comparison with more than 50 could not name. Undefined when no field differs.
 * Past `MAX_SIGNATURE_CHARS`, the key keeps the first fields that fit and ends with a line
 * `…+<n> #<hash of the whole key>`, so that two long signatures stay two.
 */
export function signatureOf(differing: DifferingFields): string | undefined {
  const names = new Set<string>();
  for (const field of differing.fields) names.add(countedName(field).replaceAll("\n", "\\n"));
  if ((differing.overflow?.fields ?? 0) > 0) names.add(MORE_FIELDS);
  if (names.size === 0) return undefined;
  const sorted = [...names].sort();
  const key = sorted.join("\n");
  return key.length <= MAX_SIGNATURE_CHARS ? key : boundedKey(sorted, key);
}

function boundedKey(sorted: readonly string[], whole: string): string {
  const hash = nameHash(whole);
  const tail = (rest: number) => `\n…+${rest} #${hash}`;
  let kept = "";
  let count = 0;
  for (const name of sorted) {
    const next = count === 0 ? name : `${kept}\n${name}`;
    if (next.length + tail(sorted.length - count - 1).length > MAX_SIGNATURE_CHARS) break;
    kept = next;
    count++;
  }
  // A single name is at most 256 characters, so at least the first always fits.
  return `${kept}${tail(sorted.length - count)}`;
}

/** The fields a signature names, for display. */
export function signatureFields(signature: string): string[] {
  return signature.split("\n");
}

interface Kept {
  count: number;
  /** The newest request seen with this signature: its id, and when. */
  requestId: string;
  at: number;
  exact: boolean;
}

/** One shown signature (`SignatureCounter.top`). */
export interface SignatureRow {
  signature: string;
  fields: string[];
  /** Requests that differed in exactly these fields (a lower bound unless `exact`). */
  count: number;
  /** `count` over every differing request of the mirror in the window. */
  share: number;
  /** The newest such request's id (`cf-ray`), to find its log lines and sample. */
  exampleRequestId: string;
  exampleAt: number;
  exact: boolean;
}

/** What `api/stats` shows per compared mirror. */
export interface SignatureSummary {
  /** Differing requests counted: exact. */
  total: number;
  /** The most frequent signatures, most frequent first (ties by signature). */
  signatures: SignatureRow[];
  /** Every differing request not in `signatures`: signatures not shown, and those no table kept. */
  other: { count: number; share: number };
}

/** A counter as stored or sent: `[signature, count, requestId, at, exact]` per kept signature. */
export interface SignatureCounterJSON {
  total: number;
  other: number;
  /** Whether this counter, or one merged into it, ever counted a signature under `other`. */
  folded: boolean;
  entries: Array<[string, number, string, number, boolean]>;
}

export class SignatureFormatError extends Error {
  override readonly name = "SignatureFormatError";
}

/** Newest first; of two at once, the smaller id, so that the example does not depend on merge order. */
function newer(a: { requestId: string; at: number }, b: { requestId: string; at: number }): boolean {
  return a.at > b.at || (a.at === b.at && a.requestId < b.requestId);
}

/** Counts of divergence signatures, bounded, mergeable (see the module's header). */
export class SignatureCounter {
  private readonly kept = new Map<string, Kept>();
  /** Differing requests counted, kept or not. */
  total = 0;
  /** Of `total`, those whose signature is not kept. */
  other = 0;
  /** Whether this counter or one merged into it counted a signature under `other`. */
  folded = false;

  constructor(readonly capacity = MAX_SIGNATURES) {}

  get size(): number {
    return this.kept.size;
  }

  /** Counts one request that differed with `signature` (see `signatureOf`), `at` (ms) for its example. */
  add(signature: string, requestId: string, at: number): void {
    this.total++;
    const known = this.kept.get(signature);
    const example = { requestId: requestId.slice(0, MAX_REQUEST_ID_CHARS), at };
    if (known) {
      known.count++;
      if (newer(example, known)) Object.assign(known, example);
    } else if (this.kept.size < this.capacity) {
      this.kept.set(signature, { count: 1, ...example, exact: !this.folded });
    } else {
      this.other++;
      this.folded = true;
    }
  }

  /** Adds every count of `from` (exact while neither had to fold; see the module's header); returns this counter. */
  merge(from: SignatureCounter): this {
    for (const [signature, theirs] of from.kept) {
      const ours = this.kept.get(signature);
      if (ours) {
        ours.count += theirs.count;
        ours.exact &&= theirs.exact;
        if (newer(theirs, ours)) Object.assign(ours, { requestId: theirs.requestId, at: theirs.at });
      } else {
        // Absent here: exact only if this counter never folded anything away.
        this.kept.set(signature, { ...theirs, exact: theirs.exact && !this.folded });
      }
    }
    // Ours that `from` lacks: exact only if `from` never folded anything away.
    if (from.folded) for (const [signature, ours] of this.kept) if (!from.kept.has(signature)) ours.exact = false;
    this.total += from.total;
    this.other += from.other;
    this.folded ||= from.folded;
    this.trim();
    return this;
  }

  /** Past `capacity`, the least frequent signatures go to `other`. */
  private trim(): void {
    if (this.kept.size <= this.capacity) return;
    for (const [signature, entry] of [...this.kept].sort(byCount).slice(this.capacity)) {
      this.kept.delete(signature);
      this.other += entry.count;
    }
    this.folded = true;
  }

  /** The `n` most frequent signatures with their shares, and the rest as `other`. */
  top(n = TOP_SIGNATURES): SignatureSummary {
    const share = (count: number) => (this.total === 0 ? 0 : count / this.total);
    const signatures = [...this.kept]
      .sort(byCount)
      .slice(0, n)
      .map(([signature, k]) => ({
        signature,
        fields: signatureFields(signature),
        count: k.count,
        share: share(k.count),
        exampleRequestId: k.requestId,
        exampleAt: k.at,
        exact: k.exact,
      }));
    const shown = signatures.reduce((sum, row) => sum + row.count, 0);
    return { total: this.total, signatures, other: { count: this.total - shown, share: share(this.total - shown) } };
  }

  toJSON(): SignatureCounterJSON {
    return {
      total: this.total,
      other: this.other,
      folded: this.folded,
      entries: [...this.kept].map(([signature, k]) => [signature, k.count, k.requestId, k.at, k.exact]),
    };
  }

  /**
   * The counter `toJSON` wrote (kept within `capacity`, as a merge would). Anything else — a
   * count that is not a whole number ≥ 1, a signature too long, counts that do not add up to
   * `total` — is a `SignatureFormatError` naming what is wrong.
   */
  static fromJSON(value: unknown, capacity = MAX_SIGNATURES): SignatureCounter {
    const fail = (what: string): never => {
      throw new SignatureFormatError(`not a signature counter: ${what}`);
    };
    if (typeof value !== "object" || value === null) return fail("not an object");
    const json = value as Partial<SignatureCounterJSON>;
    const whole = (n: unknown, min: number): n is number => Number.isSafeInteger(n) && (n as number) >= min;
    if (!whole(json.total, 0) || !whole(json.other, 0)) fail("total and other must be whole numbers");
    if (typeof json.folded !== "boolean") fail("folded must be a boolean");
    if (!Array.isArray(json.entries)) return fail("entries must be a list");
    const counter = new SignatureCounter(capacity);
    let sum = json.other as number;
    for (const [i, entry] of json.entries.entries()) {
      if (!Array.isArray(entry) || entry.length !== 5) return fail(`entries[${i}] must be a list of 5`);
      const [signature, count, requestId, at, exact] = entry as unknown[];
      if (typeof signature !== "string" || signature.length === 0 || signature.length > MAX_SIGNATURE_CHARS) {
        fail(`entries[${i}]'s signature must be 1 to ${MAX_SIGNATURE_CHARS} characters`);
      }
      if (!whole(count, 1)) fail(`entries[${i}]'s count must be a whole number ≥ 1`);
      if (typeof requestId !== "string" || !Number.isFinite(at) || typeof exact !== "boolean") {
        fail(`entries[${i}] must hold a request id, a time and whether it is exact`);
      }
      if (counter.kept.has(signature as string)) fail(`entries[${i}] repeats a signature`);
      counter.kept.set(signature as string, {
        count: count as number,
        requestId: (requestId as string).slice(0, MAX_REQUEST_ID_CHARS),
        at: at as number,
        exact: exact as boolean,
      });
      sum += count as number;
    }
    if (sum !== json.total) fail(`the counts and other add up to ${sum}, not total ${json.total}`);
    counter.total = json.total as number;
    counter.other = json.other as number;
    counter.folded = json.folded as boolean;
    counter.trim();
    return counter;
  }
}

function byCount([a, x]: [string, Kept], [b, y]: [string, Kept]): number {
  return y.count - x.count || (a < b ? -1 : a > b ? 1 : 0);
}

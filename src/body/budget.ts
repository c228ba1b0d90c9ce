/**
 * @module body/budget
 * The isolate-wide memory budget for what copies and comparisons hold: the mirrors' copy of a
 * request body, and the bodies a comparison reads (the primary's, the mirror's, the reference's).
 * Every request an isolate serves shares its 128 MB, so a few large uploads with slow mirrors
 * could otherwise end every request in flight. Bytes are taken before they are held (the declared
 * length before a body is tee'd, or each chunk as it arrives) and given back when they are
 * dropped; what does not fit is not copied or not compared. Pure: counting only, no I/O.
 */

/**
 * The default budget: one copy at the 32 MiB `maxMirrorBodyBytes` ceiling and 16 MiB besides
 * (comparisons, smaller copies). The rest of an isolate's 128 MB is left to the worker itself and
 * to what a tee holds beside a body being read: the primary's share, when the primary reads more
 * slowly than the copy, at most as much again while the read lasts.
 */
export const DEFAULT_MEMORY_BUDGET_BYTES = 48 * 1024 * 1024;

/** `MIRROR_MEMORY_BUDGET_BYTES` as a byte count; undefined when it is not a plain non-negative integer. */
export function parseBudgetBytes(value: string): number | undefined {
  const bytes = Number(value);
  return /^\s*\d+\s*$/.test(value) && Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** The budget's counts, shared by its holds. */
interface Ledger {
  readonly limit: number;
  held: number;
}

/**
 * Bytes taken from the budget for one purpose (a request's body copy, a comparison's reads), all
 * given back by one `release`. A released hold takes nothing more: a read still under way when
 * its bytes are no longer wanted is refused its next chunk and stops.
 */
export class Hold {
  readonly #ledger: Ledger;
  #bytes = 0;
  #released = false;

  constructor(ledger: Ledger) {
    this.#ledger = ledger;
  }

  /** Bytes this hold has taken. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Takes `n` more bytes if the budget has them; false (nothing taken) if not, or once released. */
  take(n: number): boolean {
    const ledger = this.#ledger;
    if (this.#released || ledger.held + n > ledger.limit) return false;
    ledger.held += n;
    this.#bytes += n;
    return true;
  }

  /** Why `what` (a body, a declared length) was refused, for a skip's detail or a comparison's error. */
  refusal(what: string): string {
    const { limit, held } = this.#ledger;
    return `${what} does not fit the isolate's memory budget (${Math.max(0, limit - held)} of ${limit} bytes free)`;
  }

  /** Gives every byte back; later calls do nothing. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#ledger.held -= this.#bytes;
    this.#bytes = 0;
  }
}

export class MemoryBudget {
  readonly #ledger: Ledger;

  constructor(limit: number) {
    this.#ledger = { limit, held: 0 };
  }

  get limit(): number {
    return this.#ledger.limit;
  }

  /** Bytes taken by every hold not yet released. */
  get held(): number {
    return this.#ledger.held;
  }

  /** A new, empty hold on this budget. */
  hold(): Hold {
    return new Hold(this.#ledger);
  }
}

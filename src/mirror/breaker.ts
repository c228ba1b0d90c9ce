/**
 * @module mirror/breaker
 * Per-target ejection, like Envoy's outlier detection (`consecutive_5xx`): after `threshold`
 * consecutive failures (no answer — DNS, connect, reset, timeout — or a 5xx answer) a mirror
 * origin is skipped for a backoff that
 * doubles on each new ejection, then one probe is let through (half-open). A dead mirror then
 * costs one failed copy every few minutes instead of a connection attempt per request. Pure state:
 * the clock is passed in.
 */

export interface BreakerOptions {
  threshold: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { threshold: 5, baseEjectionMs: 10_000, maxEjectionMs: 300_000 };

interface TargetState {
  consecutiveFailures: number;
  ejections: number;
  ejectedUntil: number;
  probing: boolean;
}

export type Admission = { allowed: true } | { allowed: false; ejectedUntil: number; failures: number };

/** Why a copy the breaker refused was not sent, for its outcome and log line. */
export function ejectedMessage(refused: Extract<Admission, { allowed: false }>): string {
  return `ejected until ${new Date(refused.ejectedUntil).toISOString()} after ${refused.failures} consecutive failures`;
}

export class MirrorBreaker {
  private readonly targets = new Map<string, TargetState>();

  constructor(private readonly options: BreakerOptions = DEFAULT_BREAKER) {}

  private state(target: string): TargetState {
    let s = this.targets.get(target);
    if (!s) {
      s = { consecutiveFailures: 0, ejections: 0, ejectedUntil: 0, probing: false };
      // Bounded: an isolate never tracks more targets than a few policies' worth.
      if (this.targets.size >= 1024) this.targets.clear();
      this.targets.set(target, s);
    }
    return s;
  }

  /** May a copy be sent to `target` now? While ejected, no; after it, exactly one probe at a time. */
  admit(target: string, now: number): Admission {
    const s = this.targets.get(target);
    if (!s || s.ejectedUntil === 0) return { allowed: true };
    if (now < s.ejectedUntil || s.probing) {
      return { allowed: false, ejectedUntil: s.ejectedUntil, failures: s.consecutiveFailures };
    }
    s.probing = true;
    return { allowed: true };
  }

  /** Reports how a copy that was admitted went. Returns the new ejection end, if this ejected it. */
  report(target: string, answered: boolean, now: number): number | undefined {
    const s = this.state(target);
    s.probing = false;
    if (answered) {
      s.consecutiveFailures = 0;
      s.ejections = 0;
      s.ejectedUntil = 0;
      return undefined;
    }
    s.consecutiveFailures++;
    const probeFailed = s.ejectedUntil !== 0;
    if (s.consecutiveFailures < this.options.threshold && !probeFailed) return undefined;
    const backoff = Math.min(this.options.maxEjectionMs, this.options.baseEjectionMs * 2 ** s.ejections);
    s.ejections++;
    s.ejectedUntil = now + backoff;
    return s.ejectedUntil;
  }
}

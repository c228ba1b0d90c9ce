/**
 * @module admin/dashboard/wire
 * What the dashboard's browser script (dashboard.browser.js) reads of `api/stats` and
 * `api/stats/samples`: the fields it uses, as JSON carries them, and no more. Types only, with no
 * imports, so that the script's own type check (tsconfig.browser.json, the browser's libraries)
 * needs nothing of the worker; wire.test.ts holds the API's types to these.
 */

/** `GET api/stats?minutes=`. */
export interface StatsAnswer {
  routes: Route[];
  /** Newest first. */
  samples: Sample[];
  sources: { analyticsEngine: boolean; shards: Shard[] };
}

/** `GET api/stats/samples?route=&mirror=&field=&minutes=`. */
export interface FieldSamplesAnswer {
  /** Newest first. */
  samples: Sample[];
}

export interface Route {
  route: string;
  requests: number;
  mirroredPercent: number | null;
  mirrors: Mirror[];
  /** One point per minute of the window, oldest first. */
  series: Point[];
}

export interface Point {
  /** ISO 8601. */
  minute: string;
  requests: number;
  mirrored: number;
  failed: number;
  /** 0 to 1; 0 when nothing was compared. */
  diffRate: number;
}

export interface Mirror {
  mirror: string;
  sent: number;
  failed: number;
  skipped: Record<string, number>;
  errors: Record<string, number>;
  status: Record<string, number>;
  latency: { avgMs: number; p95Ms: number; maxMs: number } | null;
  /** What became of durable copies after their inline send (stats/counters `accounting`). */
  delivery: { spooled: number; pending: number; redelivered: number; dead: number };
  compare: {
    match: number;
    differ: number;
    error: number;
    /** 0 to 1, or null when nothing was compared. */
    diffRate: number | null;
    fields: Field[];
    noise: Array<{ field: string; noise: number }>;
  };
  /** The primary's answers beside the mirror's, over the same requests. */
  sideBySide: { primary: SideSummary; mirror: SideSummary };
  /** The top divergence signatures of a compared mirror; null when none differed. */
  signatures: Signatures | null;
  /** The release verdict over the window, for mirrors the route's policy lists. */
  verdict?: MirrorVerdict;
}

export interface SideSummary {
  status: { "1xx": number; "2xx": number; "3xx": number; "4xx": number; "5xx": number; failed: number };
  latencyMs: { p50: number; p95: number; p99: number; count: number } | null;
}

export interface Signatures {
  total: number;
  signatures: Array<{ fields: string[]; count: number; share: number; exampleRequestId: string; exact: boolean }>;
  other: { count: number; share: number };
}

export interface MirrorVerdict {
  verdict: "pass" | "fail" | "inconclusive";
  reasons: Array<{ check: string; outcome: "pass" | "fail" | "inconclusive"; reason: string }>;
  samples: number;
}

export interface Field {
  field: string;
  differ: number;
  noise: number;
  examples: Example[];
}

export interface Example {
  path: string;
  primary: string;
  candidate: string;
}

export interface Sample {
  /** Epoch milliseconds. */
  at: number;
  route: string;
  mirror: string;
  requestId: string;
  method: string;
  path: string;
  fields: string[];
  noise: string[];
  differences: Difference[];
  primary: Side;
  candidate: Side;
}

export interface Difference {
  field: string;
  path: string;
  primary: string;
  candidate: string;
}

export interface Side {
  status: number;
  headers: Record<string, string>;
  bodyBytes: number;
  sha256: string;
  /** Empty for a body compared by hash only. */
  excerpt: string;
}

export interface Shard {
  answered: boolean;
  flushesPerSecond?: number;
}

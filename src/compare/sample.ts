/**
 * @module compare/sample
 * Types only: a diff sample, the evidence kept of one comparison whose verdict was `differ` —
 * both answers' sides and each differing field's two values, redacted and bounded
 * (compare/bounds) before anything stores or logs it.
 */

export interface SampleSide {
  status: number;
  headers: Record<string, string>;
  bodyBytes: number;
  sha256: string;
  /** Redacted, pretty JSON (clipped), or empty for bodies compared by hash. */
  excerpt: string;
}

export interface SampleDifference {
  /** The counted (folded) field, as in `CompareSummary.fields`. */
  field: string;
  /** Where it first differs in this answer, such as `$.items[3].price`. */
  path: string;
  primary: string;
  candidate: string;
}

export interface DiffSample {
  at: number;
  route: string;
  mirror: string;
  requestId: string;
  method: string;
  /** The request path without its query, which may carry secrets. */
  path: string;
  fields: string[];
  noise: string[];
  /** One per field of `fields`, with both (redacted) values. */
  differences: SampleDifference[];
  primary: SampleSide;
  candidate: SampleSide;
}

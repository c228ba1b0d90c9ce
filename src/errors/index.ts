/**
 * @module errors
 * Typed errors. Each carries a stable `code` so callers (HTTP responses, the CLI, logs)
 * branch on the kind of failure rather than on message text.
 */

/** One broken rule in a policy document, located by a JSON path such as `routes[1].mirrors[0].percent`. */
export interface PolicyIssue {
  path: string;
  message: string;
}

/** A policy document (route, cluster or policy file) broke one or more rules. */
export class PolicyValidationError extends Error {
  readonly code = "invalid_policy";
  constructor(readonly issues: readonly PolicyIssue[]) {
    super(issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; "));
    this.name = "PolicyValidationError";
  }
}

/**
 * A regular expression that edge-mirror refuses: invalid, unsupported, or too large to match in
 * linear time. `compileCost` is the work spent before it was refused, in `src/regex`'s units.
 */
export class RegexError extends Error {
  readonly code = "invalid_regex";
  constructor(
    message: string,
    readonly compileCost = 0,
  ) {
    super(message);
    this.name = "RegexError";
  }
}

/** A route left out of a policy snapshot because the routes before it used the snapshot's compile budget. */
export class CompileBudgetError extends Error {
  readonly code = "compile_budget";
  constructor(message: string) {
    super(message);
    this.name = "CompileBudgetError";
  }
}

/** KV could not be read; the worker keeps serving the primary and skips mirrors. */
export class PolicyStoreUnavailableError extends Error {
  readonly code = "policy_store_unavailable";
  constructor(cause: unknown) {
    super(`policy store unavailable: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
    this.name = "PolicyStoreUnavailableError";
  }
}

/** A request body that is not the JSON it must be. */
export class InvalidJsonError extends Error {
  readonly code = "invalid_json";
  constructor(cause: unknown) {
    super(`the body is not valid JSON: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "InvalidJsonError";
  }
}

/** A request body over its limit, refused before it was read further than the limit. */
export class BodyTooLargeError extends Error {
  readonly code = "too_large";
  constructor(
    readonly limitBytes: number,
    what: string,
  ) {
    super(`${what} must be at most ${limitBytes} bytes`);
    this.name = "BodyTooLargeError";
  }
}

/** The named route, cluster or endpoint does not exist. */
export class NotFoundError extends Error {
  readonly code = "not_found";
  constructor(message: string) {
    super(message);
    this.name = "NotFoundError";
  }
}

/** The change would break something that is stored, e.g. deleting a cluster that routes still name. */
export class ConflictError extends Error {
  constructor(
    readonly code: "cluster_in_use",
    message: string,
  ) {
    super(message);
    this.name = "ConflictError";
  }
}

/** Too many attempts from one client; try again after `retryAfterSeconds`. */
export class RateLimitedError extends Error {
  readonly code = "rate_limited";
  constructor(
    readonly retryAfterSeconds: number,
    message: string,
  ) {
    super(message);
    this.name = "RateLimitedError";
  }
}

/** Why the primary could not answer; each maps to one client-facing status. */
export type UpstreamFailure = "primary_timeout" | "primary_unreachable" | "loop_detected" | "no_backend";

const STATUS_BY_FAILURE: Record<UpstreamFailure, number> = {
  primary_timeout: 504,
  primary_unreachable: 502,
  loop_detected: 508,
  no_backend: 500,
};

/**
 * What a client is told of each failure: a fixed text. The error's own message (a fetch error,
 * a route id, a timeout) is for the logs only.
 */
const CLIENT_MESSAGE: Record<UpstreamFailure, string> = {
  primary_timeout: "the primary did not answer in time",
  primary_unreachable: "the primary could not be reached",
  loop_detected: "the request came back to edge-mirror too many times",
  no_backend: "no backend can take this request",
};

/**
 * The primary leg failed. The client gets the code and a fixed message (`toResponse`); `message`
 * is the detail, which only the logs get.
 */
export class UpstreamError extends Error {
  constructor(
    readonly code: UpstreamFailure,
    message: string,
  ) {
    super(message);
    this.name = "UpstreamError";
  }

  get status(): number {
    return STATUS_BY_FAILURE[this.code];
  }

  toResponse(): Response {
    return Response.json(
      { error: this.code, message: CLIENT_MESSAGE[this.code] },
      { status: this.status, headers: { "x-edge-mirror-error": this.code } },
    );
  }
}

/**
 * @module admin/errors
 * The admin surface's typed errors, and how each becomes an HTTP answer (the app's `onError`):
 * handlers throw what went wrong and never pick a status themselves. Each error carries a stable
 * `code` that clients branch on rather than on message text.
 */
import { HTTPException } from "hono/http-exception";
import { PolicyValidationError } from "../policy/index.js";
import { jsonError } from "./http.js";

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

export function adminErrorResponse(err: Error): Response {
  if (err instanceof PolicyValidationError) {
    return Response.json({ error: err.code, message: err.message, issues: err.issues }, { status: 422 });
  }
  if (err instanceof InvalidJsonError) return jsonError(400, err.code, err.message);
  if (err instanceof NotFoundError) return jsonError(404, err.code, err.message);
  if (err instanceof ConflictError) return jsonError(409, err.code, err.message);
  if (err instanceof BodyTooLargeError) return jsonError(413, err.code, err.message);
  if (err instanceof RateLimitedError) {
    return jsonError(429, err.code, err.message, { "retry-after": String(err.retryAfterSeconds) });
  }
  if (err instanceof HTTPException) return err.getResponse();
  console.error(JSON.stringify({ msg: "edge-mirror.admin_error", error: String(err) }));
  return jsonError(500, "internal_error", "the admin request failed; the worker's log has the cause");
}

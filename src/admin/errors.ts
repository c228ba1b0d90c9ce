/**
 * @module admin/errors
 * Typed errors → HTTP answers, for the whole admin surface (the app's `onError`): handlers throw
 * what went wrong and never pick a status themselves.
 */
import { HTTPException } from "hono/http-exception";
import {
  BodyTooLargeError,
  ConflictError,
  InvalidJsonError,
  NotFoundError,
  PolicyValidationError,
  RateLimitedError,
} from "../errors/index.js";
import { jsonError } from "./http.js";

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

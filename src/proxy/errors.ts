/**
 * @module proxy/errors
 * Pure: why the primary leg failed, and what the client is told of it. Each failure has a stable
 * `code` and one status; the detail (a fetch error, a route id, a timeout) is for the logs only.
 */

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

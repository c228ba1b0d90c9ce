/**
 * @module mirror/copy
 * What sending one copy takes, whoever sends it — the request path inside `waitUntil`
 * (mirror/index, mirror/durable) or the spool's consumer (mirror/redeliver): the copy's
 * `fetch` init with its marker, its request body, and how a failed send is named. No I/O here
 * but the marker's signature (WebCrypto).
 */
import { type CopyBody, copyRequestBody } from "../body/index.js";
import { COPY_ID_HEADER, MIRROR_MARKER } from "../headers/index.js";
import { traceCopy } from "../headers/trace.js";
import type { MirrorErrorKind, PrimaryAnswer } from "../record/index.js";

/**
 * The primary's answer for a copy's outcome, `{ primary }`, once the primary has answered or
 * failed (the request path resolves it at the primary's response headers, never rejects it);
 * nothing when the request path recorded none.
 */
export async function besidePrimary(job: {
  primaryAnswer?: Promise<PrimaryAnswer> | undefined;
}): Promise<{ primary?: PrimaryAnswer }> {
  return job.primaryAnswer ? { primary: await job.primaryAnswer } : {};
}

/** What one copy is sent with, made once the body is read: the body, the headers, the marker and the deadline. */
export interface CopyParts {
  body: CopyBody | null;
  headers: Headers;
  /** The marker for a copy sent to a URL (see copyMarkers in mirror/index). */
  marker: (url: string) => Promise<string>;
  signal: AbortSignal;
}

/**
 * The copy for one mirror (or its compare reference): `origin` + `pathAndQuery`, the mirror's
 * header changes applied, the marker made for its URL, its trace context (headers/trace), and
 * `body` (see `copyRequestBody`).
 * Everything in it was valid on the way in (a GET or HEAD goes without a body), so it is handed to
 * `fetch` as is rather than built into a `Request` first.
 */
export async function copyInit(
  method: string,
  copy: Pick<CopyParts, "headers" | "marker" | "signal">,
  url: string,
  body: BodyInit | null,
  id?: string,
): Promise<RequestInit> {
  const headers = new Headers(copy.headers);
  headers.set(MIRROR_MARKER, await copy.marker(url));
  // A durable copy's id (`x-edge-mirror-id`), set on the copy's own headers like the marker.
  if (id !== undefined) headers.set(COPY_ID_HEADER, id);
  // A span of its own in the client's trace, for every copy, reference and redelivery alike.
  traceCopy(headers);
  return {
    method,
    headers,
    body,
    redirect: "manual",
    signal: copy.signal,
  };
}

const NO_REQUEST_BODY = { init: null, stop: () => {} };

/** One request's body for a copy, and what ends it once the copy is done. */
export function requestBody(copy: Pick<CopyParts, "body">): { init: BodyInit | null; stop: () => void } {
  return copy.body ? copyRequestBody(copy.body) : NO_REQUEST_BODY;
}

/** Errors end up in log lines and samples: keep them short. */
export function errorMessage(err: unknown): string {
  return String((err as Error)?.message ?? err).slice(0, 200);
}

export function classifyMirrorError(err: unknown): MirrorErrorKind {
  const name = (err as { name?: string })?.name;
  if (name === "TimeoutError" || name === "AbortError") return "timeout";
  const message = String((err as { message?: string })?.message ?? err);
  if (/dns|resolve|not known|ENOTFOUND|getaddrinfo|no such host/i.test(message)) return "dns";
  if (/refused|ECONNREFUSED|failed to connect|connect failed/i.test(message)) return "connect";
  return "network";
}

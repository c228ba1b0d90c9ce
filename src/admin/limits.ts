/**
 * @module admin/limits
 * What the admin surface refuses before it reads anything: bodies over a size (checked against
 * Content-Length, or counted while streaming, and never read past the limit), and guesses at the
 * admin token — sign-in attempts and wrong bearer tokens alike — over the rate the
 * `ADMIN_LOGIN_LIMIT` binding allows per client address. Its state, `AdmittedAddresses`, is the
 * isolate's (admin/state).
 */
import type { Context, MiddlewareHandler } from "hono";
import { BodyTooLargeError, RateLimitedError } from "./errors.js";
import type { AdminEnv } from "./http.js";
import { LOGIN_LIMIT_PERIOD_SECONDS, loginLimiter } from "./settings.js";
import type { AdmittedAddresses } from "./state.js";

/**
 * Refuses (413) a body over `maxBytes`; one of exactly `maxBytes` passes. A declared length is
 * trusted (the runtime holds the body to it), and one over the limit refused before anything is
 * read; a body of unknown length is read until it passes the limit, and handed on as read.
 */
export function limitBody(maxBytes: number, what: string): MiddlewareHandler<AdminEnv> {
  return async (c, next) => {
    const request = c.req.raw;
    if (!request.body) return next();
    if (request.headers.has("content-length") && !request.headers.has("transfer-encoding")) {
      if (Number.parseInt(request.headers.get("content-length") ?? "", 10) > maxBytes) {
        throw new BodyTooLargeError(maxBytes, what);
      }
      return next();
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of request.body) {
      size += chunk.byteLength;
      if (size > maxBytes) throw new BodyTooLargeError(maxBytes, what);
      chunks.push(chunk);
    }
    c.req.raw = new Request(request, { body: new Blob(chunks) });
    return next();
  };
}

/** The client's address, which Cloudflare sets and clients cannot: the key every limit counts under. */
export const clientAddress = (c: Context<AdminEnv>): string => c.req.header("cf-connecting-ip") ?? "unknown";

/**
 * Counts a sign-in attempt against the client's address; refuses it (429) over the limit. Without
 * the binding, it lets every attempt through (the isolate logged that once).
 */
export const limitSignIns: MiddlewareHandler<AdminEnv> = async (c, next) => {
  const limiter = loginLimiter(c.env);
  if (limiter) {
    const { success } = await limiter.limit({ key: clientAddress(c) });
    if (!success) {
      throw new RateLimitedError(
        LOGIN_LIMIT_PERIOD_SECONDS,
        `too many sign-in attempts from this address; try again in ${LOGIN_LIMIT_PERIOD_SECONDS} seconds`,
      );
    }
  }
  await next();
};

/**
 * Spends from the address's allowance — the sign-in form's — for a bearer token, and refuses it
 * (429) over the limit, whether the token is right or wrong: a guesser past the limit learns
 * nothing, not even a lucky guess. A wrong token always spends one. A right one spends one only
 * when the address is not in `admitted`, so an operator's script or the e2e tests polling with
 * the token spend about one a minute per isolate, not one a call, and are never throttled by
 * their own calls. (The binding's `limit()` always spends: there is no asking it without
 * counting.) Without the binding, nothing is limited (the isolate logged that once).
 */
export async function limitBearer(
  limiter: RateLimit | undefined,
  admitted: AdmittedAddresses,
  address: string,
  matches: boolean,
  now: number,
): Promise<void> {
  if (!limiter) return;
  if (matches && admitted.has(address, now)) return;
  // A wrong token from an admitted address: whoever sent it must earn the next admission anew.
  if (!matches) admitted.delete(address);
  const { success } = await limiter.limit({ key: address });
  if (!success) {
    throw new RateLimitedError(
      LOGIN_LIMIT_PERIOD_SECONDS,
      `too many wrong admin tokens from this address; try again in ${LOGIN_LIMIT_PERIOD_SECONDS} seconds`,
    );
  }
  if (matches) admitted.add(address, now);
}

/**
 * @module admin/limits
 * What the admin surface refuses before it reads anything: bodies over a size (checked against
 * Content-Length, or counted while streaming, and never read past the limit) and sign-in
 * attempts over the rate the `ADMIN_LOGIN_LIMIT` binding allows per client address.
 */
import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { BodyTooLargeError, RateLimitedError } from "../errors/index.js";
import type { AdminEnv } from "./http.js";
import { loginLimiter } from "./settings.js";

/** The period of `[[ratelimits]] ADMIN_LOGIN_LIMIT` in wrangler.toml, in seconds. */
const LOGIN_LIMIT_PERIOD_SECONDS = 60;

/** Refuses (413) a body over `maxBytes`; one of exactly `maxBytes` passes. */
export function limitBody(maxBytes: number, what: string): MiddlewareHandler<AdminEnv> {
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new BodyTooLargeError(maxBytes, what);
    },
  });
}

/**
 * Counts a sign-in attempt against the client's address (`cf-connecting-ip`, which Cloudflare
 * sets and clients cannot); refuses it (429) over the limit. Without the binding, it lets every
 * attempt through (the isolate logged that once).
 */
export const limitSignIns: MiddlewareHandler<AdminEnv> = async (c, next) => {
  const limiter = loginLimiter(c.env);
  if (limiter) {
    const { success } = await limiter.limit({ key: c.req.header("cf-connecting-ip") ?? "unknown" });
    if (!success) {
      throw new RateLimitedError(
        LOGIN_LIMIT_PERIOD_SECONDS,
        `too many sign-in attempts from this address; try again in ${LOGIN_LIMIT_PERIOD_SECONDS} seconds`,
      );
    }
  }
  await next();
};

/**
 * @module admin/settings
 * Whether the admin surface is open and where it lives, read once per isolate (src/isolate).
 * A value that would make the surface unsafe is refused with one log line and never half-applied:
 * a short or patterned `ADMIN_TOKEN` keeps the surface closed, an unclean `ADMIN_PREFIX` falls back
 * to the default, and an `ADMIN_HOST` that is not a host name serves the surface on no host.
 * Pure, but for the log line.
 */
export const DEFAULT_ADMIN_PREFIX = "/__mirror";
/** Shorter tokens are refused: 32 characters of a random token are beyond guessing, even unthrottled. */
export const MIN_ADMIN_TOKEN_LENGTH = 32;
/**
 * Fewer distinct characters than this and the token is refused. A random token never has so few:
 * 32 hex digits have fewer than 8 distinct ones with a chance of 3.5e-8, and the README's
 * `openssl rand -hex 32` (64 hex digits) 1.2e-19. A stricter rule such as "at least 16 distinct
 * characters" would refuse real random tokens: 64 hex digits miss at least one of the 16 digits
 * 23.5 % of the time, and 32 hex digits 92.7 % of the time.
 */
export const MIN_ADMIN_TOKEN_DISTINCT = 8;

/** One or more `/segment`s of RFC 3986 unreserved characters: nothing to decode, nothing to normalize. */
const CLEAN_PREFIX = /^(?:\/[A-Za-z0-9._~-]+)+$/;

type Log = (line: string) => void;
const stderr: Log = (line) => console.error(line);

function prefixProblem(prefix: string): string | undefined {
  if (!CLEAN_PREFIX.test(prefix)) {
    return "must be a clean path such as /__mirror: a leading /, then segments of letters, digits, '.', '_', '~' and '-', no trailing /";
  }
  if (prefix.split("/").some((segment) => segment === "." || segment === "..")) {
    return "must not contain . or .. segments";
  }
  return undefined;
}

/** `ADMIN_PREFIX` when it is a clean path, else (logged once) the default. */
export function adminPrefix(env: Env, log: Log = stderr): string {
  const configured = env.ADMIN_PREFIX?.trim();
  if (!configured) return DEFAULT_ADMIN_PREFIX;
  const problem = prefixProblem(configured);
  if (problem === undefined) return configured;
  log(
    JSON.stringify({
      msg: "edge-mirror.invalid_setting",
      name: "ADMIN_PREFIX",
      value: configured,
      error: problem,
      using: DEFAULT_ADMIN_PREFIX,
    }),
  );
  return DEFAULT_ADMIN_PREFIX;
}

/**
 * The length of the shortest string that the token repeats (the last copy may be cut short): the
 * token's own length when it repeats nothing. Knuth–Morris–Pratt's failure function, one pass.
 */
export function shortestPeriod(token: string): number {
  const border = new Array<number>(token.length).fill(0);
  for (let i = 1, k = 0; i < token.length; i++) {
    while (k > 0 && token[i] !== token[k]) k = border[k - 1] as number;
    if (token[i] === token[k]) k++;
    border[i] = k;
  }
  return token.length - (border[token.length - 1] ?? 0);
}

/**
 * Why a token is too easy to guess, or undefined. A random token passes; `"a".repeat(32)`,
 * `"ab".repeat(16)` and `"abcdefgh".repeat(4)` do not. A random token repeats itself (a period
 * of at most half its length) with a chance below 16^-16.
 */
export function weakTokenProblem(token: string): string | undefined {
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) return `ADMIN_TOKEN is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters`;
  if (new Set(token).size < MIN_ADMIN_TOKEN_DISTINCT) {
    return `ADMIN_TOKEN has fewer than ${MIN_ADMIN_TOKEN_DISTINCT} distinct characters`;
  }
  if (shortestPeriod(token) * 2 <= token.length) return "ADMIN_TOKEN repeats a shorter string";
  return undefined;
}

/**
 * The token that opens the admin surface, or undefined while it stays closed. Says once why a
 * token was refused, and when wrong tokens cannot be limited (no `ADMIN_LOGIN_LIMIT` binding).
 */
export function adminToken(env: Env, log: Log = stderr): string | undefined {
  const token = env.ADMIN_TOKEN;
  if (!token) return undefined;
  const problem = weakTokenProblem(token);
  if (problem !== undefined) {
    log(JSON.stringify({ msg: "edge-mirror.admin_disabled", reason: problem }));
    return undefined;
  }
  if (!loginLimiter(env)) {
    log(
      JSON.stringify({
        msg: "edge-mirror.admin_login_unlimited",
        reason: "no ADMIN_LOGIN_LIMIT rate limit binding: sign-in attempts and wrong bearer tokens are not limited",
      }),
    );
  }
  return token;
}

/** The period of `[[ratelimits]] ADMIN_LOGIN_LIMIT` in wrangler.toml, in seconds. */
export const LOGIN_LIMIT_PERIOD_SECONDS = 60;

/** No request URL's host: a `/` cannot appear in one. */
export const INVALID_ADMIN_HOST = "/";

/** A host as a request URL spells it: a lower-case name or IPv4 address, and a port if not the default. */
const HOST = /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?$/;

/**
 * `ADMIN_HOST`, lower-cased: the only host that reaches the admin surface, or undefined (empty,
 * the default: every host does). A value that is not a host name (a URL, a path) is logged once
 * and serves the surface on no host, so that a typo never opens it more widely than was meant.
 */
export function adminHost(env: Env, log: Log = stderr): string | undefined {
  const configured = env.ADMIN_HOST?.trim().toLowerCase();
  if (!configured) return undefined;
  if (HOST.test(configured)) return configured;
  log(
    JSON.stringify({
      msg: "edge-mirror.invalid_setting",
      name: "ADMIN_HOST",
      value: configured,
      error: "must be a host name such as admin.example.com (with a port only if it is not the default one)",
      using: "no host: the admin prefix is proxied like any path, on every host",
    }),
  );
  return INVALID_ADMIN_HOST;
}

/** The limiter of guesses at the token; deployments from before it was added have none. */
export function loginLimiter(env: Env): RateLimit | undefined {
  return (env as Partial<Pick<Env, "ADMIN_LOGIN_LIMIT">>).ADMIN_LOGIN_LIMIT;
}

/**
 * @module admin/settings
 * Whether the admin surface is open and where it lives, read once per isolate (src/isolate).
 * A value that would make the surface unsafe is refused with one log line and never half-applied:
 * a short `ADMIN_TOKEN` keeps the surface closed, an unclean `ADMIN_PREFIX` falls back to the default.
 */
export const DEFAULT_ADMIN_PREFIX = "/__mirror";
/** Shorter tokens are refused: 32 characters of a random token are beyond guessing, even unthrottled. */
export const MIN_ADMIN_TOKEN_LENGTH = 32;

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
 * The token that opens the admin surface, or undefined while it stays closed. Says once why a
 * token was refused, and when sign-in attempts cannot be limited (no `ADMIN_LOGIN_LIMIT` binding).
 */
export function adminToken(env: Env, log: Log = stderr): string | undefined {
  const token = env.ADMIN_TOKEN;
  if (!token) return undefined;
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
    log(
      JSON.stringify({
        msg: "edge-mirror.admin_disabled",
        reason: `ADMIN_TOKEN is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters`,
      }),
    );
    return undefined;
  }
  if (!loginLimiter(env)) {
    log(
      JSON.stringify({
        msg: "edge-mirror.admin_login_unlimited",
        reason: "no ADMIN_LOGIN_LIMIT rate limit binding: sign-in attempts are not limited",
      }),
    );
  }
  return token;
}

/** The sign-in rate limiter; deployments from before it was added have none. */
export function loginLimiter(env: Env): RateLimit | undefined {
  return (env as Partial<Pick<Env, "ADMIN_LOGIN_LIMIT">>).ADMIN_LOGIN_LIMIT;
}

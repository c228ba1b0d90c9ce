/**
 * @module admin/session
 * Browsers cannot send a bearer header when they open a page, so the dashboard signs in once with
 * the admin token and gets a cookie: `<epoch>.<expiry>.<HMAC-SHA-256 of both>`. The HMAC key is
 * derived from ADMIN_TOKEN with HKDF, so the token itself never keys anything a browser holds, and
 * rotating it ends every session. The epoch (store/session-epoch) is what signing out replaces:
 * a cookie from an earlier epoch is refused even though its signature and expiry are good.
 * State, per isolate: `SessionKeys` (the derived key) and `SessionEpochCache`.
 */
import type { CookieOptions } from "hono/utils/cookie";
import { fromHex, toHex } from "../hex/index.js";
import { sessionEpoch } from "../store/session-epoch.js";

export const SESSION_COOKIE = "edge_mirror_session";
const SESSION_TTL_SECONDS = 12 * 60 * 60;
/** HKDF `info`: binds the derived key to this one use of the token. */
export const SESSION_KEY_INFO = "edge-mirror dashboard session cookie v2";
/**
 * How long an isolate trusts the epoch it last read. Short, so that a sign-out elsewhere ends
 * this isolate's sessions within seconds of KV delivering it (KV itself takes up to 60 s).
 */
const SESSION_EPOCH_TTL_MS = 5000;

const encoder = new TextEncoder();
const VALUE = /^([0-9a-f]{32})\.(\d{1,12})\.([0-9a-f]{64})$/;

/** The cookie's HMAC key: HKDF-SHA-256 of the token, bound to this use by `SESSION_KEY_INFO`. */
export async function deriveSessionKey(token: string): Promise<CryptoKey> {
  const material = await crypto.subtle.importKey("raw", encoder.encode(token), "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode(SESSION_KEY_INFO) },
    material,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign", "verify"],
  );
}

/**
 * The session key of the token in use, derived once rather than on every request: the dashboard
 * polls every few seconds, and each poll verifies its cookie. One token at a time, since an
 * isolate has one; a new token replaces the key.
 */
export class SessionKeys {
  private derived: { token: string; key: Promise<CryptoKey> } | undefined;

  of(token: string): Promise<CryptoKey> {
    if (this.derived?.token === token) return this.derived.key;
    const key = deriveSessionKey(token);
    this.derived = { token, key };
    // A failed derivation is not kept: the next request derives again.
    key.catch(() => {
      if (this.derived?.key === key) this.derived = undefined;
    });
    return key;
  }
}

const signed = (epoch: string, expires: number) => encoder.encode(`edge-mirror-session:${epoch}:${expires}`);

/** A new session's cookie value, signed with `key` (from `SessionKeys`). */
export async function sessionValue(key: CryptoKey, epoch: string, now: number): Promise<string> {
  const expires = Math.floor(now / 1000) + SESSION_TTL_SECONDS;
  const mac = await crypto.subtle.sign("HMAC", key, signed(epoch, expires));
  return `${epoch}.${expires}.${toHex(mac)}`;
}

/** True for an unexpired value of the current epoch signed with `key` (HMAC verify: constant time). */
export async function sessionValid(
  value: string,
  key: CryptoKey,
  epoch: string | undefined,
  now: number,
): Promise<boolean> {
  const match = VALUE.exec(value);
  if (!match || epoch === undefined) return false;
  const [, valueEpoch, expiresText, mac] = match as unknown as [string, string, string, string];
  const expires = Number(expiresText);
  const genuine = await crypto.subtle.verify("HMAC", key, fromHex(mac), signed(valueEpoch, expires));
  return genuine && valueEpoch === epoch && expires * 1000 > now;
}

/**
 * How the session cookie is set (with `hono/cookie`): under the admin prefix only, out of scripts'
 * reach, never sent along with another site's requests, and over HTTPS only when served so.
 */
export function sessionCookieOptions(path: string, secure: boolean): CookieOptions {
  return { path, maxAge: SESSION_TTL_SECONDS, httpOnly: true, sameSite: "Strict", secure };
}

/** The isolate's view of the session epoch: read from KV at most once per `SESSION_EPOCH_TTL_MS`. */
export class SessionEpochCache {
  private cached: { epoch: string | undefined; readAt: number } | undefined;

  constructor(private readonly ttlMs = SESSION_EPOCH_TTL_MS) {}

  async current(kv: KVNamespace, now: number): Promise<string | undefined> {
    if (this.cached && now - this.cached.readAt < this.ttlMs) return this.cached.epoch;
    const epoch = await sessionEpoch.read(kv);
    this.cached = { epoch, readAt: now };
    return epoch;
  }

  /** The epoch a new session joins; the first sign-in ever starts one. */
  async forSignIn(kv: KVNamespace, now: number): Promise<string> {
    return (await this.current(kv, now)) ?? this.replace(kv, now);
  }

  /** Ends every session: here at once, elsewhere once KV delivers the new epoch. */
  async replace(kv: KVNamespace, now: number): Promise<string> {
    const next = sessionEpoch.create();
    await sessionEpoch.write(kv, next, now);
    this.cached = { epoch: next, readAt: now };
    return next;
  }
}

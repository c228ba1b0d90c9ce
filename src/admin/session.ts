/**
 * @module admin/session
 * Browsers cannot send a bearer header when they open a page, so the dashboard signs in once
 * with the admin token and gets a cookie: `<expiry>.<HMAC-SHA-256 of the expiry, keyed by
 * ADMIN_TOKEN>`. The token itself never sits in the browser, and rotating it ends every session.
 */
export const SESSION_COOKIE = "edge_mirror_session";
export const SESSION_TTL_SECONDS = 12 * 60 * 60;

const encoder = new TextEncoder();

async function signature(secret: string, expires: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(`edge-mirror-session:${expires}`)));
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sessionValue(secret: string, now: number): Promise<string> {
  const expires = Math.floor(now / 1000) + SESSION_TTL_SECONDS;
  return `${expires}.${toHex(await signature(secret, expires))}`;
}

/** True for an unexpired value signed with `secret`; compared in constant time. */
export async function sessionValid(value: string, secret: string, now: number): Promise<boolean> {
  const match = /^(\d{1,12})\.([0-9a-f]{64})$/.exec(value);
  if (!match) return false;
  const expires = Number(match[1]);
  const expected = toHex(await signature(secret, expires));
  const same = crypto.subtle.timingSafeEqual(encoder.encode(expected), encoder.encode(match[2] as string));
  return same && expires * 1000 > now;
}

export function readCookie(header: string | null, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const at = part.indexOf("=");
    if (at !== -1 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

export function sessionCookie(value: string, path: string, secure: boolean, maxAge = SESSION_TTL_SECONDS): string {
  return `${SESSION_COOKIE}=${value}; Path=${path}; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure ? "; Secure" : ""}`;
}

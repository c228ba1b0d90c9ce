/**
 * @module headers/marker
 * The marker every copy carries: `x-edge-mirror: <route id>;t=<unix seconds>;b=<hex>;sig=<hex>`.
 * `b` is the SHA-256 of the copy's body (of no bytes for a copy without one); `sig` is an
 * HMAC-SHA-256 under the deployment's secret (src/secret) of the route, the time, `b`, and the
 * copy as it is sent: method, host name and path and query. A deployment that receives a request
 * whose marker it can verify — made for this very request, under a key it knows, at most
 * `MARKER_MAX_AGE_S` ago — serves it but never mirrors it again. A marker shown on any other
 * request (another method, host, path, query or body), an old one, one under another key or a
 * client's counts for nothing, so no client can switch an audit mirror off by sending the header,
 * nor with a marker an audit sink received.
 *
 * The host is the target's host name, lower-cased, without the port or scheme: the receiving
 * deployment may see the copy on another port or scheme than the one it was sent to (a TLS
 * terminator or a port mapping in between), and a port names no other request the marker could
 * be moved to. The path and query are the URL parser's serialisation (`pathname + search`), which
 * the receiving deployment reads from `new URL(request.url)` in the same form.
 *
 * Signing and checking use WebCrypto (async); nothing here holds state or does other I/O.
 */
import { fromHex, toHex } from "../hex/index.js";

/** How far a marker's time may be from ours: copies leave within `waitUntil`'s 30 s. */
export const MARKER_MAX_AGE_S = 60;

/** Shorter `MIRROR_MARKER_KEY` values are refused, as a short `ADMIN_TOKEN` is. */
export const MIN_MARKER_KEY_LENGTH = 32;

/** SHA-256 of no bytes: the body digest of a copy without a body. */
export const EMPTY_BODY_DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** What a marker is made for, besides the body: the request as the copy is sent. */
export interface CopyAddress {
  method: string;
  /** The host name, lower-cased, without the port. */
  host: string;
  /** `pathname + search` as the URL parser serialises them. */
  pathAndQuery: string;
}

/** Everything a marker's signature covers except its time. */
export interface MarkedCopy extends CopyAddress {
  route: string;
  /** `bodyDigest` of the copy's body. */
  bodyDigest: string;
}

const encoder = new TextEncoder();

/** The address a marker for `method` on `url` covers: the same on the sending and the receiving side. */
export function copyAddress(method: string, url: URL): CopyAddress {
  return { method, host: url.hostname.toLowerCase(), pathAndQuery: url.pathname + url.search };
}

/**
 * SHA-256 of a copy's body as lowercase hex; no body and an empty one are alike. A body held in
 * several parts (the copy's buffers, see body/`CopyBody`) is hashed as it lies, through a
 * `DigestStream`, rather than joined into one more copy of itself first.
 */
export async function bodyDigest(body: Uint8Array | readonly Uint8Array[] | null): Promise<string> {
  const parts = body === null ? [] : body instanceof Uint8Array ? [body] : body;
  const nonEmpty = parts.filter((part) => part.byteLength > 0);
  if (nonEmpty.length === 0) return EMPTY_BODY_DIGEST;
  if (nonEmpty.length === 1) return toHex(await crypto.subtle.digest("SHA-256", nonEmpty[0] as Uint8Array));
  const stream = new crypto.DigestStream("SHA-256");
  const writer = stream.getWriter();
  for (const part of nonEmpty) await writer.write(part);
  await writer.close();
  return toHex(await stream.digest);
}

/**
 * One field per line, the path and query last: no field but that one can hold a line break (route
 * ids, digits, hex, a method token, a host name), and the URL parser encodes any in the path.
 */
function signedText(copy: MarkedCopy, seconds: number): Uint8Array {
  return encoder.encode(
    `edge-mirror-marker v2\n${copy.route}\n${seconds}\n${copy.bodyDigest}\n${copy.method}\n${copy.host}\n${copy.pathAndQuery}`,
  );
}

/** The marker for `copy` at `seconds` (unix time), signed with `key`. */
export async function signMarker(key: CryptoKey, copy: MarkedCopy, seconds: number): Promise<string> {
  const sig = toHex(await crypto.subtle.sign("HMAC", key, signedText(copy, seconds)));
  return `${copy.route};t=${seconds};b=${copy.bodyDigest};sig=${sig}`;
}

const MARKER = /^([A-Za-z0-9][A-Za-z0-9._-]{0,127});t=(\d{1,12});b=([0-9a-f]{64});sig=([0-9a-f]{64})$/;

/**
 * The body digest `value` vouches for, when it is a marker made for a copy at `request`, signed
 * with one of `keys` at most `MARKER_MAX_AGE_S` from `nowMs`; otherwise undefined. The caller
 * still has to compare the digest with the body that came (HMAC verification is constant-time).
 */
export async function verifyMarker(
  value: string,
  request: CopyAddress,
  keys: readonly CryptoKey[],
  nowMs: number,
): Promise<string | undefined> {
  const match = MARKER.exec(value);
  if (!match || keys.length === 0) return undefined;
  const [, route, time, digest, sig] = match as unknown as [string, string, string, string, string];
  const seconds = Number(time);
  if (Math.abs(nowMs / 1000 - seconds) > MARKER_MAX_AGE_S) return undefined;
  const text = signedText({ ...request, route, bodyDigest: digest }, seconds);
  const signature = fromHex(sig);
  for (const key of keys) if (await crypto.subtle.verify("HMAC", key, signature, text)) return digest;
  return undefined;
}

/** `MIRROR_MARKER_KEY` when it is long enough; a shorter one is said once (per isolate) and treated as absent. */
export function markerKeySetting(
  value: string | undefined,
  log: (line: string) => void = (line) => console.error(line),
): string | undefined {
  if (!value) return undefined;
  if (value.length >= MIN_MARKER_KEY_LENGTH) return value;
  log(
    JSON.stringify({
      msg: "edge-mirror.invalid_setting",
      name: "MIRROR_MARKER_KEY",
      error: `shorter than ${MIN_MARKER_KEY_LENGTH} characters: treated as absent`,
      using: "the deployment key in KV",
    }),
  );
  return undefined;
}

/**
 * @module hex
 * Bytes as lowercase hex and back: digests, signatures, keys, ids. A table lookup per byte, since
 * a copy's marker is turned into hex on the request's way (`Array.from` with `toString(16)` and
 * `padStart` per byte cost a copy more than its HMAC). Pure.
 */

/** Two hex digits for each byte value. */
export const HEX_BYTE: readonly string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** `bytes` as lowercase hex, two digits a byte. */
export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let text = "";
  for (let i = 0; i < view.length; i++) text += HEX_BYTE[view[i] as number];
  return text;
}

/** The bytes of hex `text`, two digits a byte; the caller has checked that it is hex of even length. */
export function fromHex(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length >> 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

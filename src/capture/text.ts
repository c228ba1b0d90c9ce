/**
 * @module capture/text
 * Pure: a body's bytes as JSON can carry them, exactly. Valid UTF-8 is kept as text (readable in
 * the HAR, and a byte order mark is kept too); anything else as base64. `bodyBytes` gives back
 * the very bytes `bodyText` was given, in workerd and in Node alike.
 */

export type BodyEncoding = "utf8" | "base64";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8 = new TextEncoder();

export function bodyText(bytes: Uint8Array): { encoding: BodyEncoding; text: string } {
  try {
    return { encoding: "utf8", text: strictUtf8.decode(bytes) };
  } catch {
    return { encoding: "base64", text: toBase64(bytes) };
  }
}

/** `bodyText`'s inverse; throws on text that is not base64 when `encoding` says it is. */
export function bodyBytes(encoding: BodyEncoding, text: string): Uint8Array {
  return encoding === "utf8" ? utf8.encode(text) : fromBase64(text);
}

/** Bytes per `String.fromCharCode` call: well under any engine's argument limit. */
const CHUNK = 0x8000;

/** The runtime's own base64 (workerd has it; Node 20 does not), about fifty times faster. */
const nativeToBase64 = (Uint8Array.prototype as { toBase64?: () => string }).toBase64;
const nativeFromBase64 = (Uint8Array as { fromBase64?: (text: string) => Uint8Array }).fromBase64;

export function toBase64(bytes: Uint8Array): string {
  if (nativeToBase64) return nativeToBase64.call(bytes);
  let binary = "";
  for (let at = 0; at < bytes.byteLength; at += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(at, at + CHUNK));
  }
  return btoa(binary);
}

export function fromBase64(text: string): Uint8Array {
  if (nativeFromBase64) return nativeFromBase64(text);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

export function utf8Bytes(text: string): Uint8Array {
  return utf8.encode(text);
}

/**
 * @module body/bytes
 * Byte arrays read in parts, made one. Pure.
 */

/** `parts` copied into one new array of `size` bytes, whatever they are. */
export function copyBytes(parts: readonly Uint8Array[], size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.byteLength;
  }
  return bytes;
}

/** `parts` as one array: the only part itself when it is all of them, else a copy. */
export function joinBytes(parts: readonly Uint8Array[], size: number): Uint8Array {
  const [only] = parts;
  return parts.length === 1 && only?.byteLength === size ? only : copyBytes(parts, size);
}

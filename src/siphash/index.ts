/**
 * @module siphash
 * SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed pseudo-random function of a byte string,
 * 64 bits out. Pure and synchronous, so that sticky sampling can key its hash on the request path
 * without a call into WebCrypto. JavaScript has no 64-bit integer short of BigInt (far slower),
 * so each 64-bit word is two 32-bit halves. Checked against the reference vectors
 * (src/mirror/sticky.test.ts).
 */

/** A SipHash key: the 128 bits as four 32-bit words, k0 low, k0 high, k1 low, k1 high. */
export type SipKey = Readonly<Uint32Array>;

/** The key in `bytes` (16 of them), read little-endian as the reference implementation does. */
export function sipKey(bytes: Uint8Array): SipKey {
  if (bytes.byteLength !== 16) throw new RangeError(`a SipHash key is 16 bytes, not ${bytes.byteLength}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
  return Uint32Array.of(
    view.getUint32(0, true),
    view.getUint32(4, true),
    view.getUint32(8, true),
    view.getUint32(12, true),
  );
}

/** Little-endian 32-bit word of the four bytes at `at`. */
function word(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at] as number) |
      ((bytes[at + 1] as number) << 8) |
      ((bytes[at + 2] as number) << 16) |
      ((bytes[at + 3] as number) << 24)) >>>
    0
  );
}

/** Little-endian word of the bytes from `at` up to `end` (fewer than four), the rest read as 0. */
function partialWord(bytes: Uint8Array, at: number, end: number): number {
  let w = 0;
  for (let i = Math.min(end, at + 4) - 1; i >= at; i--) w = (w << 8) | (bytes[i] as number);
  return w >>> 0;
}

/**
 * SipHash-2-4 of the first `length` bytes of `bytes` under `key`, as its high and low 32 bits
 * (the 64-bit result the reference implementation writes out little-endian).
 *
 * Every 64-bit word vN is two locals, vNl and vNh, and each SipRound is written out in place:
 * in a loop of calls on an array it took several times as long.
 */
export function sipHash24(key: SipKey, bytes: Uint8Array, length = bytes.byteLength): { high: number; low: number } {
  const k0l = key[0] as number;
  const k0h = key[1] as number;
  const k1l = key[2] as number;
  const k1h = key[3] as number;
  // "somepseudorandomlygeneratedbytes"
  let v0l = (k0l ^ 0x70736575) >>> 0;
  let v0h = (k0h ^ 0x736f6d65) >>> 0;
  let v1l = (k1l ^ 0x6e646f6d) >>> 0;
  let v1h = (k1h ^ 0x646f7261) >>> 0;
  let v2l = (k0l ^ 0x6e657261) >>> 0;
  let v2h = (k0h ^ 0x6c796765) >>> 0;
  let v3l = (k1l ^ 0x79746573) >>> 0;
  let v3h = (k1h ^ 0x74656462) >>> 0;
  let t = 0;
  let ml = 0;
  let mh = 0;
  const whole = length - (length % 8);
  // Each pass takes one message word through two SipRounds; the pass after the last word is the
  // finalization, four rounds. The round is written once, for both.
  for (let at = 0; at <= whole + 8; at += 8) {
    const finishing = at > whole;
    if (finishing) {
      v2l = (v2l ^ 0xff) >>> 0;
    } else {
      if (at < whole) {
        ml = word(bytes, at);
        mh = word(bytes, at + 4);
      } else {
        // The last word: the remaining bytes, and the length's low byte on top.
        ml = partialWord(bytes, at, length);
        mh = (partialWord(bytes, at + 4, length) | ((length & 0xff) << 24)) >>> 0;
      }
      v3l = (v3l ^ ml) >>> 0;
      v3h = (v3h ^ mh) >>> 0;
    }
    const rounds = finishing ? 4 : 2;
    for (let round = 0; round < rounds; round++) {
      // v0 += v1; v1 <<<= 13; v1 ^= v0; v0 <<<= 32
      t = v0l + v1l;
      v0h = (v0h + v1h + (t > 0xffffffff ? 1 : 0)) >>> 0;
      v0l = t >>> 0;
      t = v1l;
      v1l = ((v1l << 13) | (v1h >>> 19)) >>> 0;
      v1h = ((v1h << 13) | (t >>> 19)) >>> 0;
      v1l = (v1l ^ v0l) >>> 0;
      v1h = (v1h ^ v0h) >>> 0;
      t = v0l;
      v0l = v0h;
      v0h = t;
      // v2 += v3; v3 <<<= 16; v3 ^= v2
      t = v2l + v3l;
      v2h = (v2h + v3h + (t > 0xffffffff ? 1 : 0)) >>> 0;
      v2l = t >>> 0;
      t = v3l;
      v3l = ((v3l << 16) | (v3h >>> 16)) >>> 0;
      v3h = ((v3h << 16) | (t >>> 16)) >>> 0;
      v3l = (v3l ^ v2l) >>> 0;
      v3h = (v3h ^ v2h) >>> 0;
      // v0 += v3; v3 <<<= 21; v3 ^= v0
      t = v0l + v3l;
      v0h = (v0h + v3h + (t > 0xffffffff ? 1 : 0)) >>> 0;
      v0l = t >>> 0;
      t = v3l;
      v3l = ((v3l << 21) | (v3h >>> 11)) >>> 0;
      v3h = ((v3h << 21) | (t >>> 11)) >>> 0;
      v3l = (v3l ^ v0l) >>> 0;
      v3h = (v3h ^ v0h) >>> 0;
      // v2 += v1; v1 <<<= 17; v1 ^= v2; v2 <<<= 32
      t = v2l + v1l;
      v2h = (v2h + v1h + (t > 0xffffffff ? 1 : 0)) >>> 0;
      v2l = t >>> 0;
      t = v1l;
      v1l = ((v1l << 17) | (v1h >>> 15)) >>> 0;
      v1h = ((v1h << 17) | (t >>> 15)) >>> 0;
      v1l = (v1l ^ v2l) >>> 0;
      v1h = (v1h ^ v2h) >>> 0;
      t = v2l;
      v2l = v2h;
      v2h = t;
    }
    if (!finishing) {
      v0l = (v0l ^ ml) >>> 0;
      v0h = (v0h ^ mh) >>> 0;
    }
  }
  return { low: (v0l ^ v1l ^ v2l ^ v3l) >>> 0, high: (v0h ^ v1h ^ v2h ^ v3h) >>> 0 };
}

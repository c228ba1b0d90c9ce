/**
 * @module compare/bounds
 * Size limits on what a comparison reports. Field names and JSON paths come from the answers,
 * so a client whose body is echoed chooses them: a 2.5 MiB key would otherwise be a 2.5 MiB
 * field name in the log line, the counters and every sample, and one such row makes SQLite
 * refuse a whole flush. Long names keep a recognisable prefix and a hash of the whole name, so
 * that two long keys stay two fields; a diff sample is brought under `MAX_SAMPLE_BYTES` step by
 * step, least useful parts first. The stats shard applies the same bounds again to what it is
 * sent. Pure.
 */
import type { DiffSample, SampleDifference, SampleSide } from "./sample.js";

/** The longest field name or JSON path reported, counted or stored, in UTF-16 units. */
export const MAX_FIELD_CHARS = 256;
/** A diff sample's largest size as JSON, in UTF-8 bytes. */
export const MAX_SAMPLE_BYTES = 16 * 1024;
/** A JSON excerpt of one side, before a sample has to shrink. */
export const MAX_EXCERPT_CHARS = 4000;
/** A value shown in a sample (a JSON value or a header's), before a sample has to shrink. */
export const MAX_VALUE_CHARS = 200;
/** The request path kept in a sample (without its query). */
export const MAX_SAMPLE_PATH_CHARS = 512;

const HASH_CHARS = 14;
/** What a long name keeps of itself: its start, `…#`, and the hash. */
const PREFIX_CHARS = MAX_FIELD_CHARS - HASH_CHARS - 2;
/** Steps by which an oversized sample shrinks, in order. */
const SHRUNK_EXCERPT_CHARS = 1000;
const SHRUNK_VALUE_CHARS = 32;
/** Other strings a sample carries that a client could lengthen (a request id, a method). */
const MAX_LABEL_CHARS = 128;

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** `text` cut to at most `max` UTF-16 units, never between the two halves of a character. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = isHighSurrogate(text.charCodeAt(max - 1)) ? max - 1 : max;
  return text.slice(0, end);
}

/** `text` cut to `max` units plus `…` when it is longer. */
export function clip(text: string, max: number): string {
  return text.length > max ? `${cut(text, max)}…` : text;
}

/**
 * 53 bits of cyrb53 over the UTF-16 units of `text`, as 14 hex digits: not a secret, only a
 * name that two different long keys are very unlikely to share.
 */
export function nameHash(text: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ unit, 2654435761);
    h2 = Math.imul(h2 ^ unit, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(HASH_CHARS, "0");
}

/**
 * A field name or JSON path of at most `MAX_FIELD_CHARS`: a longer one becomes its first 240
 * units, `…#` and a hash of the whole, such as `$.kkkk…kkk…#01f3a9c2d4e5b6`. The same name
 * always clips to the same text; clipping a clipped name changes nothing.
 */
export function clipField(name: string): string {
  if (name.length <= MAX_FIELD_CHARS) return name;
  return `${cut(name, PREFIX_CHARS)}…#${nameHash(name)}`;
}

/** The UTF-8 size of `text`, without encoding it (a lone surrogate counts as U+FFFD would). */
export function utf8Bytes(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (isHighSurrogate(code) && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** The size of `value` as JSON, in UTF-8 bytes. */
export function jsonBytes(value: unknown): number {
  return utf8Bytes(JSON.stringify(value) ?? "");
}

function clipHeaders(headers: Record<string, string>, max: number): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(headers)) out[clip(name, MAX_FIELD_CHARS)] = clip(String(value), max);
  // A plain object again, so that it serialises and clones as the rest of the sample does.
  return { ...out };
}

function side(s: SampleSide, excerptChars: number, valueChars: number): SampleSide {
  return {
    status: s.status,
    headers: clipHeaders(s.headers, valueChars),
    bodyBytes: s.bodyBytes,
    sha256: clip(String(s.sha256), 64),
    excerpt: clip(String(s.excerpt), excerptChars),
  };
}

function difference(d: SampleDifference, valueChars: number): SampleDifference {
  return {
    field: clipField(String(d.field)),
    path: clipField(String(d.path)),
    primary: clip(String(d.primary), valueChars),
    candidate: clip(String(d.candidate), valueChars),
  };
}

/** Every string in `sample` within its limit: what `boundSample` starts from. */
function normalised(sample: DiffSample, excerptChars: number, valueChars: number): DiffSample {
  return {
    at: sample.at,
    route: sample.route,
    mirror: sample.mirror,
    requestId: clip(String(sample.requestId), MAX_LABEL_CHARS),
    method: clip(String(sample.method), MAX_LABEL_CHARS),
    path: clip(String(sample.path), MAX_SAMPLE_PATH_CHARS),
    fields: sample.fields.map((f) => clipField(String(f))),
    noise: sample.noise.map((f) => clipField(String(f))),
    differences: sample.differences.map((d) => difference(d, valueChars)),
    primary: side(sample.primary, excerptChars, valueChars),
    candidate: side(sample.candidate, excerptChars, valueChars),
  };
}

/** Drops items from the end of `list` until `excess` bytes are saved or none is left. */
function dropFromEnd(list: unknown[], excess: number): void {
  let left = excess;
  while (left > 0 && list.length > 0) {
    const last = list.pop();
    // The item, and the comma before it when it was not alone.
    left -= jsonBytes(last) + (list.length > 0 ? 1 : 0);
  }
}

/**
 * `sample` within `MAX_SAMPLE_BYTES` of JSON. Names are clipped as counted fields are, and every
 * text to its limit; then, while it is still too large: the excerpts are cut to 1,000
 * characters, then left out; the shown values cut to 32; then differences, noise names and field
 * names are dropped from the end, and last the compared headers. What is left of a sample
 * (route, mirror, request, sizes and hashes) always fits.
 */
export function boundSample(sample: DiffSample): DiffSample {
  const steps: Array<(s: DiffSample) => DiffSample> = [
    (s) => normalised(s, SHRUNK_EXCERPT_CHARS, MAX_VALUE_CHARS),
    (s) => normalised(s, 0, MAX_VALUE_CHARS),
    (s) => normalised(s, 0, SHRUNK_VALUE_CHARS),
  ];
  let bounded = normalised(sample, MAX_EXCERPT_CHARS, MAX_VALUE_CHARS);
  let size = jsonBytes(bounded);
  for (const step of steps) {
    if (size <= MAX_SAMPLE_BYTES) return bounded;
    bounded = step(bounded);
    size = jsonBytes(bounded);
  }
  for (const list of [bounded.differences, bounded.noise, bounded.fields]) {
    if (size <= MAX_SAMPLE_BYTES) return bounded;
    dropFromEnd(list, size - MAX_SAMPLE_BYTES);
    size = jsonBytes(bounded);
  }
  if (size > MAX_SAMPLE_BYTES) {
    bounded.primary.headers = {};
    bounded.candidate.headers = {};
  }
  return bounded;
}

/**
 * @module headers/trace
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) for copies. A copy is a request of its
 * own, made on the client's behalf: with a valid `traceparent` on the client's request, each copy
 * (and a compare reference's) carries a child of it — the same trace id, a new random span id,
 * the sampled flag kept — and `tracestate` with `edgemirror=copy` first, so that a tracing backend
 * shows the copy inside the request's trace, beside the primary's span and never mistaken for it.
 * An invalid `traceparent` is left out of the copy rather than passed on (with its `tracestate`,
 * which means nothing without it: the spec forbids reading it then); without one, nothing is
 * added. The primary's request is a pass-through and keeps the client's headers as they are. Pure
 * but for the random span ids.
 */
import { HEX_BYTE } from "../hex/index.js";

export const TRACEPARENT = "traceparent";
export const TRACESTATE = "tracestate";
/** edge-mirror's `tracestate` member: this request is a copy. */
export const COPY_TRACESTATE_KEY = "edgemirror";
export const COPY_TRACESTATE_MEMBER = `${COPY_TRACESTATE_KEY}=copy`;

/** The spec's limits on `tracestate`: list members, and the characters a vendor must propagate. */
export const MAX_TRACESTATE_MEMBERS = 32;
export const MAX_TRACESTATE_CHARS = 512;
/** Members longer than this go first when a `tracestate` is too long (the spec's truncation order). */
const LONG_MEMBER_CHARS = 128;

/** The fields of a valid `traceparent` a child keeps. */
export interface TraceParent {
  /** 32 lower-case hex digits, not all zero. */
  traceId: string;
  /** 16 lower-case hex digits, not all zero: the caller's span. */
  parentId: string;
  /** The trace flags byte. */
  flags: number;
}

const HEX2 = /^[0-9a-f]{2}$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_SPAN_ID = "0".repeat(16);
/**
 * The flags a child keeps: sampled (0x01) and, from Trace Context Level 2, random trace id (0x02),
 * which is about the trace id the child keeps too. Others are undefined and must be sent as 0.
 */
const KEPT_FLAGS = 0x03;

/**
 * A `traceparent` value's fields, or undefined when it is not valid: version 00 is exactly
 * `00-<32 hex>-<16 hex>-<2 hex>`, lower case, ids not all zero; a higher version (not `ff`) is
 * read the same way from its first 55 characters when the next, if any, is `-`, as the spec
 * says a parser of version 00 must.
 */
export function parseTraceparent(value: string): TraceParent | undefined {
  const version = value.slice(0, 2);
  if (!HEX2.test(version) || version === "ff") return undefined;
  if (version === "00" ? value.length !== 55 : value.length < 55 || (value.length > 55 && value[55] !== "-")) {
    return undefined;
  }
  if (value[2] !== "-" || value[35] !== "-" || value[52] !== "-") return undefined;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!TRACE_ID.test(traceId) || traceId === ZERO_TRACE_ID) return undefined;
  if (!SPAN_ID.test(parentId) || parentId === ZERO_SPAN_ID) return undefined;
  if (!HEX2.test(flags)) return undefined;
  return { traceId, parentId, flags: Number.parseInt(flags, 16) };
}

/** A version 00 `traceparent` for a child of `parent` whose span is `spanId` (16 hex digits). */
export function childTraceparent(parent: TraceParent, spanId: string): string {
  const flags = (parent.flags & KEPT_FLAGS).toString(16).padStart(2, "0");
  return `00-${parent.traceId}-${spanId}-${flags}`;
}

/**
 * Random bytes drawn 512 at a time: one call into the runtime's generator serves 64 span ids,
 * where a call per copy cost more than the rest of the copy's trace context.
 */
const pool = new Uint8Array(512);
let used = pool.byteLength;

/** 64 random bits (crypto.getRandomValues) as 16 hex digits, never all zero. */
export function randomSpanId(): string {
  let id = ZERO_SPAN_ID;
  while (id === ZERO_SPAN_ID) {
    if (used === pool.byteLength) {
      crypto.getRandomValues(pool);
      used = 0;
    }
    id = "";
    for (let i = 0; i < 8; i++) id += HEX_BYTE[pool[used++] as number];
  }
  return id;
}

const KEY = /^[a-z0-9][a-z0-9_\-*/@]{0,255}$/;
// Printable ASCII but `,` and `=`, at most 256, not ending in a space.
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * The copy's `tracestate`: `edgemirror=copy`, then the client's members in their order — each
 * valid one once (the leftmost of a repeated key, the most recent position), an earlier
 * `edgemirror` dropped, as the spec has a vendor move its own member to the front — at most 32
 * members and 512 characters, members longer than 128 characters dropped first and then from
 * the right, as the spec's truncation order says. Invalid members are dropped, not passed on.
 */
export function copyTracestate(value: string | null): string {
  const members: string[] = [COPY_TRACESTATE_MEMBER];
  const seen = new Set<string>([COPY_TRACESTATE_KEY]);
  for (const raw of value?.split(",") ?? []) {
    const member = raw.replace(/^[ \t]+|[ \t]+$/g, "");
    const equals = member.indexOf("=");
    if (equals <= 0) continue;
    const key = member.slice(0, equals);
    if (seen.has(key) || !KEY.test(key) || !VALUE.test(member.slice(equals + 1))) continue;
    seen.add(key);
    members.push(member);
    if (members.length === MAX_TRACESTATE_MEMBERS) break;
  }
  let length = members.reduce((sum, m) => sum + m.length, members.length - 1);
  while (length > MAX_TRACESTATE_CHARS) {
    let drop = members.findLastIndex((m, i) => i > 0 && m.length > LONG_MEMBER_CHARS);
    if (drop === -1) drop = members.length - 1;
    length -= (members[drop] as string).length + 1;
    members.splice(drop, 1);
  }
  return members.join(",");
}

/**
 * Gives a copy's headers (a copy of the request's, made for this one copy) their trace context:
 * a child `traceparent` with a span id of its own and `edgemirror=copy` in `tracestate` when the
 * request's `traceparent` is valid; neither header when it is not; nothing when there is none.
 */
export function traceCopy(headers: Headers, spanId: () => string = randomSpanId): void {
  const value = headers.get(TRACEPARENT);
  if (value === null) return;
  const parent = parseTraceparent(value);
  if (parent === undefined) {
    headers.delete(TRACEPARENT);
    headers.delete(TRACESTATE);
    return;
  }
  headers.set(TRACEPARENT, childTraceparent(parent, spanId()));
  headers.set(TRACESTATE, copyTracestate(headers.get(TRACESTATE)));
}

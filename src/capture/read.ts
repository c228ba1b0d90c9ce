/**
 * @module capture/read
 * Reads what capture keeps of a body: its first `maxBodyBytes`, the rest left to stream on (the
 * branch is cancelled once past them). Every byte kept is taken from the isolate's memory budget
 * (body/budget) before it is held; what does not fit is not kept. When a compared mirror wants the
 * primary's answer too, `splitAnswer` reads one tee branch for both: the comparison gets the whole
 * answer within its own cap (or why not), capture its prefix. The client's branch streams
 * untouched either way.
 */

import type { Hold } from "../body/budget.js";
import { joinBytes } from "../body/bytes.js";
import { declaredLength } from "../body/index.js";
import type { Capture } from "../compare/index.js";
import type { BodyPrefix } from "./record.js";

/**
 * How long capture, reading on its own, waits for a body's first `maxBodyBytes`: a slow upload or
 * a streamed answer (server-sent events) is kept as far as it came, marked truncated.
 */
export const CAPTURE_READ_MS = 10_000;

interface Read {
  /** The bytes kept, at most `limit`. */
  bytes: Uint8Array;
  /** Bytes that arrived, kept or not. */
  total: number;
  /** Read to the end (not cut at the limit, the budget or the deadline). */
  complete: boolean;
  /** Why reading stopped early, if it did for another reason than the limit. */
  stopped?: string;
}

/**
 * Takes bytes `[from, to)` of a body from the budget before they are held; a refusal says why.
 * Bytes up to `covered` were taken already (a declared length).
 */
type Charge = (from: number, to: number) => string | undefined;

/** Charges every byte beyond `covered` to `hold`. */
function chargeTo(hold: Hold, covered = 0): Charge {
  return (from, to) => {
    const bytes = to - Math.max(covered, from);
    return bytes <= 0 || hold.take(bytes) ? undefined : hold.refusal(`body at ${to} bytes`);
  };
}

/**
 * Reads `stream` until more than `limit` bytes came (then cancels it), it ends, `charge` refuses
 * a byte, or `deadlineMs` passes.
 */
async function readUpTo(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  charge: Charge,
  deadlineMs: number | undefined,
): Promise<Read> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let kept = 0;
  let total = 0;
  let late = false;
  const timer =
    deadlineMs === undefined
      ? undefined
      : setTimeout(() => {
          late = true;
          reader.cancel("capture read deadline").catch(() => {});
        }, deadlineMs);
  const stop = async (stopped: string | undefined): Promise<Read> => {
    await reader.cancel("capture has what it keeps").catch(() => {});
    return { bytes: joinBytes(chunks, kept), total, complete: false, ...(stopped ? { stopped } : {}) };
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (late) return { bytes: joinBytes(chunks, kept), total, complete: false, stopped: "deadline" };
      if (done) return { bytes: joinBytes(chunks, kept), total, complete: true };
      total += value.byteLength;
      const keep = Math.min(value.byteLength, limit - kept);
      if (keep > 0) {
        const refused = charge(kept, kept + keep);
        if (refused !== undefined) return stop(refused);
        // A chunk kept in part is copied, so that the rest of its buffer is not held with it.
        chunks.push(keep === value.byteLength ? value : value.slice(0, keep));
        kept += keep;
      }
      if (total > limit) return stop(undefined);
    }
  } catch (err) {
    return { bytes: joinBytes(chunks, kept), total, complete: false, stopped: String(err).slice(0, 200) };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/** The length a body declares, when it is its length as read (not content-encoded). */
function declaredSize(headers: Headers): number | undefined {
  return headers.has("content-encoding") ? undefined : declaredLength(headers.get("content-length"));
}

/** Capture's view of a read: the first `cap` bytes, truncated unless the whole body was read. */
function prefixOf(read: Read, cap: number, declared: number | undefined): BodyPrefix {
  const size = declared ?? (read.complete ? read.total : null);
  if (read.bytes.byteLength === 0 && read.stopped !== undefined && read.total > 0) {
    return { failed: `not read: ${read.stopped}`, size };
  }
  const whole = read.complete && read.total <= cap;
  return {
    bytes: read.bytes.byteLength > cap ? read.bytes.subarray(0, cap) : read.bytes,
    truncated: !whole,
    size,
  };
}

/** The first `cap` bytes of a request body (capture's own tee branch). */
export async function readPrefix(
  stream: ReadableStream<Uint8Array>,
  cap: number,
  hold: Hold,
  declared: number | undefined,
): Promise<BodyPrefix> {
  return prefixOf(await readUpTo(stream, cap, chargeTo(hold), CAPTURE_READ_MS), cap, declared);
}

/** What a compared mirror's comparison of the primary's answer needs from capture's read. */
/** A comparison that reads the primary's answer through capture's tee (see `splitAnswer`). */
export interface CompareShare {
  /** The comparison's `maxBodyBytes`. */
  cap: number;
  /** What the comparison's read of the primary's answer takes from, given back when its copies end. */
  hold: Hold | undefined;
}

/**
 * Who pays for a shared read. A declared length a comparison admitted is taken already, from its
 * hold. Other bytes capture keeps are taken from capture's hold, which lasts until its record is
 * built — the comparison's is given back when the request's copies end, which may be first (a
 * mirror that fails at once), and capture's read must go on; the bytes past capture's cap,
 * which only the comparison wants, from the comparison's.
 */
function sharedCharge(capture: { cap: number; hold: Hold }, compareHold: Hold | undefined, covered: number): Charge {
  const own = chargeTo(capture.hold, covered);
  if (!compareHold) return own;
  const theirs = chargeTo(compareHold, covered);
  return (from, to) => {
    const split = Math.min(Math.max(from, capture.cap), to);
    return (split > from ? own(from, split) : undefined) ?? (to > split ? theirs(split, to) : undefined);
  };
}

/**
 * Splits the primary's answer: the client streams one branch untouched, the other is read once,
 * for capture (its first `cap` bytes) and, when given, for a comparison (the whole answer up to
 * the comparison's own cap, refused as `teeForComparison` refuses it). Every byte read is taken
 * from the budget once (see `sharedCharge`); read for capture alone, it is read for at most
 * `CAPTURE_READ_MS`.
 */
export function splitAnswer(
  response: Response,
  capture: { cap: number; hold: Hold },
  compare?: CompareShare,
): { response: Response; body: Promise<BodyPrefix | null>; compared?: Promise<Capture> } {
  if (!response.body) {
    const empty: Capture = {
      ok: true,
      response: { status: response.status, headers: response.headers, body: new Uint8Array() },
    };
    // An answer without a body (a 204, a 304) is recorded as one with an empty body, to compare.
    return {
      response,
      body: Promise.resolve({ bytes: new Uint8Array(), truncated: false, size: 0 }),
      ...(compare ? { compared: Promise.resolve(empty) } : {}),
    };
  }
  const declared = declaredSize(response.headers);
  let refusal: string | undefined;
  let covered = 0;
  if (compare) {
    if (declared !== undefined && declared > compare.cap) {
      refusal = `content-length ${declared} exceeds maxBodyBytes (${compare.cap})`;
    } else if (declared !== undefined && compare.hold) {
      if (compare.hold.take(declared)) covered = declared;
      else refusal = compare.hold.refusal(`content-length ${declared}`);
    }
  }
  const compareCap = compare && refusal === undefined ? compare.cap : undefined;
  const [toClient, toRead] = response.body.tee();
  const read = readUpTo(
    toRead,
    Math.max(capture.cap, compareCap ?? 0),
    sharedCharge(capture, compareCap === undefined ? undefined : compare?.hold, covered),
    compareCap === undefined ? CAPTURE_READ_MS : undefined,
  );
  const compared =
    compare &&
    read.then((r): Capture => {
      if (refusal !== undefined) return { ok: false, error: refusal };
      if (r.complete && compareCap !== undefined && r.total <= compareCap) {
        return { ok: true, response: { status: response.status, headers: response.headers, body: r.bytes } };
      }
      if (r.stopped !== undefined) return { ok: false, error: `primary body: ${r.stopped}` };
      return { ok: false, error: `body exceeds maxBodyBytes (${compare.cap})` };
    });
  return {
    response: new Response(toClient, response),
    body: read.then((r) => prefixOf(r, capture.cap, declared)),
    ...(compared ? { compared } : {}),
  };
}

/**
 * @module body
 * Every stream edge-mirror touches: the client's upload on its way to the primary (`relayBody`),
 * its copy for the mirrors (`splitUpload`, `readCapped`), and the primary's answer read a
 * second time for comparison (`teeForComparison`, `captureResponse`). Bodies are never buffered
 * on the client's path; what is buffered for mirrors and comparisons is capped before it is read,
 * and taken from the isolate's memory budget (`./budget.js`) before it is held.
 */
import type { Capture } from "../compare/index.js";
import type { Hold, MemoryBudget } from "./budget.js";
import { joinBytes } from "./bytes.js";

/**
 * The primary's small answer was lost with its connection before its body arrived (see
 * `readSmallAnswer`): the client can only be told the primary failed, which the proxy says.
 */
export class AnswerLostError extends Error {
  /** The code the proxy answers it with: to the client, the primary could not be reached. */
  readonly code = "primary_unreachable";
  constructor() {
    super("primary closed the connection before its answer's body arrived: the answer was lost");
    this.name = "AnswerLostError";
  }
}

/** `Content-Length` as a byte count, or undefined when absent or not a plain non-negative integer. */
export function declaredLength(value: string | null): number | undefined {
  if (value === null) return undefined;
  const length = Number(value);
  return Number.isSafeInteger(length) && length >= 0 && value.trim() !== "" ? length : undefined;
}

/** The mirrors' copy of the request body, decided before anything is buffered. */
export type MirrorBody =
  | { kind: "none" }
  /** `hold` has taken the declared length already; a body of unknown length takes as it is read. */
  | { kind: "stream"; stream: ReadableStream<Uint8Array>; cap: number; declared: number | undefined; hold: Hold }
  | { kind: "too_large"; declared: number; cap: number }
  | { kind: "over_budget"; detail: string };

const NO_BODY: MirrorBody = { kind: "none" };

/** Methods whose copies cannot carry a body (`fetch` refuses to build them). */
export function isBodyless(method: string): boolean {
  return method === "GET" || method === "HEAD";
}

/**
 * Splits the client's upload between the primary and the mirrors, only when some mirror was
 * sampled (`cap` given). A body declared larger than `cap`, or than what `budget` has left, is
 * never tee'd: the mirrors get a skip, the primary the untouched stream. A body of unknown length
 * is tee'd and takes from the budget as it is read. A GET or HEAD that arrived with a body keeps
 * it for the primary; its copies go without.
 */
export function splitUpload(
  request: Request,
  cap: number | undefined,
  budget: MemoryBudget,
): { primary: ReadableStream<Uint8Array> | null; mirrors: MirrorBody } {
  const body = request.body;
  if (!body || cap === undefined || isBodyless(request.method)) return { primary: body, mirrors: NO_BODY };
  const declared = declaredLength(request.headers.get("content-length"));
  if (declared !== undefined && declared > cap) return { primary: body, mirrors: { kind: "too_large", declared, cap } };
  const hold = budget.hold();
  if (declared !== undefined) {
    if (!hold.take(declared)) {
      return { primary: body, mirrors: { kind: "over_budget", detail: hold.refusal(`content-length ${declared}`) } };
    }
  }
  const [primary, mirrors] = body.tee();
  return { primary, mirrors: { kind: "stream", stream: mirrors, cap, declared, hold } };
}

type ReadFailure = { ok: false; reason: "body_too_large" | "body_read_failed" | "memory_budget"; detail: string };

export type BodyRead = { ok: true; bytes: Uint8Array | null } | ReadFailure;

/**
 * Reads at most `cap` bytes, taking each chunk from `hold` beyond the first `covered` bytes (taken
 * already, from a declared length); without a hold, only the cap applies. Past the cap, or once
 * the budget is spent, the stream is cancelled at once, so a tee stops holding chunks for it and
 * the other branch streams on unhindered.
 */
async function readChunks(
  stream: ReadableStream<Uint8Array>,
  cap: number,
  hold: Hold | undefined,
  covered: number,
): Promise<{ ok: true; chunks: Uint8Array[]; size: number } | ReadFailure> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let taken = covered;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > cap) {
        await reader.cancel("body cap reached").catch(() => {});
        return { ok: false, reason: "body_too_large", detail: `body exceeds maxMirrorBodyBytes (${cap})` };
      }
      if (hold && size > taken) {
        if (!hold.take(size - taken)) {
          await reader.cancel("memory budget spent").catch(() => {});
          return { ok: false, reason: "memory_budget", detail: hold.refusal(`body at ${size} bytes`) };
        }
        taken = size;
      }
      chunks.push(value);
    }
  } catch (err) {
    return { ok: false, reason: "body_read_failed", detail: String(err) };
  }
  return { ok: true, chunks, size };
}

/** Reads at most `cap` bytes into one array (see `readChunks`). */
export async function readCapped(
  stream: ReadableStream<Uint8Array>,
  cap: number,
  hold?: Hold,
  covered = 0,
): Promise<BodyRead> {
  const read = await readChunks(stream, cap, hold, covered);
  return read.ok ? { ok: true, bytes: joinBytes(read.chunks, read.size) } : read;
}

/**
 * The mirrors' copy of a request body, read once and shared by every copy of the request (and a
 * comparison's reference) until they are done.
 */
export interface CopyBody {
  /** The bytes in order: one part of the declared length, or the buffers or chunks of a body of unknown length. */
  readonly parts: readonly Uint8Array[];
  readonly size: number;
}

export type MirrorBodyRead = { ok: true; body: CopyBody | null } | ReadFailure;

/**
 * A body of unknown length is read into buffers that grow with it: the first of
 * `FIRST_BLOCK_BYTES`, each next one as large as what came before, up to `BODY_BLOCK_BYTES`.
 */
export const FIRST_BLOCK_BYTES = 16 * 1024;
export const BODY_BLOCK_BYTES = 1024 * 1024;

/**
 * A body up to this size goes to each copy's `fetch` as one array, which `fetch` copies; a larger
 * one is streamed to each copy from the shared parts (see `copyRequestBody`).
 */
export const COPIED_BODY_BYTES = 64 * 1024;

/**
 * Frees a buffer this module allocated and never handed on, at once: left to the collector, a
 * body's worth would stay resident a while after its read failed.
 */
function free(bytes: Uint8Array): void {
  try {
    (bytes.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer?.(0);
  } catch {
    // Already detached.
  }
}

/** A body of unknown length read chunk by chunk: a small one is joined, so that copies get one array. */
function chunkedBody(chunks: Uint8Array[], size: number): CopyBody {
  return { parts: size <= COPIED_BODY_BYTES ? [joinBytes(chunks, size)] : chunks, size };
}

/**
 * Reads the mirrors' copy with BYOB reads into buffers of its own: one of the declared length
 * (taken before the tee), or, for a body of unknown length, growing ones, each taken from `hold`
 * before it is allocated — a buffer holds its whole size however little of it is filled. Chunks
 * the runtime allocated for each read would be as many again, resident until collected. A stream
 * that cannot be read so (one built in JavaScript; tests) is read chunk by chunk, each chunk taken
 * as it comes.
 */
async function readCopyBody(
  stream: ReadableStream<Uint8Array>,
  cap: number,
  declared: number | undefined,
  hold: Hold,
): Promise<MirrorBodyRead> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    const read = await readChunks(stream, cap, hold, declared ?? 0);
    return read.ok ? { ok: true, body: chunkedBody(read.chunks, read.size) } : read;
  }
  const blocks: Uint8Array[] = [];
  let block: Uint8Array | undefined;
  let filled = 0;
  let size = 0;
  const fail = async (failure: ReadFailure, cancel?: string): Promise<ReadFailure> => {
    if (cancel !== undefined) await reader.cancel(cancel).catch(() => {});
    for (const full of blocks) free(full);
    if (block) free(block);
    return failure;
  };
  /** The next buffer, taken from the budget (a declared length's was taken before the tee). */
  const nextBlock = (): Uint8Array | undefined => {
    // Once the declared length is in, a byte is enough to read the end.
    if (size === declared) return new Uint8Array(1);
    const length = Math.min(BODY_BLOCK_BYTES, Math.max(FIRST_BLOCK_BYTES, size), cap - size + 1);
    return hold.take(length) ? new Uint8Array(length) : undefined;
  };
  block = declared ? new Uint8Array(declared) : nextBlock();
  try {
    for (;;) {
      if (!block) {
        const detail = hold.refusal(`body past ${size} bytes`);
        return fail({ ok: false, reason: "memory_budget", detail }, "memory budget spent");
      }
      const { done, value } = await reader.read(block.subarray(filled));
      // The read takes the buffer over and hands it back in its result (not if the stream was cancelled).
      if (!value) return fail({ ok: false, reason: "body_read_failed", detail: "body stream cancelled" });
      block = new Uint8Array(value.buffer);
      if (done) break;
      filled += value.byteLength;
      size += value.byteLength;
      if (size > cap) {
        const detail = `body exceeds maxMirrorBodyBytes (${cap})`;
        return fail({ ok: false, reason: "body_too_large", detail }, "body cap reached");
      }
      if (filled < block.byteLength) continue;
      blocks.push(block);
      filled = 0;
      block = nextBlock();
    }
  } catch (err) {
    return fail({ ok: false, reason: "body_read_failed", detail: String(err) });
  }
  if (filled > 0) blocks.push(block.subarray(0, filled));
  else free(block);
  return { ok: true, body: { parts: blocks, size } };
}

/** The mirrors' body, read once (see `readCopyBody`) and shared by every copy. */
export async function readMirrorBody(body: MirrorBody): Promise<MirrorBodyRead> {
  switch (body.kind) {
    case "none":
      return { ok: true, body: null };
    case "too_large":
      return {
        ok: false,
        reason: "body_too_large",
        detail: `content-length ${body.declared} exceeds maxMirrorBodyBytes (${body.cap})`,
      };
    case "over_budget":
      return { ok: false, reason: "memory_budget", detail: body.detail };
    case "stream":
      return readCopyBody(body.stream, body.cap, body.declared, body.hold);
  }
}

/** What one write of a streamed copy hands the runtime, which copies it. */
const COPY_SLICE_BYTES = 256 * 1024;

const NOTHING_TO_STOP = () => {};

/**
 * One copy's request body. `fetch` copies an array body for every request it sends (and holds
 * that copy until the request is collected), so a body larger than `COPIED_BODY_BYTES` is
 * streamed instead, from the shared parts, a slice at a time, with its length declared: the
 * request's copies then hold the body once, not once each. `stop` ends the stream once the copy
 * is done (a mirror that answered before reading it all would leave it waiting).
 */
export function copyRequestBody(body: CopyBody): { init: BodyInit; stop: () => void } {
  const { parts, size } = body;
  if (size <= COPIED_BODY_BYTES) return { init: joinBytes(parts, size), stop: NOTHING_TO_STOP };
  const { readable, writable } = new FixedLengthStream(size);
  const writer = writable.getWriter();
  const pump = async () => {
    for (const part of parts) {
      for (let at = 0; at < part.byteLength; at += COPY_SLICE_BYTES) {
        await writer.write(part.subarray(at, at + COPY_SLICE_BYTES));
      }
    }
    await writer.close();
  };
  // A copy that failed or was stopped cancels the stream: the write then fails, and the pump ends.
  pump().catch(() => {});
  return { init: readable, stop: () => void writer.abort("copy done").catch(() => {}) };
}

/** A mirror's answer up to this long is read to its end and dropped (see `discardAnswer`). */
export const REUSABLE_ANSWER_BYTES = 64 * 1024;

/**
 * Drops a mirror's answer, holding at most `REUSABLE_ANSWER_BYTES` of it. Cancelling a body
 * closes its connection, so every copy would open a new one to the mirror: in workerd one TCP
 * connection per copy, and for the mirror a handshake per copy. So a small answer (a
 * remote-write 204 or 200, a short JSON) is read to its end, which hands the connection back
 * for the next copy; one declared longer than `REUSABLE_ANSWER_BYTES`, or found longer while
 * read, is cancelled. Never throws: a lost connection has nothing left to give back.
 */
export async function discardAnswer(response: Response): Promise<void> {
  const length = declaredLength(response.headers.get("content-length"));
  if (length !== undefined && length > REUSABLE_ANSWER_BYTES) return response.body?.cancel().catch(() => {});
  try {
    // A declared length bounds the read: the runtime reads it whole, in one step of its own.
    if (length !== undefined) return void (await response.arrayBuffer());
    if (response.body) await drain(response.body, REUSABLE_ANSWER_BYTES);
  } catch {
    // Aborted by the copy's deadline, or reset: there is no connection to give back.
  }
}

/** What one read of a dropped answer asks for: enough for a whole typical answer. */
export const DRAIN_READ_BYTES = 4096;

/**
 * Reads `body` to its end, or cancels it once more than `limit` bytes came. A byte stream
 * (every answer `fetch` gives) is read into a buffer filled to the brim, so an answer shorter
 * than the buffer ends in one read: each read costs the runtime a turn of the worker's event
 * loop, and the usual chunk-then-end took two. Other streams are read chunk by chunk.
 */
async function drain(body: ReadableStream<Uint8Array>, limit: number): Promise<void> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = body.getReader({ mode: "byob" });
  } catch {
    return drainChunks(body.getReader(), limit);
  }
  let buffer = new Uint8Array(DRAIN_READ_BYTES);
  for (let left = limit; ; ) {
    // The read takes the buffer over and gives it back in its result.
    const { done, value } = await reader.readAtLeast(DRAIN_READ_BYTES, buffer);
    // Short of a full buffer only at the end: the answer is read, its connection free.
    if (done || !value || value.byteLength < DRAIN_READ_BYTES) return;
    left -= value.byteLength;
    if (left < 0) return reader.cancel();
    buffer = new Uint8Array(value.buffer);
  }
}

async function drainChunks(reader: ReadableStreamDefaultReader<Uint8Array>, limit: number): Promise<void> {
  for (let left = limit; ; ) {
    const { done, value } = await reader.read();
    if (done) return;
    left -= value.byteLength;
    if (left < 0) return reader.cancel();
  }
}

/**
 * How much of a response a comparison may read is decided, where it can be, before anything is
 * read: an answer declared (and not encoded, which would change its length once decoded) longer
 * than `cap`, or than what `hold` can take, is refused at once; otherwise its declared length is
 * taken (`covered`), and a body of unknown length takes as it is read.
 */
function admitCapture(response: Response, cap: number, hold: Hold | undefined): { covered: number } | string {
  const length = declaredLength(response.headers.get("content-length"));
  if (length === undefined || response.headers.has("content-encoding")) return { covered: 0 };
  if (length > cap) return `content-length ${length} exceeds maxBodyBytes (${cap})`;
  if (!hold) return { covered: 0 };
  return hold.take(length) ? { covered: length } : hold.refusal(`content-length ${length}`);
}

async function capture(response: Response, cap: number, hold: Hold | undefined, covered: number): Promise<Capture> {
  const read: BodyRead = response.body
    ? await readCapped(response.body, cap, hold, covered)
    : { ok: true, bytes: null };
  if (!read.ok) return { ok: false, error: read.detail };
  return {
    ok: true,
    response: { status: response.status, headers: response.headers, body: read.bytes ?? new Uint8Array() },
  };
}

/**
 * Reads a response body up to `cap` for comparison, taking its bytes from `hold`; past the cap,
 * or past the budget, there is nothing to compare.
 */
export async function captureResponse(response: Response, cap: number, hold?: Hold): Promise<Capture> {
  if (!response.body) return capture(response, cap, hold, 0);
  const admitted = admitCapture(response, cap, hold);
  if (typeof admitted === "string") {
    await response.body.cancel().catch(() => {});
    return { ok: false, error: admitted };
  }
  return capture(response, cap, hold, admitted.covered);
}

/**
 * Splits the primary's body so that the client streams one branch untouched while the other is
 * read, up to `cap`, for comparison. Past the cap, or once `hold` can take no more, the comparison
 * branch is cancelled, so at most `cap` bytes are ever held for it; an answer declared too long
 * for either is not split at all.
 */
export function teeForComparison(
  response: Response,
  cap: number,
  hold?: Hold,
): { response: Response; capture: Promise<Capture> } {
  if (!response.body) return { response, capture: capture(response, cap, hold, 0) };
  const admitted = admitCapture(response, cap, hold);
  if (typeof admitted === "string") return { response, capture: Promise.resolve({ ok: false, error: admitted }) };
  const [toClient, toCompare] = response.body.tee();
  const captured = capture(new Response(toCompare, response), cap, hold, admitted.covered).catch(
    (err: unknown): Capture => ({ ok: false, error: `primary body: ${String(err)}` }),
  );
  return { response: new Response(toClient, response), capture: captured };
}

/**
 * The client's body on its way to the primary, read chunk by chunk by the worker (one chunk
 * in flight, never buffered) and written to a stream the worker owns, which is what `fetch`
 * gets. Handing `request.body` itself to `fetch` gives it to the runtime: when the primary
 * fails or answers before reading it all, the rest of the upload is never read, and workerd
 * closes a connection whose request body was left unread (more than 64 KiB of it) without
 * saying so in the response, so a client still uploading, or the next request on that
 * keep-alive connection, gets a reset instead of the answer. (`pipeTo` does not help: the
 * runtime's native pipe tears the source down with the failed fetch.) With the relay,
 * `discardRest` reads the rest of the upload and drops it — nginx's lingering close — and the
 * connection survives. A primary that answers before reading the upload (an auth check's 401,
 * a 413) is handled by `answered`.
 */
export interface RelayedBody {
  /** What `fetch` sends: Content-Length when the client declared one, chunked otherwise. */
  readonly stream: ReadableStream;
  /** Settles once the client's body has been read to its end (forwarded or dropped) or abandoned. */
  readonly done: Promise<void>;
  /**
   * Stops forwarding and reads the rest of the upload, dropping it; gives up when it pauses for
   * `idleMs`, or after `LINGER_TOTAL_MS` in all.
   */
  discardRest(idleMs: number): Promise<void>;
  /**
   * The primary's answer as the client gets it, when the upload had been read to its end (the
   * usual case): untouched, except that a small one with a declared length is read in full
   * first, so that it reaches the client whole or as a clean 502. An early answer waits for the
   * rest of the upload (see `relayBody`).
   */
  answered(response: Response, limitMs: number): Response | Promise<Response>;
}

/**
 * The runtime itself reads and drops up to 64 KiB of a body the worker left unread, so a body
 * declared at most this long keeps its connection without a relay and goes to `fetch` as is.
 */
export const RUNTIME_DRAINS_BYTES = 60 * 1024;

/** Read size of the relay: the default reader would hand the worker 4 KiB chunks. */
const RELAY_CHUNK_BYTES = 256 * 1024;

/** BYOB reads in large chunks where the stream allows it (the runtime's own bodies do). */
function chunkReader(source: ReadableStream) {
  try {
    const reader = source.getReader({ mode: "byob" });
    // The previous chunk's buffer, once written, is read into again: a fresh 256 KiB buffer per
    // read would leave a 100 MB upload's worth of garbage for the collector to catch up with.
    const read = (spare?: ArrayBufferLike) =>
      reader.read(new Uint8Array(spare?.byteLength === RELAY_CHUNK_BYTES ? spare : new ArrayBuffer(RELAY_CHUNK_BYTES)));
    return { reader, read };
  } catch {
    // A stream built in JavaScript (tests, or a tee of one) is not a byte stream.
    const reader = source.getReader();
    return {
      reader,
      read: (_spare?: ArrayBufferLike) => reader.read() as Promise<ReadableStreamReadResult<Uint8Array>>,
    };
  }
}

const NOTHING_TO_DRAIN: Omit<RelayedBody, "stream"> = {
  done: Promise.resolve(),
  discardRest: async () => {},
  answered: (response) => response,
};

/** An early answer's body up to this size is read before it goes out (a 401's or 413's is a few bytes). */
export const EARLY_ANSWER_BYTES = 64 * 1024;

const LATE = Symbol("late");

/**
 * The declared length of an answer small enough for the worker to read before it goes out (see
 * `readSmallAnswer`), or undefined for a larger, streamed or encoded one, which goes on as it
 * is (reading it would mean buffering it, or decoding it only for the runtime to encode it
 * again).
 */
function smallAnswerLength(response: Response): number | undefined {
  const length = declaredLength(response.headers.get("content-length"));
  if (!response.body || length === undefined || length > EARLY_ANSWER_BYTES) return undefined;
  return response.headers.has("content-encoding") ? undefined : length;
}

/**
 * Reads a body declared `length` bytes long and stops once those bytes are in: the runtime
 * ends a primary's body only with its connection when the upload was not read to its end, and
 * that connection may then be reset under bytes that had all arrived.
 */
export async function readDeclared(body: ReadableStream<Uint8Array>, length: number): Promise<BodyRead> {
  const reader = body.getReader();
  const bytes = new Uint8Array(length);
  let at = 0;
  try {
    while (at < length) {
      const { done, value } = await reader.read();
      if (done) return { ok: false, reason: "body_read_failed", detail: `body ended after ${at} of ${length} bytes` };
      if (at + value.byteLength > length) {
        return { ok: false, reason: "body_read_failed", detail: `body longer than its ${length} bytes` };
      }
      bytes.set(value, at);
      at += value.byteLength;
    }
  } catch (err) {
    return { ok: false, reason: "body_read_failed", detail: String(err) };
  }
  reader.cancel().catch(() => {});
  return { ok: true, bytes };
}

/**
 * A small answer read in full before it goes out, so that the client gets all of it or a clean
 * 502, never headers followed by a reset. The runtime hands the worker an answer's body only once
 * the upload has been sent on (the relay may have handed it every byte while its own last write
 * still waits for a primary that stopped reading), and a primary that then resets its connection
 * (Go's server does, 500 ms after answering) takes the body with it. A larger, streamed or
 * encoded answer goes on as it is (see `smallAnswerLength`).
 */
function readSmallAnswer(response: Response, limitMs?: number): Response | Promise<Response> {
  const length = smallAnswerLength(response);
  return length === undefined ? response : readInFull(response, length, limitMs);
}

async function readInFull(response: Response, length: number, limitMs: number | undefined): Promise<Response> {
  const reading = readDeclared(response.body as ReadableStream<Uint8Array>, length);
  const read = limitMs === undefined ? await reading : await within(reading, limitMs);
  if (read === LATE || !read.ok) throw new AnswerLostError();
  return new Response(read.bytes, response);
}

/** nginx's `lingering_time`: dropping an upload the primary will not read never takes longer. */
export const LINGER_TOTAL_MS = 30_000;

/** `promise`, or LATE once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof LATE> {
  let timer = 0;
  const late = new Promise<typeof LATE>((resolve) => {
    timer = setTimeout(() => resolve(LATE), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A primary may answer before it has read the upload: an auth check's 401, a 413. workerd hands
 * such an answer's body to the worker only once the upload has been sent on, and the client's
 * connection survives only if its upload is read to the end. So the answer waits: while the
 * primary goes on reading (Node's server and nginx's lingering close read and drop the rest) the
 * relay forwards; once it has closed the connection (Go's server does, 500 ms after answering)
 * the relay drops; a primary that neither reads nor closes gets the rest dropped for it after
 * `limitMs` without progress. Then a small answer is read in full, because a primary that reset
 * the connection meanwhile has taken its answer with it: that is a clean 502 for the client,
 * where streaming the lost answer would have reset the client's connection halfway.
 */
export function relayBody(source: ReadableStream, contentLength: string | null): RelayedBody {
  const length = declaredLength(contentLength);
  if (length !== undefined && length <= RUNTIME_DRAINS_BYTES) return { stream: source, ...NOTHING_TO_DRAIN };
  const { readable, writable } = length !== undefined ? new FixedLengthStream(length) : new IdentityTransformStream();
  const writer = writable.getWriter();
  const { reader, read } = chunkReader(source);
  let forwarding = true;
  /** The client's body was read to its end. */
  let finished = false;
  /** When the write now waiting for the primary started; 0 while none waits. */
  let writingSince = 0;
  /** When the client's upload last gave a chunk. */
  let lastReadAt = Date.now();
  const stopForwarding = (reason?: unknown) => {
    if (!forwarding) return;
    forwarding = false;
    writer.abort(reason).catch(() => {});
  };
  const done = (async () => {
    try {
      let spare: ArrayBufferLike | undefined;
      for (;;) {
        const { done: end, value } = await read(spare);
        lastReadAt = Date.now();
        if (end) {
          finished = true;
          break;
        }
        // A write fails once the primary stops reading (it failed or answered early): keep
        // reading the client's body and drop it from then on.
        if (forwarding) {
          writingSince = Date.now();
          await writer.write(value).catch(stopForwarding);
          writingSince = 0;
        }
        spare = value.buffer;
      }
      if (forwarding) await writer.close().catch(() => {});
    } catch (err) {
      // The client's upload broke off: the primary must not take a truncated body as complete.
      stopForwarding(err);
    }
  })();
  const discardRest = async (idleMs: number) => {
    stopForwarding(new Error("primary failed"));
    // nginx's lingering close: an upload still arriving is read on; one that pauses for idleMs,
    // or is not done within LINGER_TOTAL_MS, is abandoned, and the runtime closes the connection.
    const started = Date.now();
    while ((await within(done, idleMs)) === LATE) {
      const now = Date.now();
      if (now - lastReadAt >= idleMs || now - started >= LINGER_TOTAL_MS) {
        await reader.cancel().catch(() => {});
        return;
      }
    }
  };
  const earlyAnswer = async (response: Response, limitMs: number): Promise<Response> => {
    while ((await within(done, limitMs)) === LATE) {
      if (writingSince !== 0 && Date.now() - writingSince >= limitMs) {
        await discardRest(limitMs);
        break;
      }
    }
    return readSmallAnswer(response, limitMs);
  };
  return {
    stream: readable,
    done,
    discardRest,
    answered: (response, limitMs) => {
      if (!finished || !forwarding) return earlyAnswer(response, limitMs);
      // Every byte was handed to the runtime, yet the last of them may still wait for a primary
      // that stopped reading: its small answer is read before it goes out. No limit here: an
      // answer to a whole upload may take its time, as it could when streamed.
      return readSmallAnswer(response);
    },
  };
}

/**
 * @module spool
 * Where durable copies wait for another attempt: a Cloudflare Queue (`MIRROR_SPOOL`), with bodies
 * too large for a message in an R2 bucket (`MIRROR_SPOOL_BODIES`, one object per body, under
 * `spool/`), and a dead-letter queue (`MIRROR_DEAD_LETTERS`) for copies that used their attempts.
 * `put` spools one copy: its body in the message when the whole message stays under Queues'
 * 128 KB, else in R2; messages an isolate spools within `SPOOL_BATCH_WINDOW_MS` of each other go
 * in one `sendBatch` (at most 100 messages and 256 KB). A queue or bucket that refuses is no
 * error here: the caller gets why, and counts the copy as `spool_unavailable`. The queue, the
 * bucket and the timer of a batch are the only I/O; the message's rules are spool/message.
 */
import type { Hold } from "../body/budget.js";
import { copyBytes } from "../body/bytes.js";
import { type CopyBody, copyRequestBody } from "../body/index.js";
import type { SpooledBodyPlace } from "../record/index.js";
import {
  INLINE_MESSAGE_BYTES,
  MAX_BATCH_BYTES,
  MAX_BATCH_MESSAGES,
  messageBytes,
  SPOOL_KEY_PREFIX,
  type SpooledBody,
  type SpooledCopy,
} from "./message.js";

export * from "./message.js";

/** How long an isolate gathers spooled copies into one `sendBatch`: short, beside a mirror's timeout. */
export const SPOOL_BATCH_WINDOW_MS = 10;

export type SpoolResult = { ok: true; bodyIn: SpooledBodyPlace } | { ok: false; detail: string };

/** One copy to spool: the message but its body, the body as the copies hold it, and the hold it belongs to. */
export interface SpoolRequest {
  copy: Omit<SpooledCopy, "body">;
  body: CopyBody | null;
  /**
   * What the copy's body was taken from (the isolate's memory budget): a body in several parts is
   * joined for the message only if this hold can take the joined bytes too; else it goes to R2,
   * which is written from the parts as they lie.
   */
  hold?: Hold | undefined;
  /** The wait before the first attempt from the spool. */
  delaySeconds: number;
}

/** The bindings a spool works with; any of them may be missing from a deployment's configuration. */
export interface SpoolBindings {
  queue?: Queue | undefined;
  deadLetters?: Queue | undefined;
  bodies?: R2Bucket | undefined;
}

type Sent = { ok: true } | { ok: false; detail: string };

interface OpenBatch {
  messages: MessageSendRequest[];
  bytes: number;
  result: Promise<Sent>;
  settle: (sent: Sent) => void;
  /** Sent already (by its timer, or once full). */
  sent: boolean;
}

const V8 = "v8" as const;

function errorText(err: unknown): string {
  return String((err as Error)?.message ?? err).slice(0, 200);
}

/**
 * The body's bytes as one array the message can carry whole, or undefined when that would cost a
 * copy the hold cannot take. A structured clone carries a view's whole buffer, so only a part
 * that is its buffer goes as it is.
 */
function inlineBytes(body: CopyBody, hold: Hold | undefined): Uint8Array | undefined {
  const [first] = body.parts;
  if (body.parts.length === 1 && first && first.byteOffset === 0 && first.byteLength === first.buffer.byteLength) {
    return first;
  }
  if (hold && !hold.take(body.size)) return undefined;
  return copyBytes(body.parts, body.size);
}

export class Spool {
  readonly #queue: Queue | undefined;
  readonly #deadLetters: Queue | undefined;
  readonly #bodies: R2Bucket | undefined;
  readonly #windowMs: number;
  #batch: OpenBatch | undefined;

  constructor(bindings: SpoolBindings, options: { windowMs?: number } = {}) {
    this.#queue = bindings.queue;
    this.#deadLetters = bindings.deadLetters;
    this.#bodies = bindings.bodies;
    this.#windowMs = options.windowMs ?? SPOOL_BATCH_WINDOW_MS;
  }

  /** Whether copies can be spooled at all (a queue is bound). */
  get bound(): boolean {
    return this.#queue !== undefined;
  }

  /** Spools one copy: resolves with where its body went, or why it could not be spooled. Never throws. */
  async put(request: SpoolRequest): Promise<SpoolResult> {
    if (!this.#queue) return { ok: false, detail: "no MIRROR_SPOOL queue binding" };
    const { copy, body } = request;
    const size = body?.size ?? 0;
    let spooled: SpooledBody = { kind: "none" };
    if (body && size > 0) {
      const bytes = messageBytes(copy, size) <= INLINE_MESSAGE_BYTES ? inlineBytes(body, request.hold) : undefined;
      if (bytes) spooled = { kind: "inline", bytes };
      else {
        const stored = await this.#storeBody(copy, body);
        if (typeof stored === "string") return { ok: false, detail: stored };
        spooled = stored;
      }
    }
    const bytes = messageBytes(copy, spooled.kind === "inline" ? size : 0);
    const sent = await this.#enqueue(
      { body: { ...copy, body: spooled }, contentType: V8, delaySeconds: request.delaySeconds },
      bytes,
    );
    if (sent.ok)
      return { ok: true, bodyIn: spooled.kind === "inline" ? "message" : spooled.kind === "r2" ? "r2" : "none" };
    if (spooled.kind === "r2") await this.deleteBody(spooled.key);
    return sent;
  }

  /** The body in an object of its own, or why it could not be stored. */
  async #storeBody(copy: Omit<SpooledCopy, "body">, body: CopyBody): Promise<SpooledBody | string> {
    if (!this.#bodies) {
      return `a body of ${body.size} bytes does not fit a queue message and no MIRROR_SPOOL_BODIES bucket is bound`;
    }
    const key = `${SPOOL_KEY_PREFIX}${crypto.randomUUID()}`;
    const { init, stop } = copyRequestBody(body);
    try {
      await this.#bodies.put(key, init as ReadableStream | Uint8Array, {
        customMetadata: { route: copy.route, mirror: copy.mirror, requestId: copy.requestId.slice(0, 128) },
      });
      return { kind: "r2", key, size: body.size };
    } catch (err) {
      return `the body could not be stored in R2: ${errorText(err)}`;
    } finally {
      stop();
    }
  }

  /** Adds a message to the open batch, sent once the window closes or the batch is full. */
  #enqueue(message: MessageSendRequest, bytes: number): Promise<Sent> {
    let batch = this.#batch;
    if (batch && (batch.messages.length >= MAX_BATCH_MESSAGES || batch.bytes + bytes > MAX_BATCH_BYTES)) {
      this.#flush(batch);
      batch = undefined;
    }
    if (!batch) {
      let settle: (sent: Sent) => void = () => {};
      const result = new Promise<Sent>((resolve) => {
        settle = resolve;
      });
      const opened: OpenBatch = { messages: [], bytes: 0, result, settle, sent: false };
      // Never cleared: a timer belongs to the request that set it, and a batch filled by another
      // request cannot clear it (workerd's timer ids are per request, so clearTimeout there
      // would clear one of that request's own). It finds the batch sent and does nothing.
      setTimeout(() => this.#flush(opened), this.#windowMs);
      this.#batch = opened;
      batch = opened;
    }
    batch.messages.push(message);
    batch.bytes += bytes;
    return batch.result;
  }

  #flush(batch: OpenBatch): void {
    if (batch.sent) return;
    batch.sent = true;
    if (this.#batch === batch) this.#batch = undefined;
    const queue = this.#queue as Queue;
    queue.sendBatch(batch.messages).then(
      () => batch.settle({ ok: true }),
      (err: unknown) => batch.settle({ ok: false, detail: `the queue refused the copy: ${errorText(err)}` }),
    );
  }

  /** A spooled body, or null when it is gone. Throws when R2 cannot be read (the attempt is retried). */
  async getBody(key: string): Promise<R2ObjectBody | null> {
    if (!this.#bodies) throw new Error("no MIRROR_SPOOL_BODIES bucket is bound");
    return this.#bodies.get(key);
  }

  /** Deletes a spooled body; one that cannot be deleted is left to the bucket's lifecycle rule. */
  async deleteBody(key: string): Promise<void> {
    try {
      await this.#bodies?.delete(key);
    } catch (err) {
      console.error(JSON.stringify({ msg: "edge-mirror.spool_body_not_deleted", key, error: errorText(err) }));
    }
  }

  /** Sends dead copies to the dead-letter queue, in batches within Queues' limits. Throws when it refuses. */
  async deadLetter(copies: readonly SpooledCopy[]): Promise<void> {
    if (!this.#deadLetters) throw new Error("no MIRROR_DEAD_LETTERS queue binding");
    await sendInBatches(this.#deadLetters, copies, 0);
  }

  /** Sends dead copies back to the spool, to be delivered again from their first attempt. Throws when it refuses. */
  async respool(copies: readonly SpooledCopy[]): Promise<void> {
    if (!this.#queue) throw new Error("no MIRROR_SPOOL queue binding");
    await sendInBatches(this.#queue, copies, 0);
  }
}

async function sendInBatches(queue: Queue, copies: readonly SpooledCopy[], delaySeconds: number): Promise<void> {
  let batch: MessageSendRequest[] = [];
  let bytes = 0;
  for (const copy of copies) {
    const size = messageBytes(copy, copy.body.kind === "inline" ? copy.body.bytes.byteLength : 0);
    if (batch.length > 0 && (batch.length >= MAX_BATCH_MESSAGES || bytes + size > MAX_BATCH_BYTES)) {
      await queue.sendBatch(batch);
      batch = [];
      bytes = 0;
    }
    batch.push({ body: copy, contentType: V8, delaySeconds });
    bytes += size;
  }
  if (batch.length > 0) await queue.sendBatch(batch);
}

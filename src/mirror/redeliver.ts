/**
 * @module mirror/redeliver
 * The worker's queue consumer: redelivers spooled durable copies (src/spool). Each message is one
 * copy, sent as it was first sent, with a marker signed now (a marker covers its time); its body
 * comes from the message or is streamed from R2. Then, per message:
 * - 1xx–3xx: delivered (`redelivered`), acknowledged, its R2 body deleted;
 * - another 4xx but 408, 425, 429: final (`rejected`), acknowledged, its body deleted;
 * - no answer, 408, 425, 429 or 5xx: retried (`retrying`) with `message.retry({ delaySeconds })`,
 *   the wait doubling from the copy's `firstDelaySeconds` to at most an hour (or its
 *   `Retry-After`) — until the copy has had `maxAttempts`, when it is `dead`: sent to the
 *   dead-letter queue with its cause, and its R2 body deleted (a body in the message stays with it).
 * A copy read from the dead-letter queue (marked dead: the worker was made that queue's consumer,
 * README "Dead copies") is spooled again from its first attempt (`redriven`). At most
 * `REDELIVERY_CONCURRENCY` copies of a batch are sent at once, within a Worker's 6 connections.
 * Every copy may arrive twice (delivery is at least once): it carries its copy id.
 */
import { discardAnswer } from "../body/index.js";
import { MIRROR_MARKER } from "../headers/index.js";
import { copyAddress, signMarker } from "../headers/marker.js";
import type { OutcomeSink, RetryCause } from "../record/index.js";
import {
  isRetryableStatus,
  parseSpooledCopy,
  retryDelaySeconds,
  type Spool,
  type SpooledBody,
  type SpooledCopy,
} from "../spool/index.js";
import { classifyMirrorError, errorMessage } from "./copy.js";

/** Copies of one batch sent at once: a Worker has 6 simultaneous outgoing connections. */
export const REDELIVERY_CONCURRENCY = 6;
/** A copy whose dead letter or redrive could not be sent waits this long for the next try. */
export const REQUEUE_DELAY_SECONDS = 60;

export interface RedeliveryContext {
  spool: Spool;
  /** The key markers are signed with (src/secret); undefined while none is known. */
  signingKey: () => Promise<CryptoKey | undefined>;
  sink: OutcomeSink;
  /** Where lines about messages that are not copies go; default stderr. */
  log?: (line: string) => void;
}

type Attempt =
  | { kind: "answered"; status: number; latencyMs: number }
  | {
      kind: "failed";
      error: RetryCause;
      status?: number;
      message: string;
      retryAfter?: string | null;
      latencyMs: number;
    }
  /** The body is gone (its R2 object deleted or expired): the copy can never be sent. */
  | { kind: "lost"; message: string };

interface Dead {
  message: Message;
  copy: SpooledCopy;
  error: RetryCause;
  status?: number;
  cause: string;
}

/** Redelivers one batch of spooled copies (see the module's header). Never throws. */
export async function redeliver(batch: MessageBatch, context: RedeliveryContext): Promise<void> {
  const dead: Dead[] = [];
  const redrive: Array<{ message: Message; copy: SpooledCopy }> = [];
  const log = context.log ?? ((line: string) => console.error(line));
  await eachAtMost(REDELIVERY_CONCURRENCY, batch.messages, async (message) => {
    const copy = parseSpooledCopy(message.body);
    if (typeof copy === "string") {
      log(
        JSON.stringify({ msg: "edge-mirror.spool_message_invalid", queue: batch.queue, id: message.id, error: copy }),
      );
      message.ack();
      return;
    }
    if (copy.dead) {
      redrive.push({ message, copy });
      return;
    }
    const found = await deliverOnce(message, copy, context);
    if (found !== undefined) dead.push({ message, copy, ...found });
  });
  await Promise.all([buryDead(dead, context, log), redriveDead(redrive, context, log)]);
}

/**
 * Sends the copy once, and acknowledges or retries its message; returns why it is dead, when it
 * is (its message is then acknowledged once the dead-letter queue has it).
 */
async function deliverOnce(
  message: Message,
  copy: SpooledCopy,
  ctx: RedeliveryContext,
): Promise<Omit<Dead, "message" | "copy"> | undefined> {
  const base = { route: copy.route, mirror: copy.mirror, requestId: copy.requestId };
  const attempt = await send(copy, ctx);
  const ageMs = Math.max(0, Date.now() - copy.firstSeen);
  if (attempt.kind === "lost") return { error: "body_lost", cause: attempt.message };
  if (attempt.kind === "answered") {
    message.ack();
    if (copy.body.kind === "r2") await ctx.spool.deleteBody(copy.body.key);
    const { status, latencyMs } = attempt;
    const outcome =
      status < 400
        ? ({ kind: "redelivered", bodyBytes: bodySize(copy.body) } as const)
        : ({ kind: "rejected" } as const);
    ctx.sink({ ...base, ...outcome, attempt: message.attempts, status, latencyMs, ageMs });
    return undefined;
  }
  const failure = {
    error: attempt.error,
    ...(attempt.status === undefined ? {} : { status: attempt.status }),
    message: attempt.message,
  };
  if (message.attempts >= copy.retry.maxAttempts) {
    return {
      error: attempt.error,
      ...(attempt.status === undefined ? {} : { status: attempt.status }),
      cause: `${attempt.message} (attempt ${message.attempts} of ${copy.retry.maxAttempts})`,
    };
  }
  const delaySeconds = retryDelaySeconds(copy.retry, message.attempts, attempt.retryAfter);
  message.retry({ delaySeconds });
  ctx.sink({
    ...base,
    kind: "retrying",
    ...failure,
    attempt: message.attempts,
    delaySeconds,
    latencyMs: attempt.latencyMs,
  });
  return undefined;
}

/** Runs `work` over `items`, at most `limit` at a time; one that throws is logged, never fatal. */
async function eachAtMost<T>(limit: number, items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      try {
        await work(item);
      } catch (err) {
        console.error(JSON.stringify({ msg: "edge-mirror.redelivery_crashed", error: errorMessage(err) }));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

function bodySize(body: SpooledBody): number {
  return body.kind === "inline" ? body.bytes.byteLength : body.kind === "none" ? 0 : body.size;
}

/** One attempt to deliver `copy`: its body from the message or R2, a marker signed now, its mirror's timeout. */
async function send(copy: SpooledCopy, context: RedeliveryContext): Promise<Attempt> {
  const headers = new Headers(copy.headers);
  const url = new URL(copy.url);
  const key = await context.signingKey().catch(() => undefined);
  const seconds = Math.floor(Date.now() / 1000);
  headers.set(
    MIRROR_MARKER,
    key
      ? await signMarker(
          key,
          { ...copyAddress(copy.method, url), route: copy.route, bodyDigest: copy.bodyDigest },
          seconds,
        )
      : copy.route,
  );
  const stopPipe = new AbortController();
  let body: BodyInit | null = null;
  if (copy.body.kind === "inline") body = copy.body.bytes;
  else if (copy.body.kind === "dropped") return { kind: "lost", message: "its body was deleted when it died" };
  else if (copy.body.kind === "r2") {
    let object: R2ObjectBody | null;
    try {
      object = await context.spool.getBody(copy.body.key);
    } catch (err) {
      return { kind: "failed", error: "network", message: `R2: ${errorMessage(err)}`, latencyMs: 0 };
    }
    if (!object) return { kind: "lost", message: `its body ${copy.body.key} is gone from R2` };
    // Streamed with its length declared, never held whole.
    const { readable, writable } = new FixedLengthStream(object.size);
    object.body.pipeTo(writable, { signal: stopPipe.signal }).catch(() => {});
    body = readable;
  }
  const started = Date.now();
  try {
    const response = await fetch(copy.url, {
      method: copy.method,
      headers,
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(copy.timeoutMs),
    });
    const latencyMs = Date.now() - started;
    const retryAfter = response.headers.get("retry-after");
    await discardAnswer(response);
    if (isRetryableStatus(response.status)) {
      return {
        kind: "failed",
        error: "status",
        status: response.status,
        message: `answered ${response.status}`,
        retryAfter,
        latencyMs,
      };
    }
    return { kind: "answered", status: response.status, latencyMs };
  } catch (err) {
    return {
      kind: "failed",
      error: classifyMirrorError(err),
      message: errorMessage(err),
      latencyMs: Date.now() - started,
    };
  } finally {
    stopPipe.abort();
  }
}

/**
 * Sends the batch's dead copies to the dead-letter queue in one go; once it took them, each is
 * acknowledged, counted `dead` and its R2 body deleted (the copy keeps a body that travelled in
 * its message). If the dead-letter queue refuses, they wait and come back: they are not dead yet.
 */
async function buryDead(dead: readonly Dead[], context: RedeliveryContext, log: (line: string) => void): Promise<void> {
  if (dead.length === 0) return;
  const at = Date.now();
  const letters = dead.map(({ message, copy, cause }) => ({
    ...copy,
    body: copy.body.kind === "r2" ? ({ kind: "dropped", size: copy.body.size } as const) : copy.body,
    dead: { at, attempts: message.attempts, cause },
  }));
  try {
    await context.spool.deadLetter(letters);
  } catch (err) {
    log(JSON.stringify({ msg: "edge-mirror.dead_letter_failed", copies: dead.length, error: errorMessage(err) }));
    for (const { message } of dead) message.retry({ delaySeconds: REQUEUE_DELAY_SECONDS });
    return;
  }
  await Promise.all(
    dead.map(async ({ message, copy, error, status, cause }) => {
      message.ack();
      if (copy.body.kind === "r2") await context.spool.deleteBody(copy.body.key);
      context.sink({
        route: copy.route,
        mirror: copy.mirror,
        requestId: copy.requestId,
        kind: "dead",
        error,
        ...(status === undefined ? {} : { status }),
        message: cause,
        attempts: message.attempts,
        ageMs: Math.max(0, at - copy.firstSeen),
      });
    }),
  );
}

/**
 * Dead copies read back from the dead-letter queue go to the spool again, from their first attempt
 * (`redriven`); a copy whose body was deleted when it died cannot be sent, and is dropped, logged.
 */
async function redriveDead(
  dead: ReadonlyArray<{ message: Message; copy: SpooledCopy }>,
  context: RedeliveryContext,
  log: (line: string) => void,
): Promise<void> {
  const sendable = dead.filter(({ message, copy }) => {
    if (copy.body.kind !== "dropped") return true;
    log(
      JSON.stringify({
        msg: "edge-mirror.redrive_impossible",
        route: copy.route,
        mirror: copy.mirror,
        requestId: copy.requestId,
        error: `its body of ${copy.body.size} bytes was deleted when it died`,
      }),
    );
    message.ack();
    return false;
  });
  if (sendable.length === 0) return;
  const again = sendable.map(({ copy }) => {
    const { dead: _, ...alive } = copy;
    return { ...alive, redriven: (copy.redriven ?? 0) + 1 };
  });
  try {
    await context.spool.respool(again);
  } catch (err) {
    log(JSON.stringify({ msg: "edge-mirror.redrive_failed", copies: sendable.length, error: errorMessage(err) }));
    for (const { message } of sendable) message.retry({ delaySeconds: REQUEUE_DELAY_SECONDS });
    return;
  }
  const now = Date.now();
  for (const { message, copy } of sendable) {
    message.ack();
    context.sink({
      route: copy.route,
      mirror: copy.mirror,
      requestId: copy.requestId,
      kind: "redriven",
      ageMs: Math.max(0, now - copy.firstSeen),
    });
  }
}

/**
 * Benchmark entry: the real worker, with its KV binding and the spool's bindings (its queue and
 * bucket) wrapped once per isolate, and its queue consumer wrapped per batch, so that the
 * benchmark can report KV reads per request, policy loads, and what spooling costs in the units
 * Queues and R2 bill (GET /__bench/kv-reads). Nothing else differs.
 */

import app from "../../src/index.js";
import { messageBytes, type SpooledCopy } from "../../src/spool/index.js";

export { MirrorStatsShard } from "../../src/index.js";

let reads = 0;

/**
 * Queues bill an operation per 64 KB of a message written, read (each delivery) and deleted
 * (acknowledged); R2 bills puts (class A) and gets (class B), deletes are free.
 */
const spool = {
  /** `send` and `sendBatch` calls: subrequests. */
  sendCalls: 0,
  messages: 0,
  writeOps: 0,
  deliveries: 0,
  readOps: 0,
  acks: 0,
  deleteOps: 0,
  retries: 0,
  r2Puts: 0,
  r2Gets: 0,
  r2Deletes: 0,
};

/** The env the worker sees: made once per env the runtime passes, as the deployed worker's is. */
let wrapped: { from: Env; env: Env } | undefined;

function countingKv(kv: KVNamespace): KVNamespace {
  return new Proxy(kv, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (prop === "get" || prop === "list" || prop === "getWithMetadata") reads++;
        return value.apply(target, args);
      };
    },
  });
}

/** 64 KB units of a spooled copy's message, as Queues bills them. */
function units(body: unknown): number {
  const copy = body as SpooledCopy;
  const size = messageBytes(copy, copy?.body?.kind === "inline" ? copy.body.bytes.byteLength : 0);
  return Math.max(1, Math.ceil(size / (64 * 1024)));
}

function countingQueue(queue: Queue): Queue {
  return {
    metrics: () => queue.metrics(),
    send(body, options) {
      spool.sendCalls++;
      spool.messages++;
      spool.writeOps += units(body);
      return queue.send(body, options);
    },
    sendBatch(messages, options) {
      const list = [...messages];
      spool.sendCalls++;
      spool.messages += list.length;
      for (const m of list) spool.writeOps += units(m.body);
      return queue.sendBatch(list, options);
    },
  };
}

function countingBucket(bucket: R2Bucket): R2Bucket {
  return new Proxy(bucket, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (prop === "put") spool.r2Puts++;
        if (prop === "get") spool.r2Gets++;
        if (prop === "delete") spool.r2Deletes++;
        return value.apply(target, args);
      };
    },
  });
}

function envOf(env: Env): Env {
  if (wrapped?.from !== env) {
    wrapped = {
      from: env,
      env: {
        ...env,
        MIRROR_CONFIG: countingKv(env.MIRROR_CONFIG),
        ...(env.MIRROR_SPOOL ? { MIRROR_SPOOL: countingQueue(env.MIRROR_SPOOL) } : {}),
        ...(env.MIRROR_DEAD_LETTERS ? { MIRROR_DEAD_LETTERS: countingQueue(env.MIRROR_DEAD_LETTERS) } : {}),
        ...(env.MIRROR_SPOOL_BODIES ? { MIRROR_SPOOL_BODIES: countingBucket(env.MIRROR_SPOOL_BODIES) } : {}),
      },
    };
  }
  return wrapped.env;
}

/** A batch whose messages count their deliveries, acknowledgements and retries. */
function countingBatch(batch: MessageBatch): MessageBatch {
  const messages = batch.messages.map((m): Message => {
    spool.deliveries++;
    spool.readOps += units(m.body);
    return {
      id: m.id,
      timestamp: m.timestamp,
      body: m.body,
      attempts: m.attempts,
      ack() {
        spool.acks++;
        spool.deleteOps += units(m.body);
        m.ack();
      },
      retry(options) {
        spool.retries++;
        m.retry(options);
      },
    };
  });
  return {
    queue: batch.queue,
    metadata: batch.metadata,
    messages,
    ackAll: () => batch.ackAll(),
    retryAll: (options) => batch.retryAll(options),
  };
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    // A new env object per request, or a URL parsed twice, would be cost the deployed worker has not.
    const counted = envOf(env);
    if (request.url.endsWith("/__bench/kv-reads"))
      return Response.json({ reads, loads: app.isolate(counted).policies.loads, spool });
    return app.fetch(request, counted, ctx);
  },
  queue(batch: MessageBatch, env: Env, ctx: ExecutionContext) {
    return app.queue(countingBatch(batch), envOf(env), ctx);
  },
} satisfies ExportedHandler<Env>;

/**
 * @module capture/r2
 * The I/O of capture: a batch's object gzipped (NDJSON, one record a line) and written to the
 * R2 bucket bound as `MIRROR_CAPTURES`, under a key of its own (capture/keys). One `put` per
 * object, so one Class A operation per route per batch per isolate. The objects are stored as
 * `application/gzip` without a `Content-Encoding`, so every client (the binding, wrangler, the S3
 * API) hands back the gzipped bytes as written.
 */
import type { Hold } from "../body/budget.js";
import { copyBytes } from "../body/bytes.js";
import { toHex } from "../hex/index.js";
import type { BatchObject, WriteObject } from "./batch.js";
import { objectKey } from "./keys.js";

const utf8 = new TextEncoder();
const NEWLINE = utf8.encode("\n");

/**
 * `lines` as gzipped NDJSON. Each line is encoded and compressed on its own, so that only one
 * line's bytes exist beside the compressed output, which is taken from `hold` as it comes.
 */
export async function gzipLines(lines: readonly string[], hold?: Hold): Promise<Uint8Array> {
  const gzip = new CompressionStream("gzip");
  const writer = gzip.writable.getWriter();
  const writing = (async () => {
    for (const line of lines) {
      await writer.write(utf8.encode(line));
      await writer.write(NEWLINE);
    }
    await writer.close();
  })();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = gzip.readable.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (hold && !hold.take(value.byteLength)) {
        throw new Error(hold.refusal(`a gzipped batch at ${size + value.byteLength} bytes`));
      }
      chunks.push(value);
      size += value.byteLength;
    }
  } catch (err) {
    await reader.cancel(err).catch(() => {});
    await writing.catch(() => {});
    throw err;
  }
  await writing;
  return copyBytes(chunks, size);
}

/** What capture needs of an R2 bucket binding. */
export interface CaptureBucketWriter {
  put(
    key: string,
    value: Uint8Array,
    options: { httpMetadata: { contentType: string }; customMetadata: Record<string, string> },
  ): Promise<unknown>;
}

/** A random id per isolate (per writer), so that two isolates never write the same key. */
function isolateId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return toHex(bytes);
}

/** The batch writer of capture/batch, on `bucket`. */
export function r2Writer(bucket: CaptureBucketWriter): WriteObject {
  const isolate = isolateId();
  let seq = 0;
  return async (object: BatchObject, hold: Hold) => {
    const key = objectKey({
      route: object.route,
      firstStart: object.firstStart,
      lastStart: object.lastStart,
      isolate,
      seq: seq++,
    });
    const body = await gzipLines(object.lines, hold);
    await bucket.put(key, body, {
      httpMetadata: { contentType: "application/gzip" },
      customMetadata: { route: object.route, records: String(object.lines.length) },
    });
  };
}

/**
 * @module capture/lines
 * Reads NDJSON, gzipped or not, line by line with line numbers: the export reads its R2 objects
 * with it, and the replayer its files. A line that is not UTF-8 or is too long is reported with
 * its number and skipped; input that ends early (a gzip stream cut short) ends with a report of
 * where, after every whole line before it. Nothing here throws on bad input.
 */
import { joinBytes } from "../body/bytes.js";

export type Line = { line: number; text: string } | { line: number; error: string };

/** Longer lines are reported and skipped: a record with two 1 MiB bodies in base64 is under 3 MiB. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/**
 * The stream as it is, or gunzipped when it starts with gzip's magic bytes: capture objects and
 * `.ndjson.gz` files alike, whatever their name or metadata says.
 */
export async function gunzipped(stream: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
  const reader = stream.getReader();
  const first = await reader.read();
  const gzip = !first.done && first.value[0] === 0x1f && first.value[1] === 0x8b;
  if (!gzip) {
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (first.done) controller.close();
        else controller.enqueue(first.value);
      },
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    });
  }
  const gunzip = new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>;
  const writer = gunzip.writable.getWriter();
  // Fed by hand rather than piped: a truncated object fails the decompressor's close, and that
  // error reaches the reader through the readable side; every rejection on the writing side is
  // handled here (a pipe leaves one uncaught in workerd). A reader that stops early ends the feed.
  writer.closed.catch(() => {});
  void (async () => {
    try {
      await writer.write(first.value);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await writer.write(value);
      }
      await writer.close();
    } catch (err) {
      await writer.abort(err).catch(() => {});
      await reader.cancel(err).catch(() => {});
    }
  })();
  return gunzip.readable;
}

/** Every line of `stream` (`\n` or `\r\n` ends one); empty lines are skipped, their numbers counted. */
export async function* ndjsonLines(
  stream: ReadableStream<Uint8Array>,
  maxLineBytes = MAX_LINE_BYTES,
): AsyncGenerator<Line> {
  const reader = stream.getReader();
  let parts: Uint8Array[] = [];
  let size = 0;
  let number = 1;
  let tooLong = false;
  const finish = (bytes: Uint8Array): Line | undefined => {
    const at = number++;
    if (tooLong) return { line: at, error: `longer than ${maxLineBytes} bytes` };
    let end = bytes.byteLength;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    if (end === 0) return undefined;
    try {
      return { line: at, text: strictUtf8.decode(bytes.subarray(0, end)) };
    } catch {
      return { line: at, error: "not UTF-8" };
    }
  };
  const take = (chunk: Uint8Array) => {
    if (tooLong) return;
    if (size + chunk.byteLength > maxLineBytes) {
      tooLong = true;
      parts = [];
      size = 0;
      return;
    }
    parts.push(chunk);
    size += chunk.byteLength;
  };
  try {
    for (;;) {
      let read: Awaited<ReturnType<typeof reader.read>>;
      try {
        read = await reader.read();
      } catch (err) {
        const detail = String((err as Error)?.message ?? err).slice(0, 200);
        yield size > 0 || tooLong
          ? { line: number, error: `the input ends inside this line (${detail})` }
          : { line: number, error: `the input ends early, after line ${number - 1} (${detail})` };
        return;
      }
      if (read.done) break;
      const chunk = read.value;
      let from = 0;
      for (let at = chunk.indexOf(0x0a); at !== -1; at = chunk.indexOf(0x0a, from)) {
        take(chunk.subarray(from, at));
        const line = finish(joinBytes(parts, size));
        parts = [];
        size = 0;
        tooLong = false;
        if (line) yield line;
        from = at + 1;
      }
      if (from < chunk.byteLength) take(chunk.subarray(from));
    }
    if (size > 0 || tooLong) {
      const line = finish(joinBytes(parts, size));
      if (line) yield line;
    }
  } finally {
    reader.releaseLock();
  }
}

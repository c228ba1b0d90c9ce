/**
 * @module scripts/replay/input
 * Reads what the replayer replays: a HAR (edge-mirror's export, or a browser's) or NDJSON records
 * (gzipped or not), into captured records in start order. An NDJSON line that is not a record —
 * not UTF-8, not JSON, truncated, a field wrong — is reported with its line number and skipped; a
 * HAR entry likewise with its index. Only a file that cannot be read at all (missing, or a HAR
 * that is not JSON) is an error.
 */
import { createReadStream, readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { recordFromHar } from "../../src/capture/har.js";
import { gunzipped, ndjsonLines } from "../../src/capture/lines.js";
import { type CaptureRecord, parseRecord } from "../../src/capture/record.js";

export interface Entry {
  /** Where it came from: `line 12` or `entry 12` (1-based). */
  at: string;
  record: CaptureRecord;
}

export interface Invalid {
  at: string;
  error: string;
}

export interface Input {
  format: "har" | "ndjson";
  entries: Entry[];
  invalid: Invalid[];
}

export class InputError extends Error {}

/** `.har` and `.json` are HAR; anything else (`.ndjson`, `.jsonl`, `.ndjson.gz`) NDJSON. */
export function inputFormat(path: string): "har" | "ndjson" {
  return /\.(har|json)$/i.test(path) ? "har" : "ndjson";
}

function byStart(entries: Entry[]): Entry[] {
  // Stable: requests that started in the same millisecond keep the file's order.
  return entries
    .map((entry, i) => ({ entry, i }))
    .sort((a, b) => a.entry.record.startedAt - b.entry.record.startedAt || a.i - b.i)
    .map(({ entry }) => entry);
}

export async function readInput(path: string): Promise<Input> {
  const format = inputFormat(path);
  return format === "har" ? readHar(path) : readNdjson(path);
}

function readHar(path: string): Input {
  let document: unknown;
  try {
    document = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InputError(`${path} is not a HAR file: ${(err as Error).message}`);
  }
  const entries = (document as { log?: { entries?: unknown } })?.log?.entries;
  if (!Array.isArray(entries)) throw new InputError(`${path} is not a HAR file: it has no log.entries`);
  const read: Entry[] = [];
  const invalid: Invalid[] = [];
  entries.forEach((entry, i) => {
    const at = `entry ${i + 1}`;
    const parsed = recordFromHar(entry);
    if (parsed.ok) read.push({ at, record: parsed.record });
    else invalid.push({ at, error: parsed.error });
  });
  return { format: "har", entries: byStart(read), invalid };
}

async function readNdjson(path: string): Promise<Input> {
  let stream: ReadableStream<Uint8Array>;
  try {
    const file = createReadStream(path);
    await new Promise((resolve, reject) => file.once("open", resolve).once("error", reject));
    stream = Readable.toWeb(file) as unknown as ReadableStream<Uint8Array>;
  } catch (err) {
    throw new InputError(`cannot read ${path}: ${(err as Error).message}`);
  }
  const entries: Entry[] = [];
  const invalid: Invalid[] = [];
  for await (const line of ndjsonLines(await gunzipped(stream))) {
    const at = `line ${line.line}`;
    if ("error" in line) {
      invalid.push({ at, error: line.error });
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(line.text);
    } catch (err) {
      invalid.push({ at, error: `not JSON (${(err as Error).message})` });
      continue;
    }
    const parsed = parseRecord(value);
    if (parsed.ok) entries.push({ at, record: parsed.record });
    else invalid.push({ at, error: parsed.error });
  }
  return { format: "ndjson", entries: byStart(entries), invalid };
}

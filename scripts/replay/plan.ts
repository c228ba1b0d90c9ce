/**
 * @module scripts/replay/plan
 * Pure: what the replayer sends and when. Each captured request becomes the request it was —
 * method, path and query byte for byte, its body's bytes, its headers in their order — minus what
 * a connection owns (Host, Content-Length, hop-by-hop fields), edge-mirror's own loop fields and
 * the headers whose values capture redacted, with `--header` changes applied last. A request whose
 * body capture could not keep whole (cut at `maxBodyBytes`, or not kept) is not replayed: it would
 * not be the request that was sent. The schedule keeps the recorded gaps between starts, divided
 * by the speed.
 */

import type { CaptureRecord } from "../../src/capture/record.js";
import { bodyBytes } from "../../src/capture/text.js";
import { rawPathAndQuery } from "../../src/url/index.js";

export type Speed = number | "max";

/** `1`, `2`, `10`, `0.5`, `max`; undefined for anything else. */
export function parseSpeed(value: string): Speed | undefined {
  if (value === "max") return "max";
  const n = Number(value);
  return Number.isFinite(n) && n > 0 && value.trim() !== "" ? n : undefined;
}

/**
 * When each request is due, in ms after the first: the recorded gaps divided by `speed`. `starts`
 * must be in order. Undefined for `max`: every request is due at once, as concurrency allows.
 */
export function plannedOffsets(starts: readonly number[], speed: Speed): number[] | undefined {
  if (speed === "max") return undefined;
  const first = starts[0] ?? 0;
  return starts.map((start) => (start - first) / speed);
}

/** One `--header 'name: value'` (an empty value removes the header). */
export interface HeaderChange {
  name: string;
  value: string | undefined;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `name: value` → a change, or why it is not one. */
export function parseHeaderChange(text: string): HeaderChange | string {
  const colon = text.indexOf(":");
  if (colon <= 0) return `--header "${text}": write it as 'name: value' (an empty value removes the header)`;
  const name = text.slice(0, colon).trim().toLowerCase();
  const value = text.slice(colon + 1).trim();
  if (!TOKEN.test(name)) return `--header "${text}": "${name}" is not a header name`;
  if (/[\r\n\0]/.test(value)) return `--header "${name}": the value must not contain CR, LF or NUL`;
  if (CONNECTION_OWNED.has(name)) return `--header "${name}": set by the connection, not by the replay`;
  return { name, value: value === "" ? undefined : value };
}

/** Fields the connection owns: the replayer's HTTP client writes them for the target. */
const CONNECTION_OWNED = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
  "expect",
]);

/** edge-mirror's own loop protection: a replay through an edge-mirror must count as a client's request. */
const EDGE_MIRROR_OWN = new Set(["x-edge-mirror", "x-edge-mirror-hops"]);

export interface OutgoingRequest {
  method: string;
  /** Path and query as the client sent them. */
  path: string;
  /** In order; duplicates kept. */
  headers: Array<[string, string]>;
  body: Uint8Array | null;
}

export type Prepared = { ok: true; request: OutgoingRequest } | { ok: false; skip: string };

/** Why a request cannot be sent as it was (its body cut or not kept), or undefined. */
export function unsendable(record: CaptureRecord): string | undefined {
  const body = record.request.body;
  if (!body) return undefined;
  if (body.omitted !== undefined) return "body not kept";
  if (body.truncated) return "body cut at maxBodyBytes";
  return undefined;
}

export function outgoing(record: CaptureRecord, changes: readonly HeaderChange[]): Prepared {
  const problem = unsendable(record);
  if (problem) return { ok: false, skip: problem };
  const redacted = new Set(record.request.redacted.headers);
  const changed = new Set(changes.map((c) => c.name));
  const headers: Array<[string, string]> = [];
  for (const [name, value] of record.request.headers) {
    if (CONNECTION_OWNED.has(name) || EDGE_MIRROR_OWN.has(name) || redacted.has(name) || changed.has(name)) continue;
    headers.push([name, value]);
  }
  for (const change of changes) if (change.value !== undefined) headers.push([change.name, change.value]);
  const body = record.request.body;
  return {
    ok: true,
    request: {
      method: record.request.method,
      path: rawPathAndQuery(record.request.url),
      headers,
      body: body?.text !== undefined ? bodyBytes(body.encoding ?? "utf8", body.text) : null,
    },
  };
}

/**
 * @module store/published
 * The published policies (docs/storage-schema.md): every route and cluster text in one KV value,
 * the snapshot, and a small value that names its version, the marker. An isolate reads the marker
 * on each refresh and the snapshot only when the marker moved, so that a refresh costs one key
 * read whatever the number of policies. Encoding and decoding are pure; hashing uses WebCrypto,
 * which the worker and Node share, so that the CLI and the worker compute the same versions.
 */

import { toHex } from "../hex/index.js";
import { parsePolicyKey } from "./keys.js";

/** The snapshot's layout; a reader that finds another treats the snapshot as unreadable. */
export const SNAPSHOT_FORMAT = 1;
/** Workers KV holds at most 25 MiB in one value. */
export const MAX_SNAPSHOT_BYTES = 25 * 1024 * 1024;

/** One stored policy: its key, the SHA-256 of its text, and the text. */
export interface PublishedEntry {
  key: string;
  hash: string;
  text: string;
}

/** The snapshot: every policy text, in key order, and the version they make. */
export interface PublishedPolicies {
  version: string;
  /** When it was published, ISO 8601; for people reading KV. */
  publishedAt: string;
  entries: PublishedEntry[];
}

/** The marker: the version of the snapshot last published. */
export interface PolicyMarker {
  version: string;
  publishedAt: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
const encoder = new TextEncoder();

export async function sha256Hex(text: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** Every text with its hash, in key order. */
export async function hashEntries(texts: ReadonlyMap<string, string>): Promise<PublishedEntry[]> {
  const keys = [...texts.keys()].sort(byKey);
  return Promise.all(
    keys.map(async (key) => {
      const text = texts.get(key) as string;
      return { key, hash: await sha256Hex(text), text };
    }),
  );
}

function byKey(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The version of a set of policies: the SHA-256 of their keys and hashes in key order. Equal
 * texts make equal versions wherever they are computed, so that a snapshot an isolate read in
 * full and the one the CLI published are known to be the same.
 */
export function policyVersion(entries: ReadonlyArray<Pick<PublishedEntry, "key" | "hash">>): Promise<string> {
  const pairs = entries.map(({ key, hash }) => [key, hash] as const).sort((a, b) => byKey(a[0], b[0]));
  return sha256Hex(JSON.stringify(pairs));
}

export async function publishedPolicies(entries: PublishedEntry[], now: number): Promise<PublishedPolicies> {
  const sorted = [...entries].sort((a, b) => byKey(a.key, b.key));
  return { version: await policyVersion(sorted), publishedAt: new Date(now).toISOString(), entries: sorted };
}

/** The texts of a snapshot, by key. */
export function textsOf(published: PublishedPolicies): Map<string, string> {
  return new Map(published.entries.map(({ key, text }) => [key, text]));
}

/** Entries as arrays, `[key, hash, text]`: a thousand routes' keys are not repeated as field names. */
export function encodeSnapshot(published: PublishedPolicies): string {
  return JSON.stringify({
    format: SNAPSHOT_FORMAT,
    version: published.version,
    publishedAt: published.publishedAt,
    entries: published.entries.map(({ key, hash, text }) => [key, hash, text]),
  });
}

/**
 * The snapshot in `text`, or undefined when there is none or it is not one this version wrote:
 * not JSON, another format, a key that is not a policy's, a key twice, a malformed hash. A
 * snapshot is all or nothing: a reader never serves part of one.
 */
export function decodeSnapshot(text: string | null): PublishedPolicies | undefined {
  if (text === null) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { format, version, publishedAt, entries } = value as Record<string, unknown>;
  if (format !== SNAPSHOT_FORMAT || typeof version !== "string" || !HEX64.test(version)) return undefined;
  if (typeof publishedAt !== "string" || !Array.isArray(entries)) return undefined;
  const seen = new Set<string>();
  const decoded: PublishedEntry[] = [];
  for (const entry of entries) {
    if (!Array.isArray(entry) || entry.length !== 3) return undefined;
    const [key, hash, body] = entry as unknown[];
    if (typeof key !== "string" || typeof hash !== "string" || typeof body !== "string") return undefined;
    if (!parsePolicyKey(key) || !HEX64.test(hash) || seen.has(key)) return undefined;
    seen.add(key);
    decoded.push({ key, hash, text: body });
  }
  return { version, publishedAt, entries: decoded };
}

export function encodeMarker(marker: PolicyMarker): string {
  return JSON.stringify({ version: marker.version, publishedAt: marker.publishedAt });
}

/** The marker in `text`, or undefined when there is none or it is malformed. */
export function decodeMarker(text: string | null): PolicyMarker | undefined {
  if (text === null) return undefined;
  try {
    const { version, publishedAt } = JSON.parse(text) as Partial<PolicyMarker>;
    if (typeof version !== "string" || !HEX64.test(version)) return undefined;
    return { version, publishedAt: typeof publishedAt === "string" ? publishedAt : "" };
  } catch {
    return undefined;
  }
}

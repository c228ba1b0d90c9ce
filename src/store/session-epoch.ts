/**
 * @module store/session-epoch
 * The dashboard's session epoch in KV (`admin:session-epoch`, docs/storage-schema.md): every
 * session cookie names the epoch it was issued in, and signing out replaces the epoch, which
 * ends every session at once. A random value rather than a counter: replacing it needs no
 * read-modify-write, and a deleted key revokes every session instead of reviving old ones.
 */

import { toHex } from "../hex/index.js";
import { SESSION_EPOCH_KEY } from "./keys.js";

export interface SessionEpoch {
  /** 32 lowercase hex digits. */
  epoch: string;
  /** When it was issued, ISO 8601; for people reading KV. */
  since: string;
}

const EPOCH = /^[0-9a-f]{32}$/;

/** A new epoch, 128 random bits. */
export function newSessionEpoch(now: number): SessionEpoch {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return {
    epoch: toHex(bytes),
    since: new Date(now).toISOString(),
  };
}

/** The stored epoch; undefined when there is none or it is malformed (then no session is valid). */
export async function readSessionEpoch(kv: KVNamespace): Promise<string | undefined> {
  const text = await kv.get(SESSION_EPOCH_KEY, "text");
  if (text === null) return undefined;
  try {
    const { epoch } = JSON.parse(text) as Partial<SessionEpoch>;
    return typeof epoch === "string" && EPOCH.test(epoch) ? epoch : undefined;
  } catch {
    return undefined;
  }
}

export async function writeSessionEpoch(kv: KVNamespace, value: SessionEpoch): Promise<void> {
  await kv.put(SESSION_EPOCH_KEY, JSON.stringify(value));
}

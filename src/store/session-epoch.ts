/**
 * @module store/session-epoch
 * The dashboard's session epoch in KV (`admin:session-epoch`, docs/storage-schema.md): every
 * session cookie names the epoch it was issued in, and signing out replaces the epoch, which
 * ends every session at once. 128 random bits as 32 lowercase hex digits under `epoch`. A random
 * value rather than a counter: replacing it needs no read-modify-write, and a deleted (or
 * malformed) value revokes every session instead of reviving old ones.
 */
import { SESSION_EPOCH_KEY } from "./keys.js";
import { KvRandomValue } from "./random-value.js";

export const sessionEpoch = new KvRandomValue(SESSION_EPOCH_KEY, "epoch", 16);

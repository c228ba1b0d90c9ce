/**
 * @module store/deployment-key
 * The deployment's own secret in KV (`internal:deployment-key`, docs/storage-schema.md), for a
 * deployment without `MIRROR_MARKER_KEY`: the first isolate that finds none creates it, and every
 * isolate of the deployment then signs its copies' markers and keys its sticky sampling with it
 * (src/secret). 256 random bits as 64 lowercase hex digits under `key`; no counter and no
 * read-modify-write, so two isolates that create it at once simply end with the one KV kept. A
 * stored value that is missing or malformed reads as none, and a new one replaces it.
 */
import { DEPLOYMENT_KEY_KEY } from "./keys.js";
import { KvRandomValue } from "./random-value.js";

export const deploymentKey = new KvRandomValue(DEPLOYMENT_KEY_KEY, "key", 32);

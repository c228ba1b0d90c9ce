/**
 * @module store/deployment-key
 * The deployment's own secret in KV (`internal:deployment-key`, docs/storage-schema.md), for a
 * deployment without `MIRROR_MARKER_KEY`: the first isolate that finds none creates it, and every
 * isolate of the deployment then signs its copies' markers and keys its sticky sampling with it
 * (src/secret). 256 random bits; no counter and no read-modify-write, so two isolates that create
 * it at once simply end with the one KV kept.
 */

import { toHex } from "../hex/index.js";
import { DEPLOYMENT_KEY_KEY } from "./keys.js";

export interface DeploymentKey {
  /** 64 lowercase hex digits: 256 random bits. */
  key: string;
  /** When it was created, ISO 8601; for people reading KV. */
  since: string;
}

const KEY = /^[0-9a-f]{64}$/;

/** A new key, 256 random bits. */
export function newDeploymentKey(now: number): DeploymentKey {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return {
    key: toHex(bytes),
    since: new Date(now).toISOString(),
  };
}

/**
 * The stored key; undefined when there is none or it is malformed (a new one then replaces it).
 * Rejects when KV cannot be read.
 */
export async function readDeploymentKey(kv: KVNamespace): Promise<string | undefined> {
  const text = await kv.get(DEPLOYMENT_KEY_KEY, "text");
  if (text === null) return undefined;
  try {
    const { key } = JSON.parse(text) as Partial<DeploymentKey>;
    return typeof key === "string" && KEY.test(key) ? key : undefined;
  } catch {
    return undefined;
  }
}

export async function writeDeploymentKey(kv: KVNamespace, value: DeploymentKey): Promise<void> {
  await kv.put(DEPLOYMENT_KEY_KEY, JSON.stringify(value));
}

/**
 * @module store/random-value
 * A random value kept in one KV key as `{ "<field>": "<hex>", "since": "<ISO 8601>" }`
 * (docs/storage-schema.md): the deployment's own key (store/deployment-key) and the dashboard's
 * session epoch (store/session-epoch). Random rather than a counter: replacing it needs no
 * read-modify-write, so two isolates that write it at once simply end with the one KV kept.
 * `since` is for people reading KV. I/O: one KV read or write per call.
 */
import { toHex } from "../hex/index.js";

export class KvRandomValue {
  private readonly shape: RegExp;

  /**
   * @param key the KV key
   * @param field the JSON field that holds the value
   * @param bytes how many random bytes a value has (twice as many lowercase hex digits)
   */
  constructor(
    private readonly key: string,
    private readonly field: string,
    private readonly bytes: number,
  ) {
    this.shape = new RegExp(`^[0-9a-f]{${2 * bytes}}$`);
  }

  /** A new value: fresh random bytes as lowercase hex. */
  create(): string {
    return toHex(crypto.getRandomValues(new Uint8Array(this.bytes)));
  }

  /**
   * The stored value; undefined when there is none or it is malformed (the caller decides what
   * that means). Rejects when KV cannot be read.
   */
  async read(kv: KVNamespace): Promise<string | undefined> {
    const text = await kv.get(this.key, "text");
    if (text === null) return undefined;
    try {
      const value = (JSON.parse(text) as Record<string, unknown> | null)?.[this.field];
      return typeof value === "string" && this.shape.test(value) ? value : undefined;
    } catch {
      return undefined;
    }
  }

  /** Stores `value`, created at `now` (epoch milliseconds). */
  async write(kv: KVNamespace, value: string, now: number): Promise<void> {
    await kv.put(this.key, JSON.stringify({ [this.field]: value, since: new Date(now).toISOString() }));
  }
}

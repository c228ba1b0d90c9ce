/**
 * @module secret
 * The deployment's secret, and the two keys derived from it: the HMAC key that signs and checks
 * the copies' markers (headers/marker) and the SipHash key of sticky sampling (mirror/plan).
 *
 * The secret is `MIRROR_MARKER_KEY` when it is set (at least 32 characters): deployments that
 * mirror to each other share it, and each then recognises the others' copies. Without it, the
 * deployment keeps a secret of its own in KV (`internal:deployment-key`, store/deployment-key):
 * the first isolate that finds none creates it, and every isolate reads it once and keeps it, so
 * a copy that comes back through the zone is recognised by whichever isolate it reaches.
 *
 * Isolates that raced to create it converge: each re-reads it every `DEPLOYMENT_KEY_REREAD_MS`
 * and takes what KV kept, and still accepts markers under the keys it had before. It is loaded
 * with the policy snapshot on an isolate's first request (src/app.ts), never on the hot path; a
 * re-read runs in `waitUntil`. Until a secret is known — KV unreadable on the first request —
 * copies carry their route id unsigned, no marker is trusted, and sticky mirrors sample at random.
 *
 * Both keys come out of HKDF-SHA-256 with their own `info`, so the secret itself keys nothing,
 * and a sticky bucket tells nothing about the marker key.
 */
import { type SipKey, sipKey } from "../siphash/index.js";
import { deploymentKey } from "../store/deployment-key.js";

/** HKDF `info` of the marker's HMAC key. */
export const MARKER_KEY_INFO = "edge-mirror copy marker v2";
/** HKDF `info` of the sticky-sampling SipHash key. */
export const STICKY_KEY_INFO = "edge-mirror sticky sampling v1";
/** How often an isolate re-reads the KV key, so that isolates that created one at once converge. */
export const DEPLOYMENT_KEY_REREAD_MS = 60_000;
/** How soon a failed read is tried again (at the next policy refresh after it). */
export const DEPLOYMENT_KEY_RETRY_MS = 5_000;
/** Keys an isolate replaced that it still accepts markers under. */
const KEPT_KEYS = 3;

const encoder = new TextEncoder();

export interface DerivedKeys {
  marker: CryptoKey;
  sticky: SipKey;
}

/** The marker's HMAC key and the sticky-sampling key of `secret`. */
export async function deriveKeys(secret: string): Promise<DerivedKeys> {
  const material = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, [
    "deriveKey",
    "deriveBits",
  ]);
  const hkdf = (info: string) => ({
    name: "HKDF",
    hash: "SHA-256",
    salt: new Uint8Array(0),
    info: encoder.encode(info),
  });
  const [marker, sticky] = await Promise.all([
    crypto.subtle.deriveKey(hkdf(MARKER_KEY_INFO), material, { name: "HMAC", hash: "SHA-256", length: 256 }, false, [
      "sign",
      "verify",
    ]),
    crypto.subtle.deriveBits(hkdf(STICKY_KEY_INFO), material, 128),
  ]);
  return { marker, sticky: sipKey(new Uint8Array(sticky)) };
}

export interface SecretOptions {
  now?: () => number;
  log?: (line: string) => void;
}

/** One per isolate (src/isolate). */
export class DeploymentSecret {
  private current: DerivedKeys | undefined;
  /** The secret behind `current`, to tell whether a re-read found another one. */
  private currentSecret: string | undefined;
  /** Keys replaced by a re-read, newest first: markers made under them still verify. */
  private replaced: DerivedKeys[] = [];
  private loading: Promise<void> | undefined;
  private nextReadAt = 0;

  /** `configured`: a valid `MIRROR_MARKER_KEY`, or undefined to keep the secret in KV. */
  constructor(
    private readonly configured: string | undefined,
    private readonly options: SecretOptions = {},
  ) {}

  /** The sticky-sampling key, once known: read synchronously on the request path. */
  get stickyKey(): SipKey | undefined {
    return this.current?.sticky;
  }

  /**
   * Loads the secret when this isolate has none yet, and re-reads the KV key when it is due. The
   * promise, when there is one, settles once this isolate knows a secret or could not learn one;
   * it never rejects. Nothing to wait for (undefined) once a secret is known: a re-read then runs
   * inside `waitUntil`.
   */
  load(kv: KVNamespace, waitUntil: (promise: Promise<unknown>) => void): Promise<void> | undefined {
    if (this.loading) return this.current ? undefined : this.loading;
    const now = this.now();
    if (now < this.nextReadAt) return undefined;
    const run = this.read(kv, now, waitUntil).finally(() => {
      this.loading = undefined;
    });
    this.loading = run;
    if (!this.current) return run;
    waitUntil(run);
    return undefined;
  }

  /** The key that signs this isolate's markers; undefined while no secret is known. */
  async signingKey(): Promise<CryptoKey | undefined> {
    if (!this.current && this.loading) await this.loading;
    return this.current?.marker;
  }

  /** Every key a marker arriving here may be signed with: the current one first. */
  async verifyingKeys(): Promise<CryptoKey[]> {
    if (!this.current && this.loading) await this.loading;
    if (!this.current) return [];
    return [this.current, ...this.replaced].map((keys) => keys.marker);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private write(fields: Record<string, unknown>): void {
    (this.options.log ?? console.error)(JSON.stringify(fields));
  }

  private async read(kv: KVNamespace, now: number, waitUntil: (promise: Promise<unknown>) => void): Promise<void> {
    try {
      if (this.configured !== undefined) {
        // A secret of the environment cannot change within an isolate: derived once, never re-read.
        this.adopt(this.configured, await deriveKeys(this.configured));
        this.nextReadAt = Number.POSITIVE_INFINITY;
        return;
      }
      const stored = await deploymentKey.read(kv);
      if (stored !== undefined) {
        if (stored !== this.currentSecret) this.adopt(stored, await deriveKeys(stored));
      } else if (!this.current) {
        // The first isolate of the deployment (or one that raced it): create the key and use it at
        // once; the write needs no waiting, and a re-read converges on whichever write KV kept.
        const created = deploymentKey.create();
        this.adopt(created, await deriveKeys(created));
        waitUntil(
          deploymentKey
            .write(kv, created, now)
            .catch((err: unknown) => this.write({ msg: "edge-mirror.deployment_key_unwritable", error: String(err) })),
        );
      }
      // A key that has gone from KV (deleted, or not yet visible here) is kept until another appears.
      this.nextReadAt = now + DEPLOYMENT_KEY_REREAD_MS;
    } catch (err) {
      this.write({ msg: "edge-mirror.deployment_key_unavailable", error: String(err) });
      this.nextReadAt = now + DEPLOYMENT_KEY_RETRY_MS;
    }
  }

  private adopt(secret: string, keys: DerivedKeys): void {
    if (this.current) this.replaced = [this.current, ...this.replaced].slice(0, KEPT_KEYS);
    this.current = keys;
    this.currentSecret = secret;
  }
}

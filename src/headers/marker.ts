/**
 * @module headers/marker
 * The mirror marker every copy carries: `x-edge-mirror: <route id>;t=<unix seconds>;sig=<hex>`,
 * the signature an HMAC-SHA-256 under the `MIRROR_MARKER_KEY` secret. A deployment that
 * receives a copy whose marker it can verify (same key) serves it but never mirrors it again,
 * which keeps two deployments that mirror to each other from ping-ponging. A marker that does
 * not verify — a client's, an old one, one from a deployment with another key — counts for
 * nothing, so no client can switch an audit mirror off by sending the header. Without a key,
 * copies carry the route id unsigned, for the receiving origin's information only.
 */

/** How far a marker's time may be from ours: copies arrive within `waitUntil`'s 30 s. */
export const MARKER_MAX_AGE_S = 300;

const encoder = new TextEncoder();

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function signedText(route: string, seconds: number): Uint8Array {
  return encoder.encode(`edge-mirror-marker\n${route}\n${seconds}`);
}

export interface MarkerSigner {
  /** The marker value for a copy of a request matched by `route` (at once when unsigned or cached). */
  mark(route: string, nowMs: number): string | Promise<string>;
  /** True only for a marker signed with this key within `MARKER_MAX_AGE_S`. */
  verify(value: string, nowMs: number): Promise<boolean>;
}

const UNSIGNED: MarkerSigner = {
  mark: (route) => route,
  verify: async () => false,
};

/** Markers under `secret`; without one, unsigned markers that nothing trusts. */
export function markerSigner(secret: string | undefined): MarkerSigner {
  if (!secret) return UNSIGNED;
  const key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
  // One signature per route per second is enough: copies of one second share it.
  const recent = new Map<string, { seconds: number; value: string }>();
  const sign = async (route: string, seconds: number) => {
    const sig = hex(await crypto.subtle.sign("HMAC", await key, signedText(route, seconds)));
    const value = `${route};t=${seconds};sig=${sig}`;
    if (recent.size >= 1024) recent.clear();
    recent.set(route, { seconds, value });
    return value;
  };
  return {
    mark(route, nowMs) {
      const seconds = Math.floor(nowMs / 1000);
      const cached = recent.get(route);
      if (cached?.seconds === seconds) return cached.value;
      return sign(route, seconds);
    },
    async verify(value, nowMs) {
      const match = /^([A-Za-z0-9][A-Za-z0-9._-]{0,127});t=(\d{1,12});sig=([0-9a-f]{64})$/.exec(value);
      if (!match) return false;
      const seconds = Number(match[2]);
      if (Math.abs(nowMs / 1000 - seconds) > MARKER_MAX_AGE_S) return false;
      const sig = new Uint8Array((match[3] as string).match(/../g)?.map((h) => Number.parseInt(h, 16)) ?? []);
      return crypto.subtle.verify("HMAC", await key, sig, signedText(match[1] as string, seconds));
    },
  };
}

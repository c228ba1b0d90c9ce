// @ts-check
/**
 * @module store/keys
 * Every key edge-mirror keeps in the `MIRROR_CONFIG` namespace is named here, and nowhere else.
 * Plain JavaScript (typed by keys.d.ts) so that the Node tooling — the policy CLI and the test
 * and benchmark launchers — shares it without a TypeScript loader.
 */

/** The binding of the KV namespace these keys live in (wrangler.toml). */
export const KV_BINDING = "MIRROR_CONFIG";

/** @type {Record<import("./keys.js").PolicyKind, string>} */
const PREFIX = { route: "route:", cluster: "cluster:" };

/** @type {readonly import("./keys.js").PolicyKind[]} */
export const POLICY_KINDS = Object.freeze(["route", "cluster"]);

/** Not a policy: no policy prefix lists it, so neither the worker's loader nor the CLI sees it. */
export const SESSION_EPOCH_KEY = "admin:session-epoch";

/**
 * Not a policy either: the deployment's own secret, created by the worker on first use when no
 * `MIRROR_MARKER_KEY` is set (src/store/deployment-key.ts). No policy prefix lists it, and a
 * `PolicyStore` refuses to write or delete it.
 */
export const DEPLOYMENT_KEY_KEY = "internal:deployment-key";

/**
 * Not policies: every route and cluster text in one value (the published snapshot), and the small
 * marker that names its version. The admin API, the CLI and the worker's scheduled reconcile write
 * them (src/store/publish.ts); an isolate reads the marker on each refresh and the snapshot only
 * when the marker moved (docs/storage-schema.md). No policy prefix lists them, and a
 * `PolicyStore` writes them only through its own two methods.
 */
export const POLICY_SNAPSHOT_KEY = "internal:policy-snapshot";
export const POLICY_MARKER_KEY = "internal:policy-marker";

/**
 * The field of a policy key's KV metadata that holds the SHA-256 of its text, written with every
 * value the CLI and the admin API store: a reconcile lists the keys with their metadata and reads
 * only those whose hash it does not know. A value written otherwise (`wrangler kv key put`, the
 * dashboard) has none, and is read.
 */
export const POLICY_HASH_FIELD = "sha256";

/**
 * The metadata stored with a policy text whose SHA-256 is `hash` (64 lowercase hex digits).
 * @param {string} hash
 * @returns {{ sha256: string }}
 */
export function policyMetadata(hash) {
  return { [POLICY_HASH_FIELD]: hash };
}

/**
 * The hash a key's metadata holds, or undefined when it holds none (or something else).
 * @param {unknown} metadata
 * @returns {string | undefined}
 */
export function metadataHash(metadata) {
  if (typeof metadata !== "object" || metadata === null) return undefined;
  const hash = /** @type {Record<string, unknown>} */ (metadata)[POLICY_HASH_FIELD];
  return typeof hash === "string" && /^[0-9a-f]{64}$/.test(hash) ? hash : undefined;
}

/**
 * @param {import("./keys.js").PolicyKind} kind
 * @returns {string}
 */
export function policyPrefix(kind) {
  return PREFIX[kind];
}

/**
 * @param {import("./keys.js").PolicyKind} kind
 * @param {string} name
 * @returns {string}
 */
export function policyKey(kind, name) {
  return PREFIX[kind] + name;
}

/** @param {string} id */
export const routeKey = (id) => policyKey("route", id);

/** @param {string} name */
export const clusterKey = (name) => policyKey("cluster", name);

/**
 * The kind and name behind a policy key; undefined for any other key.
 * @param {string} key
 * @returns {{ kind: import("./keys.js").PolicyKind, name: string } | undefined}
 */
export function parsePolicyKey(key) {
  for (const kind of POLICY_KINDS) {
    if (key.startsWith(PREFIX[kind])) return { kind, name: key.slice(PREFIX[kind].length) };
  }
  return undefined;
}

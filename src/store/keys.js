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

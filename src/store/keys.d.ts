/** Types of keys.js (plain JavaScript so that Node scripts import it as is). */
export type PolicyKind = "route" | "cluster";

export declare const KV_BINDING: "MIRROR_CONFIG";
export declare const POLICY_KINDS: readonly PolicyKind[];
export declare const SESSION_EPOCH_KEY: "admin:session-epoch";
export declare const DEPLOYMENT_KEY_KEY: "internal:deployment-key";
export declare const POLICY_SNAPSHOT_KEY: "internal:policy-snapshot";
export declare const POLICY_MARKER_KEY: "internal:policy-marker";
export declare const POLICY_HASH_FIELD: "sha256";
export declare function policyMetadata(hash: string): { sha256: string };
export declare function metadataHash(metadata: unknown): string | undefined;
export declare function policyPrefix(kind: PolicyKind): string;
export declare function policyKey(kind: PolicyKind, name: string): string;
export declare function routeKey(id: string): string;
export declare function clusterKey(name: string): string;
export declare function parsePolicyKey(key: string): { kind: PolicyKind; name: string } | undefined;

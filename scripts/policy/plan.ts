/**
 * @module scripts/policy/plan
 * Pure: what `apply` would change in KV, and a readable field-by-field diff of each change.
 */

import { differingPaths, valueAt } from "../../src/compare/json.js";
import { parseCluster, parseRoute } from "../../src/policy/index.js";
import { parsePolicyKey } from "../../src/store/keys.js";

export type ChangeKind = "create" | "update" | "delete" | "unchanged";

export interface Change {
  key: string;
  kind: ChangeKind;
  before?: string;
  after?: string;
}

/** Two stored values are the same policy when they parse to the same model (defaults filled in). */
export function samePolicy(key: string, a: string, b: string): boolean {
  try {
    const parse = parsePolicyKey(key)?.kind === "route" ? parseRoute : parseCluster;
    return JSON.stringify(parse(JSON.parse(a))) === JSON.stringify(parse(JSON.parse(b)));
  } catch {
    return a === b;
  }
}

export function planChanges(
  desired: ReadonlyMap<string, string>,
  stored: ReadonlyMap<string, string>,
  prune: boolean,
): Change[] {
  const changes: Change[] = [];
  for (const [key, after] of desired) {
    const before = stored.get(key);
    if (before === undefined) changes.push({ key, kind: "create", after });
    else if (samePolicy(key, before, after)) changes.push({ key, kind: "unchanged", before, after });
    else changes.push({ key, kind: "update", before, after });
  }
  if (prune) {
    for (const [key, before] of stored) if (!desired.has(key)) changes.push({ key, kind: "delete", before });
  }
  return changes.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Stored keys that no file mentions: what `--prune` would delete. */
export function storedOnly(desired: ReadonlyMap<string, string>, stored: ReadonlyMap<string, string>): string[] {
  return [...stored.keys()].filter((key) => !desired.has(key)).sort();
}

/** Clusters before routes: no reader ever sees a route naming a cluster that is not written yet. */
export function writeOrder(keys: readonly string[]): string[] {
  const rank = (key: string) => (parsePolicyKey(key)?.kind === "cluster" ? 0 : 1);
  return [...keys].sort((a, b) => rank(a) - rank(b));
}

/** Routes before clusters: no reader ever sees a route naming a cluster that is already gone. */
export function deleteOrder(keys: readonly string[]): string[] {
  return writeOrder(keys).reverse();
}

export interface FieldChange {
  path: string;
  before: unknown;
  after: unknown;
}

/** Field-level differences between two stored documents, as `mirrors[0].percent: 10 → 20`. */
export function fieldChanges(before: unknown, after: unknown): FieldChange[] {
  return differingPaths(before, after).map((path) => ({
    path: path === "$" ? "(value)" : path.replace(/^\$\.?/, ""),
    before: valueAt(before, path),
    after: valueAt(after, path),
  }));
}

export function summarize(changes: readonly Change[]): Record<ChangeKind, number> {
  const counts: Record<ChangeKind, number> = { create: 0, update: 0, delete: 0, unchanged: 0 };
  for (const c of changes) counts[c.kind]++;
  return counts;
}

/**
 * @module scripts/policy/plan
 * Pure: what `apply` would change in KV, and a readable field-by-field diff of each change.
 */
import { parseCluster, parseRoute } from "../../src/policy/index.js";

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
    const parse = key.startsWith("route:") ? parseRoute : parseCluster;
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

export interface FieldChange {
  path: string;
  before: unknown;
  after: unknown;
}

/** Leaf-level differences between two JSON values, by path (`mirrors[0].percent`). */
export function fieldChanges(before: unknown, after: unknown, path = ""): FieldChange[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const bothArrays = Array.isArray(before) && Array.isArray(after);
  const bothObjects = isObject(before) && isObject(after);
  if (!bothArrays && !bothObjects) return [{ path: path || "(value)", before, after }];
  const keys = bothArrays
    ? Array.from({ length: Math.max((before as unknown[]).length, (after as unknown[]).length) }, (_, i) => i)
    : [...new Set([...Object.keys(before as object), ...Object.keys(after as object)])].sort();
  return keys.flatMap((k) => {
    const sub = typeof k === "number" ? `${path}[${k}]` : path ? `${path}.${k}` : k;
    return fieldChanges(
      (before as Record<string | number, unknown>)[k],
      (after as Record<string | number, unknown>)[k],
      sub,
    );
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function summarize(changes: readonly Change[]): Record<ChangeKind, number> {
  const counts: Record<ChangeKind, number> = { create: 0, update: 0, delete: 0, unchanged: 0 };
  for (const c of changes) counts[c.kind]++;
  return counts;
}

/**
 * @module scripts/policy/files
 * Reads policy files (JSON or YAML holding `{ clusters, routes }`) and validates them with the
 * one schema plus the cross-document checks. Every problem names the file, the JSON path and
 * the rule; nothing is written anywhere here.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { crossCheck, type LocatedRoute } from "../../src/policy/cross-check.js";
import { PolicyValidationError, parsePolicyFile } from "../../src/policy/index.js";
import { clusterKey, routeKey } from "../../src/store/keys.js";

export interface Problem {
  file: string;
  path: string;
  message: string;
}

export interface LoadedPolicies {
  /** KV key → the value to store: the document as written (minus `$schema`), compact JSON. */
  entries: Map<string, string>;
  routes: number;
  clusters: number;
  errors: Problem[];
  warnings: Problem[];
}

function parseText(file: string, text: string): unknown {
  if (/\.ya?ml$/i.test(file)) return parseYaml(text, { prettyErrors: true });
  return JSON.parse(text);
}

export function loadPolicyFiles(files: readonly string[]): LoadedPolicies {
  const result: LoadedPolicies = { entries: new Map(), routes: 0, clusters: 0, errors: [], warnings: [] };
  const located: LocatedRoute[] = [];
  const clusterOrigins = new Map<string, { origin: string; file: string }>();
  for (const file of files) {
    let raw: unknown;
    try {
      raw = parseText(file, readFileSync(file, "utf8"));
    } catch (err) {
      const message = (err as Error).message.split("\n")[0] ?? String(err);
      result.errors.push({
        file,
        path: "",
        message: `cannot be read as ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${message}`,
      });
      continue;
    }
    let policy: ReturnType<typeof parsePolicyFile>;
    try {
      policy = parsePolicyFile(raw);
    } catch (err) {
      if (!(err instanceof PolicyValidationError)) throw err;
      for (const issue of err.issues) result.errors.push({ file, ...issue });
      continue;
    }
    const doc = raw as { clusters?: Record<string, unknown>; routes?: unknown[] };
    for (const [name, cluster] of Object.entries(policy.clusters)) {
      const seen = clusterOrigins.get(name);
      if (seen && seen.origin !== cluster.origin) {
        result.errors.push({
          file,
          path: `clusters.${name}`,
          message: `cluster "${name}" is also defined in ${seen.file} with origin ${seen.origin}`,
        });
        continue;
      }
      clusterOrigins.set(name, { origin: cluster.origin, file });
      result.entries.set(clusterKey(name), JSON.stringify(doc.clusters?.[name]));
    }
    policy.routes.forEach((route, i) => {
      located.push({ route, at: `${file}: routes[${i}]` });
      result.entries.set(routeKey(route.id), JSON.stringify(doc.routes?.[i]));
    });
  }
  const checks = crossCheck(located, new Set(clusterOrigins.keys()));
  result.errors.push(...checks.errors.map(splitLocation));
  result.warnings.push(...checks.warnings.map(splitLocation));
  result.routes = located.length;
  result.clusters = clusterOrigins.size;
  return result;
}

/** `a.json: routes[1].x` → `{ file: "a.json", path: "routes[1].x" }`. */
function splitLocation(issue: { path: string; message: string }): Problem {
  const at = issue.path.indexOf(": ");
  return at === -1
    ? { file: "", path: issue.path, message: issue.message }
    : { file: issue.path.slice(0, at), path: issue.path.slice(at + 2), message: issue.message };
}

export function formatProblem(problem: Problem): string {
  const where = [problem.file, problem.path].filter(Boolean).join(": ");
  return where ? `${where}: ${problem.message}` : problem.message;
}

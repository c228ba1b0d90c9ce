/**
 * @module store/parse
 * Pure: what stored policy texts mean. Every reader — the worker's snapshot, the admin API, the
 * CLI — parses through here, so that a value is valid or invalid for the same reason everywhere.
 */
import {
  type Cluster,
  PolicyValidationError,
  parseCluster,
  parseRoute,
  parseRouteFields,
  type Route,
} from "../policy/index.js";
import { parsePolicyKey } from "./keys.js";

export interface InvalidEntry {
  key: string;
  error: string;
}

export interface StoredPolicies {
  /** By route id. */
  routes: Map<string, Route>;
  /** By cluster name. */
  clusters: Map<string, Cluster>;
  /** Values that broke a rule, each with its key and the rule; the rest still count. */
  invalid: InvalidEntry[];
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PolicyValidationError([{ path: "", message: `is not valid JSON (${(err as Error).message})` }]);
  }
}

export interface ParseOptions {
  /**
   * False leaves compiling the routes' patterns to the caller, which must then check them with
   * `compileRoutePatterns` (the worker's route table does, under its snapshot's budget): the one
   * costly check, done once instead of twice. Default true.
   */
  compilePatterns?: boolean;
}

/** One stored route; its `id` must equal the key's suffix. */
export function parseStoredRoute(id: string, text: string, options: ParseOptions = {}): Route {
  const route = (options.compilePatterns === false ? parseRouteFields : parseRoute)(parseJson(text));
  if (route.id !== id) {
    throw new PolicyValidationError([{ path: "id", message: `must equal the key suffix "${id}"` }]);
  }
  return route;
}

export function parseStoredPolicies(texts: ReadonlyMap<string, string>, options: ParseOptions = {}): StoredPolicies {
  const stored: StoredPolicies = { routes: new Map(), clusters: new Map(), invalid: [] };
  for (const [key, text] of texts) {
    const parsed = parsePolicyKey(key);
    if (!parsed) continue;
    try {
      if (parsed.kind === "route") stored.routes.set(parsed.name, parseStoredRoute(parsed.name, text, options));
      else stored.clusters.set(parsed.name, parseCluster(parseJson(text)));
    } catch (err) {
      stored.invalid.push({ key, error: (err as Error).message });
    }
  }
  return stored;
}

/** The stored document as written, for showing; a value that is not JSON is shown as `{ invalid: text }`. */
export function storedDocument(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { invalid: text };
  }
}

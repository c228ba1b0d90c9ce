import type { TestProject } from "vitest/node";
import { buildWorker } from "../../scripts/lib/build.mjs";

/**
 * The bundle each run of the tests has built, by the run (its Vitest instance). The end-to-end
 * and fault projects both name this setup, and each project loads it as a module of its own: the
 * map is kept on the process's global object so that a run of both builds once.
 */
const BUILDS = Symbol.for("edge-mirror.test-builds");
const shared = globalThis as { [BUILDS]?: WeakMap<object, string> };
shared[BUILDS] ??= new WeakMap();
const builds = shared[BUILDS];

/** Bundles the worker once, as `wrangler deploy` would, for every end-to-end and fault test file. */
export default function setup(project: TestProject) {
  let script = builds.get(project.vitest);
  if (script === undefined) {
    script = buildWorker();
    builds.set(project.vitest, script);
  }
  project.provide("workerScript", script);
}

declare module "vitest" {
  export interface ProvidedContext {
    workerScript: string;
  }
}

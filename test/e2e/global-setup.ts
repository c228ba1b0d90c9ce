import type { TestProject } from "vitest/node";
import { buildWorker } from "../../scripts/lib/build.mjs";

/** Bundles the worker once, as `wrangler deploy` would, for every end-to-end test file. */
export default function setup(project: TestProject) {
  project.provide("workerScript", buildWorker());
}

declare module "vitest" {
  export interface ProvidedContext {
    workerScript: string;
  }
}

/**
 * @module scripts/lib/build
 * The project's root and the worker bundled as `wrangler deploy` would upload it: what the
 * end-to-end tests, the fault suite and the benchmarks run.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Bundles `src/index.ts` with wrangler (as `wrangler deploy` would) into `outdir`; returns the script path. */
export function buildWorker(outdir = join(ROOT, ".wrangler/e2e-build")) {
  execFileSync(
    process.execPath,
    [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--env", "", "--outdir", outdir],
    {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const script = join(outdir, "index.js");
  if (!existsSync(script)) throw new Error(`wrangler did not write ${script}`);
  return script;
}

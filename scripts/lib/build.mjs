/**
 * @module scripts/lib/build
 * The project's root and the worker bundled as `wrangler deploy` would upload it: what the
 * end-to-end tests, the fault suite and the benchmarks run.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** esbuild's account of the last build, beside the bundle: which modules the entry imports. */
const METAFILE = "bundle-meta.json";

/**
 * Bundles `src/index.ts` with wrangler (as `wrangler deploy` would) into `outdir`; returns the
 * entry's path. Files that wrangler.toml's module rules would import as text (none today) are
 * modules of their own beside it, as they are uploaded: `uploadedModules` lists them all.
 */
export function buildWorker(outdir = join(ROOT, ".wrangler/e2e-build")) {
  execFileSync(
    process.execPath,
    [
      join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
      "deploy",
      "--dry-run",
      "--env",
      "",
      "--outdir",
      outdir,
      "--metafile",
      join(outdir, METAFILE),
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const script = join(outdir, "index.js");
  if (!existsSync(script)) throw new Error(`wrangler did not write ${script}`);
  return script;
}

/**
 * The paths of every module `wrangler deploy` would upload for the bundle at `script` (from
 * `buildWorker`): the entry and the modules it imports beside it. Read from the build's metafile,
 * not the directory, which keeps the text modules of earlier builds (their names carry a hash).
 * @param {string} script
 * @returns {string[]}
 */
export function uploadedModules(script) {
  const outdir = dirname(script);
  /** @type {{ outputs: Record<string, { entryPoint?: string, imports: Array<{ path: string, external?: boolean }> }> }} */
  const meta = JSON.parse(readFileSync(join(outdir, METAFILE), "utf8"));
  const entry = Object.entries(meta.outputs).find(
    ([path, output]) => output.entryPoint && resolve(ROOT, path) === script,
  );
  if (!entry) throw new Error(`${METAFILE} in ${outdir} does not describe ${script}`);
  const beside = entry[1].imports.filter((i) => i.external && i.path.startsWith("./")).map((i) => join(outdir, i.path));
  return [script, ...beside];
}

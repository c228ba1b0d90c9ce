/**
 * @module scripts/lib/report
 * Writes a generated table into a Markdown document between `<!-- name:start -->` and
 * `<!-- name:end -->`, then formats the document as `npm run check` expects it (Biome pads
 * Markdown tables), so that a written report never fails the check that CI runs.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./build.mjs";

/**
 * @param {string} file the document, relative to the project root
 * @param {string} name the markers' name
 * @param {string} table what goes between them
 */
export function writeBetweenMarkers(file, name, table) {
  const path = join(ROOT, file);
  const doc = readFileSync(path, "utf8");
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const at = doc.indexOf(start);
  const until = doc.indexOf(end);
  if (at === -1 || until === -1) throw new Error(`${file} has no ${start} … ${end} markers`);
  writeFileSync(path, `${doc.slice(0, at + start.length)}\n${table}\n${doc.slice(until)}`);
  execFileSync(process.execPath, [join(ROOT, "node_modules/@biomejs/biome/bin/biome"), "format", "--write", path], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
}

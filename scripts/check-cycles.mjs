#!/usr/bin/env node
/**
 * `npm run check`'s import-cycle check: no two files of src/ import each other, however
 * indirectly, and neither do two of its folders (a folder is one concern: src/admin, src/match,
 * …; the files directly in src/ are the composition root, which imports every folder and which no
 * folder imports). madge reads the import graph; type-only imports count like any other, since a
 * folder that needs another's types depends on it. Tests count for the file check only: a test
 * sits beside its module but may build the whole worker.
 *
 * Exits 1, naming each cycle and an import behind every step of it, when there is one.
 */
import { join, relative } from "node:path";
import madge from "madge";
import { ROOT } from "./lib/build.mjs";

const SRC = join(ROOT, "src");

const graph = await madge(SRC, {
  fileExtensions: ["ts", "js"],
  // Count `import type` and `export type`: a type is a dependency too.
  detectiveOptions: { ts: { skipTypeImports: false }, es6: { skipTypeImports: false } },
});
/** @type {Record<string, string[]>} file → files it imports, relative to src/ */
const files = graph.obj();

const problems = [];

for (const cycle of graph.circular()) problems.push(`files: ${[...cycle, cycle[0]].join(" → ")}`);

/** @param {string} file */
const folderOf = (file) => (file.includes("/") ? file.slice(0, file.indexOf("/")) : "(root)");
const isTest = (/** @type {string} */ file) => file.endsWith(".test.ts");

/** @type {Map<string, Map<string, string>>} folder → folder it imports → one import that makes it so */
const folders = new Map();
for (const [file, imports] of Object.entries(files)) {
  if (isTest(file)) continue;
  const from = folderOf(file);
  if (!folders.has(from)) folders.set(from, new Map());
  for (const imported of imports) {
    const to = folderOf(imported);
    if (to !== from && !folders.get(from)?.has(to)) folders.get(from)?.set(to, `${file} → ${imported}`);
  }
}

// Tarjan's strongly connected components: every component of more than one folder holds a cycle.
let index = 0;
/** @type {Map<string, number>} */
const indexOf = new Map();
/** @type {Map<string, number>} */
const lowOf = new Map();
/** @type {string[]} */
const stack = [];
/** @type {Set<string>} */
const onStack = new Set();
/** @param {Map<string, number>} map @param {string} key */
const at = (map, key) => /** @type {number} */ (map.get(key));
/** @param {string} folder */
function visit(folder) {
  indexOf.set(folder, index);
  lowOf.set(folder, index);
  index++;
  stack.push(folder);
  onStack.add(folder);
  for (const next of folders.get(folder)?.keys() ?? []) {
    if (!indexOf.has(next)) {
      visit(next);
      lowOf.set(folder, Math.min(at(lowOf, folder), at(lowOf, next)));
    } else if (onStack.has(next)) {
      lowOf.set(folder, Math.min(at(lowOf, folder), at(indexOf, next)));
    }
  }
  if (lowOf.get(folder) !== indexOf.get(folder)) return;
  /** @type {string[]} */
  const component = [];
  /** @type {string | undefined} */
  let member;
  do {
    member = /** @type {string} */ (stack.pop());
    onStack.delete(member);
    component.push(member);
  } while (member !== folder);
  if (component.length < 2) return;
  // One cycle through each member of the component, each named once.
  const members = new Set(component);
  const seen = new Set();
  for (const start of component.sort()) {
    const cycle = shortestCycle(start, members);
    const key = [...cycle].sort().join(" ");
    if (seen.has(key)) continue;
    seen.add(key);
    problems.push(describe(cycle));
  }
}
for (const folder of folders.keys()) if (!indexOf.has(folder)) visit(folder);

/**
 * A shortest cycle from `start` back to it within `members` (breadth-first), as the folders on it.
 * @param {string} start
 * @param {Set<string>} members
 */
function shortestCycle(start, members) {
  /** @type {Map<string, string>} */
  const cameFrom = new Map([[start, ""]]);
  const queue = [start];
  /** @type {string | undefined} */
  let last;
  while (queue.length > 0 && last === undefined) {
    const folder = /** @type {string} */ (queue.shift());
    for (const next of folders.get(folder)?.keys() ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        last = folder;
        break;
      }
      if (!cameFrom.has(next)) {
        cameFrom.set(next, folder);
        queue.push(next);
      }
    }
  }
  const path = [start];
  for (let step = last; step !== undefined && step !== start; step = cameFrom.get(step)) path.splice(1, 0, step);
  return path;
}

/**
 * The cycle, each step shown with an import that makes it.
 * @param {string[]} path
 */
function describe(path) {
  const steps = path.map((folder, i) => {
    const to = /** @type {string} */ (path[(i + 1) % path.length]);
    return `    ${folder} → ${to}: ${folders.get(folder)?.get(to)}`;
  });
  return `folders: ${[...path, path[0]].join(" → ")}\n${steps.join("\n")}`;
}

if (problems.length > 0) {
  console.error(`Import cycles in ${relative(ROOT, SRC)}/:\n${problems.map((p) => `  ${p}`).join("\n")}`);
  process.exit(1);
}
console.log(`No import cycles: ${Object.keys(files).length} files in ${folders.size} folders of src/.`);

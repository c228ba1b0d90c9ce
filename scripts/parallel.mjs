#!/usr/bin/env node
/**
 * @module scripts/parallel
 * `node scripts/parallel.mjs <command>…`: runs independent commands (`npm run typecheck`'s
 * compiler runs, which share nothing and each keep one core busy) as many at once as there are
 * cores, in the order given, each through the shell as npm runs a script. A command's output is
 * held and printed whole when it ends, so that two never interleave. Exits 1 when any command
 * failed, naming each, after all have ended.
 */
import { spawn } from "node:child_process";
import { availableParallelism } from "node:os";

const commands = process.argv.slice(2);
if (commands.length === 0) {
  console.error("usage: node scripts/parallel.mjs <command>…");
  process.exit(2);
}

/** @type {string[]} */
const failed = [];
let next = 0;

/** Runs one command; resolves once it has ended and its output is printed. @param {string} command */
function run(command) {
  return new Promise((resolve) => {
    /** @type {Buffer[]} */
    const output = [];
    const child = spawn(command, { shell: true, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (chunk) => output.push(chunk));
    child.stderr.on("data", (chunk) => output.push(chunk));
    child.on("error", (err) => output.push(Buffer.from(`${err.message}\n`)));
    child.on("close", (code, signal) => {
      process.stdout.write(Buffer.concat(output));
      if (code !== 0) failed.push(`${command} (${signal ?? `exit ${code}`})`);
      resolve(undefined);
    });
  });
}

async function lane() {
  while (next < commands.length) await run(/** @type {string} */ (commands[next++]));
}

await Promise.all(Array.from({ length: Math.min(availableParallelism(), commands.length) }, lane));
if (failed.length > 0) {
  console.error(`failed:\n${failed.map((c) => `  ${c}`).join("\n")}`);
  process.exit(1);
}

#!/usr/bin/env -S node --import tsx
/** `npm run policy -- <command>`: see scripts/policy/cli.ts. */
import { main } from "./policy/cli.js";

process.exitCode = await main(process.argv.slice(2), {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
});

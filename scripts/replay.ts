#!/usr/bin/env -S node --import tsx
/** `npm run replay -- <file> --to <origin> …`: see scripts/replay/cli.ts. */
import { main } from "./replay/cli.js";

process.exitCode = await main(process.argv.slice(2), {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  progress: process.stderr,
});

#!/usr/bin/env -S node --import tsx
/** `npm run capture -- <command>`: see scripts/capture/cli.ts. */
import { main } from "./capture/cli.js";

process.exitCode = await main(process.argv.slice(2), {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  stdout: process.stdout,
  now: Date.now,
  env: process.env,
});

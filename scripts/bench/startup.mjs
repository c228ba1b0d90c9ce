#!/usr/bin/env node
/**
 * `npm run bench -- --mode startup`: what an isolate spends before it serves its first request —
 * evaluating the bundle's top level, which every new isolate pays once. The bundle is built as
 * `wrangler deploy` uploads it, and `wrangler check startup` profiles its startup in a local
 * workerd (V8's CPU profiler); the time is the profile's samples outside `(idle)`, the median of
 * `--runs` profiles. Cloudflare limits startup to 1 s of CPU; this machine's CPU is not theirs,
 * so the figure is for comparing bundles here, not a prediction.
 *
 *   npm run bench -- --mode startup [--runs 5] [--top 8]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../lib/build.mjs";
import { median } from "./setup.mjs";

const { values: args } = parseArgs({
  options: { runs: { type: "string", default: "5" }, top: { type: "string", default: "8" } },
});
const runs = Number(args.runs);
const dir = mkdtempSync(join(tmpdir(), "edge-mirror-startup-"));
const wrangler = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
/** @type {import("node:child_process").ExecFileSyncOptions} */
const quiet = { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] };

const bundle = join(dir, "worker.bundle");
execFileSync(process.execPath, [wrangler, "deploy", "--dry-run", "--env", "", "--outfile", bundle], quiet);

/**
 * @typedef {{ id: number, callFrame: { functionName: string, url: string }, children?: number[] }} ProfileNode
 * @typedef {{ nodes: ProfileNode[], samples: number[], timeDeltas: number[] }} Profile
 */

/**
 * CPU time the profile sampled outside `(idle)`, in ms, and the self time per function.
 * @param {Profile} profile
 */
function sampled(profile) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<string, number>} */
  const self = new Map();
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    const frame = nodes.get(id)?.callFrame;
    const delta = profile.timeDeltas[i] ?? 0;
    if (!frame || frame.functionName === "(idle)") return;
    busyUs += delta;
    const name = `${frame.functionName || "(top level)"} ${frame.url.split("/").pop() ?? ""}`.trim();
    self.set(name, (self.get(name) ?? 0) + delta);
  });
  return { busyMs: busyUs / 1000, self };
}

/** @type {number[]} */
const busy = [];
/** @type {Map<string, number>} */
const totals = new Map();
for (let run = 0; run < runs; run++) {
  const outfile = join(dir, `startup-${run}.cpuprofile`);
  execFileSync(process.execPath, [wrangler, "check", "startup", "--worker", bundle, "--outfile", outfile], quiet);
  const { busyMs, self } = sampled(JSON.parse(readFileSync(outfile, "utf8")));
  busy.push(busyMs);
  for (const [name, us] of self) totals.set(name, (totals.get(name) ?? 0) + us);
}
rmSync(dir, { recursive: true, force: true });

const top = [...totals]
  .sort((a, b) => b[1] - a[1])
  .slice(0, Number(args.top))
  .map(([name, us]) => `  ${(us / 1000 / runs).toFixed(2).padStart(7)} ms  ${name}`);
console.log(
  `startup CPU (sampled, outside idle): median ${median(busy).toFixed(1)} ms over ${runs} profiles (${busy.map((b) => b.toFixed(1)).join(", ")})\nself time per profile, most first:\n${top.join("\n")}`,
);

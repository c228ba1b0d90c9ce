#!/usr/bin/env node
/**
 * `npm run bench -- --mode regex`: CPU per match of edge-mirror's regex engine (`src/regex`) on 16 KB of
 * hostile input, for the worst patterns it accepts, against the target of 1 ms per match; and,
 * for comparison, JavaScript's backtracking RegExp on the same input, stopped after a budget.
 *
 * Runs in Node's V8, the JavaScript engine that workerd embeds, on the engine bundled by esbuild
 * exactly as the worker's bundle includes it. CPU is read with `process.cpuUsage()` over batches
 * of matches, after a warm-up; the median batch is reported. Bounded: well under a minute.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createContext, Script } from "node:vm";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const OUT_DIR = join(ROOT, ".wrangler/bench/regex");
const INPUT_LENGTH = 16 * 1024;
const TARGET_US = 1000;
/** JavaScript's RegExp is stopped after this long on one input: some would run for years. */
const JS_BUDGET_MS = 250;
/** Each sample runs matches until it has used at least this much CPU, so the clock's grain does not matter. */
const SAMPLE_US = 8_000;
const SAMPLES = 7;

mkdirSync(OUT_DIR, { recursive: true });
execFileSync(
  join(ROOT, "node_modules/.bin/esbuild"),
  [
    join(ROOT, "src/regex/index.ts"),
    join(ROOT, "src/regex/redos-corpus.ts"),
    "--bundle",
    "--format=esm",
    "--platform=neutral",
    `--outdir=${OUT_DIR}`,
    "--log-level=error",
  ],
  { cwd: ROOT },
);
/** @type {typeof import("../../src/regex/index.ts")} */
const engine = await import(pathToFileURL(join(OUT_DIR, "index.js")).href);
/** @type {typeof import("../../src/regex/redos-corpus.ts")} */
const corpus = await import(pathToFileURL(join(OUT_DIR, "redos-corpus.js")).href);

/** `unit` repeated to 16 KB, then `tail`: a near miss that the whole input has to be read for. */
const fill = (/** @type {string} */ unit, tail = "") =>
  unit.repeat(Math.ceil((INPUT_LENGTH - tail.length) / unit.length)).slice(0, INPUT_LENGTH - tail.length) + tail;
/** Twenty API resources: a long alternation of literals. */
const WORDS = [
  "users",
  "orders",
  "products",
  "customers",
  "invoices",
  "payments",
  "shipments",
  "returns",
  "accounts",
  "sessions",
  "reports",
  "metrics",
  "events",
  "alerts",
  "teams",
  "projects",
  "tickets",
  "comments",
  "uploads",
  "downloads",
];
// Code units above ASCII that each cut the alphabet: the slowest column lookup (a binary search).
const WIDE = Array.from({ length: 60 }, (_, i) => `\\u${(0x100 + 7 * i).toString(16).padStart(4, "0")}`);

/** @type {Array<{ pattern: string, input: string, label: string }>} */
const CASES = [
  ...corpus.REDOS_ACCEPTED.map((c) => ({
    pattern: c.pattern,
    input: c.input,
    label: `${JSON.stringify(c.input.slice(0, 6))}…${JSON.stringify(c.input.slice(-2))}`,
  })),
  { pattern: `(?:${WORDS.join("|")})+`, input: fill("usersorders", "!"), label: "words…!" },
  {
    pattern: `/api/(?:${WORDS.join("|")})(?:/[0-9]+)*/?`,
    input: `/api/users${fill("/12", "x")}`,
    label: "/api/users/12…x",
  },
  { pattern: "[a-z]{0,900}", input: fill("a"), label: "a…a" },
  { pattern: "(?:[a-z0-9-]{1,63}\\.){1,8}[a-z]{2,24}", input: fill("a.b.", "!"), label: "a.b.…!" },
  { pattern: "((((((a|b)*c?)*d?)*e?)*f?)*)*", input: fill("ab", "!"), label: "ab…!" },
  { pattern: "(?:.*x){16}.*", input: fill("x", "\n"), label: "x…\\n" },
  { pattern: ".*a.*b.*c.*d.*e.*f.*g.*h.*i", input: fill("abcdefgh"), label: "abcdefgh…" },
  { pattern: ".*a.{8}", input: fill("aab"), label: "aab…" },
  { pattern: ".*a.{9}", input: fill("aab"), label: "aab…" },
  { pattern: `[${WIDE.join("")}]*x`, input: fill("\u0100\u0107"), label: "\\u0100\\u0107…" },
];

/** The median of `samples` runs of `fn`, in µs of CPU per call. */
function cpuMicrosPerCall(/** @type {() => unknown} */ fn) {
  let calls = 1;
  for (;;) {
    const start = process.cpuUsage();
    for (let i = 0; i < calls; i++) fn();
    const used = process.cpuUsage(start);
    if (used.user + used.system >= SAMPLE_US / 4) break;
    calls *= 2;
  }
  calls = Math.max(1, calls * 4);
  const perCall = [];
  for (let s = 0; s < SAMPLES; s++) {
    const start = process.cpuUsage();
    for (let i = 0; i < calls; i++) fn();
    const used = process.cpuUsage(start);
    perCall.push((used.user + used.system) / calls);
  }
  return perCall.sort((a, b) => a - b)[Math.floor(SAMPLES / 2)] ?? Number.NaN;
}

const jsContext = createContext({});
const jsTest = new Script("re.test(input)");

/** JavaScript's own full match on `input`, or "> budget" when it was stopped. */
function javascriptMicros(/** @type {string} */ pattern, /** @type {string} */ input) {
  const re = new RegExp(`^(?:${pattern})$`);
  jsContext.re = re;
  jsContext.input = input;
  const start = process.cpuUsage();
  try {
    jsTest.runInContext(jsContext, { timeout: JS_BUDGET_MS });
  } catch {
    return `> ${JS_BUDGET_MS} ms (stopped)`;
  }
  const used = process.cpuUsage(start);
  // Finished quickly once: safe to measure properly, outside the watchdog.
  if (used.user + used.system < 20_000) return `${cpuMicrosPerCall(() => re.test(input)).toFixed(1)} µs`;
  return `${((used.user + used.system) / 1000).toFixed(1)} ms`;
}

/** @type {string[][]} */
const rows = [];
/** @type {string[]} */
const refused = [];
let worst = { micros: 0, pattern: "" };
for (const { pattern, input, label } of CASES) {
  const problem = engine.regexProblem(pattern);
  const shown = pattern.length > 44 ? `${pattern.slice(0, 41)}...` : pattern;
  if (problem !== undefined) {
    refused.push(`${pattern}: ${problem}`);
    continue;
  }
  const compileMicros = cpuMicrosPerCall(() => engine.compileRegex(pattern));
  const matcher = engine.compileRegex(pattern);
  const matches = matcher.test(input);
  const micros = cpuMicrosPerCall(() => matcher.test(input));
  if (micros > worst.micros) worst = { micros, pattern };
  rows.push([
    shown,
    `${label} (${input.length})`,
    String(matcher.stateCount),
    compileMicros.toFixed(0),
    `${micros.toFixed(1)} (${matches ? "match" : "no match"})`,
    javascriptMicros(pattern, input),
  ]);
}

const header = ["pattern", "input (code units)", "DFA states", "compile µs", "µs CPU per match", "JavaScript RegExp"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
const line = (/** @type {string[]} */ cells) =>
  `| ${cells.map((c, i) => String(c).padEnd(widths[i] ?? 0)).join(" | ")} |`;
console.log(
  `Node ${process.version} (V8 ${process.versions.v8}); CPU per match: median of ${SAMPLES} samples, after a warm-up\n`,
);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const row of rows) console.log(line(row));
for (const note of refused) console.log(`\nrefused at validation, not measured: ${note}`);
console.log(
  `\nworst accepted pattern: ${worst.micros.toFixed(1)} µs CPU per 16 KB match (${worst.pattern.slice(0, 44)}); ` +
    `target ${TARGET_US} µs: ${worst.micros < TARGET_US ? "met" : "not met"}`,
);

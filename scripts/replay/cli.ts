/**
 * @module scripts/replay/cli
 * `npm run replay -- <file.har | file.ndjson[.gz]> --to <origin> …`: sends captured requests to
 * any origin — at their recorded pace, faster, or as fast as `--concurrency` allows — and, with
 * `--compare`, compares each answer with the primary's recorded one through the compare engine
 * of live shadowing. Prints a summary, writes the full report with `--report`. Exit codes: 0; 1
 * when `--fail-on-diff-rate` or `--fail-on-status-rate` is crossed (or one is given and nothing
 * could be compared); 2 for usage errors and unreadable input. Lines that are not records are
 * reported and skipped; they never end the run. A progress bar on a terminal, nothing when not.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { MAX_COMPARE_BODY_BYTES } from "../../src/policy/index.js";
import { InputError, type Invalid, readInput } from "./input.js";
import {
  type HeaderChange,
  outgoing,
  parseHeaderChange,
  parseSpeed,
  plannedOffsets,
  type Speed,
  unsendable,
} from "./plan.js";
import { ReplayReport } from "./report.js";
import { dispatch, httpSender, scheduleSummary } from "./run.js";

const USAGE = `usage: npm run replay -- <file.har | file.ndjson[.gz]> --to <origin> [options]

  --to <origin>                where to send the requests (http or https, with a port if need be)
  --speed 1|2|10|max           1 keeps the recorded gaps between requests, 2 and 10 halve and
                               divide them by ten (any number > 0 works); max sends as fast as
                               --concurrency allows (default 1)
  --concurrency N              requests waiting for an answer at once, at most (default 10)
  --header 'name: value'       sets a header on every request (repeatable); 'name:' removes it.
                               Redacted headers are not sent unless set here (a test token, say)
  --compare                    compare each answer with the recorded one (status, headers, JSON
                               field by field, other bodies byte for byte)
  --ignore-path P              a JSON path the comparison ignores, such as $.generatedAt or
                               $.items[*].updatedAt (repeatable)
  --compare-header NAME        a response header compared besides content-type (repeatable)
  --report FILE                write the full report as JSON
  --fail-on-diff-rate R        exit 1 when more than R (0–1) of compared answers differ or fail
  --fail-on-status-rate R      exit 1 when more than R (0–1) of answers have another status class
                               than recorded (or failed)
  --timeout-ms MS              per request (default 30000)`;

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Where the progress bar goes, when it is a terminal. */
  progress?: { write: (text: string) => void; isTTY?: boolean } | undefined;
}

class UsageError extends Error {}

interface Options {
  input: string;
  to: string;
  speed: Speed;
  concurrency: number;
  headers: HeaderChange[];
  compare: boolean;
  ignorePaths: string[];
  compareHeaders: string[];
  report: string | undefined;
  failOnDiffRate: number | undefined;
  failOnStatusRate: number | undefined;
  timeoutMs: number;
}

const JSON_PATH = /^\$(\.([A-Za-z_$][\w$-]*|\*)|\[(\d+|\*|"([^"\\]|\\.)*")\])*$/;

function rate(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new UsageError(`${flag} must be a number from 0 to 1 (0.05 is 5 %)`);
  }
  return n;
}

function parse(argv: string[]): Options | "help" {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      to: { type: "string" },
      speed: { type: "string", default: "1" },
      concurrency: { type: "string", default: "10" },
      header: { type: "string", multiple: true, default: [] },
      compare: { type: "boolean", default: false },
      "ignore-path": { type: "string", multiple: true, default: [] },
      "compare-header": { type: "string", multiple: true, default: [] },
      report: { type: "string" },
      "fail-on-diff-rate": { type: "string" },
      "fail-on-status-rate": { type: "string" },
      "timeout-ms": { type: "string", default: "30000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? "give the file to replay" : "give one file to replay");
  }
  if (!values.to) throw new UsageError("--to <origin> is required: where to send the requests");
  let to: URL;
  try {
    to = new URL(values.to);
  } catch {
    throw new UsageError(`--to "${values.to}" is not an absolute URL such as http://127.0.0.1:8082`);
  }
  if (to.protocol !== "http:" && to.protocol !== "https:") throw new UsageError("--to must be http or https");
  if (to.pathname !== "/" || to.search || to.hash || to.username) {
    throw new UsageError("--to must be an origin only (scheme, host, port): requests keep their recorded paths");
  }
  const speed = parseSpeed(values.speed);
  if (speed === undefined) throw new UsageError(`--speed "${values.speed}": use a number > 0 (1, 2, 10) or max`);
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) {
    throw new UsageError("--concurrency must be an integer from 1 to 1000");
  }
  const timeoutMs = Number(values["timeout-ms"]);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new UsageError("--timeout-ms must be a positive integer");
  const headers = values.header.map((h) => {
    const change = parseHeaderChange(h);
    if (typeof change === "string") throw new UsageError(change);
    return change;
  });
  for (const path of values["ignore-path"]) {
    if (!JSON_PATH.test(path))
      throw new UsageError(`--ignore-path "${path}": use a JSON path such as $.meta.ts or $.items[*].id`);
  }
  const compareOnly = ["ignore-path", "compare-header", "fail-on-diff-rate"] as const;
  for (const flag of compareOnly) {
    const given = values[flag];
    if (!values.compare && (Array.isArray(given) ? given.length > 0 : given !== undefined)) {
      throw new UsageError(`--${flag} goes with --compare`);
    }
  }
  return {
    input: positionals[0] as string,
    to: to.origin,
    speed,
    concurrency,
    headers,
    compare: values.compare,
    ignorePaths: values["ignore-path"],
    compareHeaders: ["content-type", ...values["compare-header"].map((h) => h.toLowerCase())],
    report: values.report,
    failOnDiffRate: rate("--fail-on-diff-rate", values["fail-on-diff-rate"]),
    failOnStatusRate: rate("--fail-on-status-rate", values["fail-on-status-rate"]),
    timeoutMs,
  };
}

const percent = (r: number | null | undefined) =>
  r === null || r === undefined ? "—" : `${(100 * r).toFixed(r > 0 && r < 0.001 ? 3 : 1)} %`;

/** A progress bar redrawn at most every 100 ms, on a terminal only. */
function progressBar(io: Io, total: number) {
  const tty = io.progress?.isTTY ? io.progress : undefined;
  let drawnAt = 0;
  return {
    update(done: number, differ: number, force = false) {
      if (!tty) return;
      const now = Date.now();
      if (!force && now - drawnAt < 100) return;
      drawnAt = now;
      const width = 30;
      const filled = total === 0 ? width : Math.round((width * done) / total);
      tty.write(
        `\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total}${differ ? `  ${differ} differ` : ""}`,
      );
    },
    end() {
      if (tty) tty.write("\n");
    },
  };
}

export async function main(argv: string[], io: Io): Promise<number> {
  let options: Options | "help";
  try {
    options = parse(argv);
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === "help") {
    io.out(USAGE);
    return 0;
  }
  let input: Awaited<ReturnType<typeof readInput>>;
  try {
    input = await readInput(options.input);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    io.err(err.message);
    return 2;
  }
  for (const bad of input.invalid) io.err(`${options.input}: ${bad.at}: ${bad.error} (skipped)`);

  const report = new ReplayReport(
    options.compare ? { ignorePaths: options.ignorePaths, headers: options.compareHeaders } : undefined,
  );
  const skipped: Invalid[] = [];
  const sendable = input.entries.filter((entry) => {
    const problem = unsendable(entry.record);
    if (problem) skipped.push({ at: entry.at, error: problem });
    return problem === undefined;
  });
  for (const skip of skipped) io.err(`${options.input}: ${skip.at}: not replayed: ${skip.error}`);

  const client = httpSender({
    origin: options.to,
    concurrency: options.concurrency,
    timeoutMs: options.timeoutMs,
    readBodies: options.compare,
    maxBodyBytes: MAX_COMPARE_BODY_BYTES,
  });
  const bar = progressBar(io, sendable.length);
  let done = 0;
  const startedAt = new Date();
  const offsets = plannedOffsets(
    sendable.map((e) => e.record.startedAt),
    options.speed,
  );
  let run: Awaited<ReturnType<typeof dispatch>>;
  try {
    run = await dispatch({
      count: sendable.length,
      offsets,
      concurrency: options.concurrency,
      send: async (i) => {
        const entry = sendable[i] as (typeof sendable)[number];
        // Built when it is sent: a body is decoded only then, not every body of the file at once.
        const out = outgoing(entry.record, options.headers);
        if (!out.ok) throw new Error(`${entry.at}: ${out.skip}`);
        const answer = await client.send(out.request);
        const comparing = report.add(entry.at, entry.record, answer);
        if (comparing) await comparing;
        done++;
        bar.update(done, report.differing);
      },
    });
  } finally {
    await client.close();
  }
  bar.update(done, report.differing, true);
  bar.end();

  const result = report.result();
  const schedule = scheduleSummary(run.sent, options.speed);
  const diffRate = report.diffRate();
  const statusRate = report.statusRate();
  const thresholds = {
    failOnDiffRate: options.failOnDiffRate ?? null,
    failOnStatusRate: options.failOnStatusRate ?? null,
    crossed: [] as string[],
  };
  if (options.failOnDiffRate !== undefined) {
    if (diffRate === undefined) thresholds.crossed.push("--fail-on-diff-rate: nothing was compared");
    else if (diffRate > options.failOnDiffRate) {
      thresholds.crossed.push(`diff rate ${percent(diffRate)} > ${percent(options.failOnDiffRate)}`);
    }
  }
  if (options.failOnStatusRate !== undefined) {
    if (statusRate === undefined) thresholds.crossed.push("--fail-on-status-rate: no answer was recorded");
    else if (statusRate > options.failOnStatusRate) {
      thresholds.crossed.push(`status class changed for ${percent(statusRate)} > ${percent(options.failOnStatusRate)}`);
    }
  }
  const full = {
    version: 1,
    input: { file: options.input, format: input.format, entries: input.entries.length + input.invalid.length },
    target: options.to,
    speed: options.speed,
    concurrency: options.concurrency,
    // Header names only: values set here (tokens) stay out of the report.
    headersChanged: options.headers.map((h) => h.name),
    startedAt: startedAt.toISOString(),
    durationMs: Math.round(run.durationMs),
    requestsPerSecond: run.durationMs > 0 ? Math.round((1000 * result.sent) / run.durationMs) : null,
    invalid: input.invalid,
    skipped,
    schedule,
    ...result,
    thresholds,
  };
  if (options.report) writeFileSync(options.report, `${JSON.stringify(full, null, 2)}\n`);

  io.out(summaryText(full));
  if (options.report) io.out(`report: ${options.report}`);
  for (const crossed of thresholds.crossed) io.out(`FAIL ${crossed}`);
  return thresholds.crossed.length > 0 ? 1 : 0;
}

type Full = ReturnType<ReplayReport["result"]> & {
  input: { file: string };
  target: string;
  speed: Speed;
  concurrency: number;
  durationMs: number;
  requestsPerSecond: number | null;
  invalid: Invalid[];
  skipped: Invalid[];
};

function counts(record: Record<string, number>): string {
  const entries = Object.entries(record);
  return entries.length === 0 ? "none" : entries.map(([k, v]) => `${k} ${v}`).join(", ");
}

function summaryText(r: Full): string {
  const lines = [
    `replayed ${r.sent} request${r.sent === 1 ? "" : "s"} from ${r.input.file} to ${r.target} at speed ${r.speed} (concurrency ${r.concurrency}) in ${(r.durationMs / 1000).toFixed(2)} s${r.requestsPerSecond ? `, ${r.requestsPerSecond}/s` : ""}`,
  ];
  if (r.invalid.length > 0)
    lines.push(`  ${r.invalid.length} unreadable line${r.invalid.length === 1 ? "" : "s"} skipped`);
  if (r.skipped.length > 0) lines.push(`  ${r.skipped.length} not replayed (their bodies were not kept whole)`);
  if (r.failed > 0) lines.push(`  ${r.failed} failed: ${counts(r.errors)}`);
  lines.push(
    `  status classes: recorded ${counts(r.statusClasses.recorded)} · candidate ${counts(r.statusClasses.candidate)}`,
  );
  const lat = r.latencyMs;
  const fmt = (p: typeof lat.recorded) => (p ? `${p.p50}/${p.p90}/${p.p99}` : "—");
  lines.push(`  latency ms p50/p90/p99: recorded primary ${fmt(lat.recorded)} · candidate ${fmt(lat.candidate)}`);
  const c = r.compare;
  if (c) {
    lines.push(
      `  compared ${c.compared}: ${c.match} match, ${c.differ} differ, ${c.error} error — diff rate ${percent(c.diffRate)}${c.bodiesNotCompared ? ` (${c.bodiesNotCompared} bodies not compared: not kept whole)` : ""}`,
    );
    const width = Math.max(5, ...c.fields.map((f) => f.field.length));
    for (const f of c.fields.slice(0, 20)) {
      lines.push(`    ${f.field.padEnd(width)}  ${String(f.count).padStart(6)}  ${percent(f.rate)}`);
    }
    if (c.fields.length > 20) lines.push(`    … ${c.fields.length - 20} more fields in the report`);
  }
  return lines.join("\n");
}

/**
 * @module scripts/policy/verdict
 * `npm run policy -- verdict <route>`: asks a running worker for a mirror's release verdict
 * (`GET <prefix>/api/verdict`, src/verdict/report), prints it as a short table, and exits with
 * what a CI job acts on: 0 pass, 1 fail, 3 inconclusive; 2 when it cannot tell — a usage error,
 * no token, an unreachable worker, an error answer, or an answer that is not a verdict.
 */
import {
  type CheckResult,
  DEFAULT_WINDOW,
  type LatencyQuantiles,
  parseVerdictReport,
  parseWindow,
  ReportFormatError,
  STATUS_KEYS,
  type StatusCounts,
  type VerdictOutcome,
  type VerdictReport,
  verdictPath,
  WindowError,
} from "../../src/verdict/report.js";

export const EXIT: Record<VerdictOutcome, number> = { pass: 0, fail: 1, inconclusive: 3 };
export const EXIT_USAGE = 2;

/** `npm start`'s worker: wrangler dev on 127.0.0.1, at EDGE_MIRROR_PORT (8787). */
export function localWorkerUrl(env: Record<string, string | undefined>): string {
  return `http://127.0.0.1:${env.EDGE_MIRROR_PORT || 8787}`;
}

export const DEFAULT_ADMIN_PREFIX = "/__mirror";
/** Long enough for 128 stats shards to answer; a CI job should not hang on a worker that does not. */
const TIMEOUT_MS = 30_000;

export interface VerdictArgs {
  route: string;
  mirror?: string | undefined;
  window?: string | undefined;
  url?: string | undefined;
  prefix?: string | undefined;
  json?: boolean | undefined;
}

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  env: Record<string, string | undefined>;
}

/** Runs the command; resolves to the exit code. */
export async function verdict(args: VerdictArgs, io: Io): Promise<number> {
  const problem = usageProblem(args, io.env);
  if (problem) {
    io.err(problem);
    return EXIT_USAGE;
  }
  const base = new URL(args.url ?? localWorkerUrl(io.env));
  const prefix = (args.prefix ?? DEFAULT_ADMIN_PREFIX).replace(/\/+$/, "");
  const target = new URL(
    `${prefix}${verdictPath({ route: args.route, mirror: args.mirror, window: args.window ?? DEFAULT_WINDOW })}`,
    base,
  );
  let response: Response;
  try {
    response = await fetch(target, {
      headers: { authorization: `Bearer ${io.env.ADMIN_TOKEN}`, accept: "application/json" },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    io.err(
      `cannot reach ${base.origin}: ${reason(err)}${args.url ? "" : " (is npm start running? --url reaches another worker)"}`,
    );
    return EXIT_USAGE;
  }
  const text = await response.text().catch(() => "");
  if (response.status !== 200) {
    io.err(`${target.origin}${target.pathname} answered ${response.status}: ${errorMessage(response.status, text)}`);
    return EXIT_USAGE;
  }
  let report: VerdictReport;
  try {
    report = parseVerdictReport(JSON.parse(text));
  } catch (err) {
    const what = err instanceof ReportFormatError ? err.message : "not JSON";
    io.err(`${target.origin}${target.pathname} answered 200, but ${what}`);
    return EXIT_USAGE;
  }
  if (args.json) io.out(JSON.stringify(report, null, 2));
  else for (const line of table(report)) io.out(line);
  return EXIT[report.verdict];
}

function usageProblem(args: VerdictArgs, env: Record<string, string | undefined>): string | undefined {
  if (args.window !== undefined) {
    try {
      parseWindow(args.window);
    } catch (err) {
      if (err instanceof WindowError) return `--${err.message}`;
      throw err;
    }
  }
  if (args.url !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(args.url);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      return `--url ${JSON.stringify(args.url)} must be the worker's http or https URL, such as https://api.example.com`;
    }
  }
  if (args.prefix !== undefined && !args.prefix.startsWith("/")) {
    return `--prefix ${JSON.stringify(args.prefix)} must be the worker's ADMIN_PREFIX, starting with '/'`;
  }
  if (!env.ADMIN_TOKEN) return "set ADMIN_TOKEN to the worker's admin token (npm start prints the local one)";
  return undefined;
}

function reason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  if ((err as Error)?.name === "TimeoutError") return `no answer within ${TIMEOUT_MS / 1000} s`;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}

/** The admin surface's `{ error, message }`, or what the answer began with. */
function errorMessage(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof body.message === "string")
      return `${body.message}${typeof body.error === "string" ? ` (${body.error})` : ""}`;
  } catch {
    // Not the admin surface's JSON: a proxy's page, say.
  }
  if (status === 401) return "the admin token was refused";
  return text.slice(0, 200).replace(/\s+/g, " ").trim() || "no body";
}

const percent = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(2)} %`);
const points = (x: number | null) => (x === null ? "-" : `${x < 0 ? "−" : "+"}${Math.abs(x * 100).toFixed(2)} pt`);
const ratio = (x: number | null) => (x === null ? "-" : `${x.toFixed(2)}×`);

const SHOW: Record<CheckResult["check"], (x: number | null) => string> = {
  diffRate: percent,
  errorRateIncrease: points,
  latencyP50Ratio: ratio,
  latencyP99Ratio: ratio,
};

function interval(check: CheckResult): string {
  if (!check.ci95) return "-";
  const show = SHOW[check.check];
  const [low, high] = check.ci95;
  return `${show(low)} … ${high === null ? "∞" : show(high)}`;
}

/** Rows of cells as aligned columns, two spaces apart. */
function columns(rows: readonly string[][]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows.map((row) =>
    row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  "),
  );
}

function statusLine(status: StatusCounts): string {
  return (
    STATUS_KEYS.filter((key) => status[key] > 0)
      .map((key) => `${key} ${status[key]}`)
      .join(", ") || "none"
  );
}

function latencyLine(latency: LatencyQuantiles | null): string {
  return latency ? `p50 ${latency.p50} · p95 ${latency.p95} · p99 ${latency.p99} ms (${latency.count})` : "none";
}

/** The report as the command prints it: the checks, the two sides, the verdict. */
export function table(report: VerdictReport): string[] {
  const { window } = report;
  const checks = columns([
    ["CHECK", "OBSERVED", "95 % INTERVAL", "THRESHOLD", "N", "RESULT"],
    ...report.reasons.map((r) => [
      r.check,
      SHOW[r.check](r.observed),
      interval(r),
      `≤ ${SHOW[r.check](r.threshold)}`,
      String(r.samples),
      r.outcome,
    ]),
  ]);
  const sides = columns([
    ["", "PRIMARY", "MIRROR"],
    ["status", statusLine(report.status.primary), statusLine(report.status.mirror)],
    ["latency", latencyLine(report.latencyMs.primary), latencyLine(report.latencyMs.mirror)],
  ]);
  const undecided = report.reasons.filter((r) => r.outcome !== "pass");
  const { asked, answered } = report.shards ?? { asked: 0, answered: 0 };
  const missing = answered < asked ? `; ${answered} of ${asked} stats shards answered` : "";
  return [
    `route ${report.route}, mirror ${report.mirror}: the last ${window.minutes} min (${window.from} to ${window.to}), ${report.samples} samples${missing}`,
    "",
    ...checks,
    "",
    ...sides,
    "",
    ...undecided.map((r) => `${r.check}: ${r.reason}`),
    `verdict: ${report.verdict}`,
  ];
}

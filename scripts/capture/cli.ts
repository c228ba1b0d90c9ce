/**
 * @module scripts/capture/cli
 * `npm run capture -- <command>`: a route's captured requests out of R2 as HAR or NDJSON. Locally
 * (the default) from the very state `wrangler dev` and `npm start` write, opened on its own
 * (scripts/lib/local-r2) and read by the worker's own export (src/capture/export); with `--remote`
 * through the deployed worker's admin API (`api/captures`), since wrangler cannot list a bucket's
 * objects and the bucket's name is chosen by the first deploy. Exit codes: 0 ok, 2 usage or I/O
 * errors.
 */
import { closeSync, createWriteStream, openSync, readSync, statSync } from "node:fs";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { createGzip } from "node:zlib";
import {
  type CaptureBucketReader,
  capturedRoutes,
  DEFAULT_EXPORT_LIMIT,
  type ExportFormat,
  type ExportSummary,
  exportStream,
  MAX_EXPORT_LIMIT,
  parseTime,
} from "../../src/capture/export.js";

const USAGE = `usage: npm run capture -- <command> [options]

commands:
  export --route <id>           a route's captured requests, in start order
      [--from T] [--to T]       a time range: ISO 8601, epoch ms, now or now-15m (default: the last hour)
      [--limit N]               at most N requests (default ${DEFAULT_EXPORT_LIMIT}, at most ${MAX_EXPORT_LIMIT})
      [--format har|ndjson]     default: from --out's name (.har, .ndjson, .ndjson.gz), else har
      [--out FILE]              default: standard output
  routes                        the routes that have captures

where:
  --local (default)             the local state that wrangler dev and npm start use
  --remote                      the deployed worker, through its admin API; the token is read from
                                ADMIN_TOKEN, as the worker's secret is named
  --env <name>                  a wrangler environment (staging, production): with --remote, its
                                ADMIN_HOST (else its first route's host) and ADMIN_PREFIX
  --url <origin>                with --remote: where the admin surface answers, instead
  --persist-to <dir>            local state directory, as wrangler's --persist-to
  --config <wrangler.toml>      another wrangler configuration`;

export class UsageError extends Error {}

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Where an export without --out goes. */
  stdout: NodeJS.WritableStream;
  now: () => number;
  env: Record<string, string | undefined>;
}

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      route: { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      limit: { type: "string" },
      format: { type: "string" },
      out: { type: "string" },
      local: { type: "boolean" },
      remote: { type: "boolean" },
      env: { type: "string" },
      url: { type: "string" },
      "persist-to": { type: "string" },
      config: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.local && values.remote) throw new UsageError("use either --local or --remote, not both");
  if (values.url && !values.remote) throw new UsageError("--url goes with --remote");
  const [command = "help", ...rest] = positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  return { command, flags: values };
}

type Flags = ReturnType<typeof parse>["flags"];

/** ISO 8601, epoch ms, `now`, or `now-<n><s|m|h|d>`. */
export function parseWhen(value: string, now: number): number | undefined {
  const relative = /^now(?:-(\d+)([smhd]))?$/.exec(value);
  if (relative) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as "s" | "m" | "h" | "d"] ?? 0;
    return now - Number(relative[1] ?? 0) * unit;
  }
  return parseTime(value);
}

function formatOf(flags: Flags): { format: ExportFormat; gzip: boolean } {
  const out = flags.out ?? "";
  const gzip = out.endsWith(".gz");
  if (flags.format !== undefined) {
    if (flags.format !== "har" && flags.format !== "ndjson") throw new UsageError('--format must be "har" or "ndjson"');
    if (gzip && flags.format === "har") throw new UsageError("a .gz output is gzipped NDJSON: use --format ndjson");
    return { format: flags.format, gzip };
  }
  return { format: gzip || /\.(ndjson|jsonl)$/.test(out) ? "ndjson" : "har", gzip };
}

interface ExportPlan {
  route: string;
  from: number;
  to: number;
  limit: number;
  format: ExportFormat;
  gzip: boolean;
}

function exportPlan(flags: Flags, now: number): ExportPlan {
  if (!flags.route) throw new UsageError("export needs --route <id>");
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(flags.route)) throw new UsageError("--route must be a route id");
  const to = flags.to === undefined ? now : parseWhen(flags.to, now);
  if (to === undefined) throw new UsageError(`--to "${flags.to}": use ISO 8601, epoch ms, now or now-15m`);
  const from = flags.from === undefined ? to - 3_600_000 : parseWhen(flags.from, now);
  if (from === undefined) throw new UsageError(`--from "${flags.from}": use ISO 8601, epoch ms, now or now-15m`);
  if (from > to) throw new UsageError("--from must not be after --to");
  const limit = flags.limit === undefined ? DEFAULT_EXPORT_LIMIT : Number(flags.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_EXPORT_LIMIT) {
    throw new UsageError(`--limit must be an integer from 1 to ${MAX_EXPORT_LIMIT}`);
  }
  return { route: flags.route, from, to, limit, ...formatOf(flags) };
}

export async function main(argv: string[], io: Io): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  let plan: ExportPlan | undefined;
  try {
    parsed = parse(argv);
    if (parsed.command === "export") plan = exportPlan(parsed.flags, io.now());
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { command, flags } = parsed;
  if (command === "help" || flags.help) {
    io.out(USAGE);
    return 0;
  }
  if (command !== "export" && command !== "routes") {
    io.err(`unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }
  let source: Source;
  try {
    source = flags.remote ? await remoteSource(flags, io) : await localSource(flags);
  } catch (err) {
    io.err(`cannot open the captures: ${(err as Error).message}`);
    return 2;
  }
  try {
    if (command === "routes") {
      const routes = await source.routes();
      io.out(routes.length === 0 ? "no captures" : routes.join("\n"));
      return 0;
    }
    return await runExport(source, plan as ExportPlan, flags.out, io);
  } catch (err) {
    io.err(`error: ${(err as Error).message}`);
    return 2;
  } finally {
    await source.close();
  }
}

/** Where captures are read from: the local bucket, or the deployed worker's admin API. */
interface Source {
  /** The export's bytes, and its summary once they are all out (undefined when it cannot tell). */
  export(plan: ExportPlan): Promise<{ body: ReadableStream<Uint8Array>; summary: () => ExportSummary | undefined }>;
  routes(): Promise<string[]>;
  close(): Promise<void>;
}

async function localSource(flags: Flags): Promise<Source> {
  const { openLocalR2 } = await import("../lib/local-r2.mjs");
  const { bucket, dispose } = await openLocalR2({
    persistTo: flags["persist-to"],
    config: flags.config,
    env: flags.env,
  });
  const reader: CaptureBucketReader = {
    async list(options) {
      const page = await bucket.list(options);
      return {
        objects: page.objects.map((o) => ({ key: o.key })),
        truncated: page.truncated,
        ...(page.truncated ? { cursor: page.cursor } : {}),
      };
    },
    async get(key) {
      const object = await bucket.get(key);
      return object ? { body: object.body as unknown as ReadableStream<Uint8Array> } : null;
    },
  };
  return {
    async export(plan) {
      let summary: ExportSummary | undefined;
      const body = exportStream(reader, plan, plan.format, (s) => {
        summary = s;
      });
      return { body, summary: () => summary };
    },
    routes: () => capturedRoutes(bucket),
    close: () => dispose(),
  };
}

async function remoteSource(flags: Flags, io: Io): Promise<Source> {
  const token = io.env.ADMIN_TOKEN;
  if (!token) {
    // The variable's name before it took the secret's: said, rather than read, so that one name remains.
    const former = io.env.EDGE_MIRROR_ADMIN_TOKEN
      ? " (EDGE_MIRROR_ADMIN_TOKEN, its former name, is no longer read)"
      : "";
    throw new Error(`--remote reads the admin token from ADMIN_TOKEN, which is not set${former}`);
  }
  let base: string;
  if (flags.url) {
    let url: URL;
    try {
      url = new URL(flags.url);
    } catch {
      throw new Error(`--url "${flags.url}" is not an absolute URL`);
    }
    // A URL with a path names the admin prefix too (https://admin.example.com/ops/edge).
    base = url.pathname === "/" ? `${url.origin}/__mirror` : `${url.origin}${url.pathname.replace(/\/$/, "")}`;
  } else {
    const { localConfig } = await import("../lib/wrangler-config.mjs");
    const config = await localConfig({ config: flags.config, env: flags.env });
    if (!config.admin.host) {
      throw new Error(
        `no ADMIN_HOST or routes in the wrangler configuration${flags.env ? ` (env ${flags.env})` : ""}: give --url https://<host>`,
      );
    }
    base = `https://${config.admin.host}${config.admin.prefix}`;
  }
  const get = async (path: string) => {
    const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    if (!response.ok) {
      const text = await response.text();
      throw new Error(`${base}${path.split("?")[0]} answered ${response.status}: ${text.slice(0, 300)}`);
    }
    return response;
  };
  return {
    async export(plan) {
      const query = new URLSearchParams({
        route: plan.route,
        from: String(plan.from),
        to: String(plan.to),
        limit: String(plan.limit),
        format: plan.format,
      });
      const response = await get(`/api/captures?${query}`);
      return { body: response.body as ReadableStream<Uint8Array>, summary: () => undefined };
    },
    async routes() {
      return ((await (await get("/api/captures/routes")).json()) as { routes: string[] }).routes;
    },
    close: async () => {},
  };
}

/** Counts the records of NDJSON (lines) or HAR (entries) as they pass, for the closing line. */
function counter(format: ExportFormat) {
  let records = 0;
  const transform = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (format === "ndjson") for (const byte of chunk) if (byte === 0x0a) records++;
      done(null, chunk);
    },
  });
  return { transform, records: () => records };
}

async function runExport(source: Source, plan: ExportPlan, out: string | undefined, io: Io): Promise<number> {
  const { body, summary } = await source.export(plan);
  const count = counter(plan.format);
  const bytes = Readable.fromWeb(body as import("node:stream/web").ReadableStream);
  const target = out ? createWriteStream(out) : io.stdout;
  if (plan.gzip) await pipeline(bytes, count.transform, createGzip(), target);
  else await pipeline(bytes, count.transform, target);
  const done = summary() ?? (plan.format === "har" && out ? harSummary(out) : undefined);
  const records = done?.records ?? count.records();
  const range = `${new Date(plan.from).toISOString()} to ${new Date(plan.to).toISOString()}`;
  const where = out ? ` to ${out}` : "";
  io.err(
    records === 0
      ? `no captured requests of route ${plan.route} from ${range}${where ? `; wrote an empty export${where}` : ""}`
      : `wrote ${records} request${records === 1 ? "" : "s"} of route ${plan.route} from ${range}${where}`,
  );
  for (const bad of done?.invalid ?? []) io.err(`warning: ${bad.key} line ${bad.line}: ${bad.error} (skipped)`);
  const unlisted = (done?.invalidLines ?? 0) - (done?.invalid.length ?? 0);
  if (unlisted > 0) io.err(`warning: ${unlisted} more unreadable lines skipped`);
  if (done && !done.complete && done.nextFrom) {
    io.err(`more requests follow: run again with --from ${done.nextFrom}`);
  } else if (!done && records === plan.limit) {
    io.err(`--limit ${plan.limit} reached: more requests may follow`);
  }
  return 0;
}

/** The `_edgeMirror` summary at the end of a HAR the admin API wrote (it closes the document). */
function harSummary(path: string): ExportSummary | undefined {
  const size = statSync(path).size;
  const tail = Buffer.alloc(Math.min(size, 64 * 1024));
  const fd = openSync(path, "r");
  try {
    readSync(fd, tail, 0, tail.length, size - tail.length);
  } finally {
    closeSync(fd);
  }
  const text = tail.toString("utf8");
  const at = text.lastIndexOf('"_edgeMirror":');
  if (at === -1) return undefined;
  try {
    return JSON.parse(text.slice(at + '"_edgeMirror":'.length, -2)) as ExportSummary;
  } catch {
    return undefined;
  }
}

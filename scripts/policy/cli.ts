/**
 * @module scripts/policy/cli
 * `npm run policy -- <command>`: validate, apply, diff, pull, list and delete edge-mirror
 * policies in Workers KV, kubectl-style, touch: publish what KV holds, and ask a running worker
 * for a mirror's release verdict. Every command that changes KV then publishes the policies
 * (src/store/publish.ts): the snapshot and marker every isolate reads. Exit codes: 0 ok, 1 invalid
 * input (or, for `diff`, differences found; for `verdict`, fail), 2 usage or I/O errors, 3
 * (`verdict`) inconclusive.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { stringify as toYaml } from "yaml";
import { parsePolicyKey, routeKey } from "../../src/store/keys.js";
import { storedDocument } from "../../src/store/parse.js";
import type { PolicyStore } from "../../src/store/policy-store.js";
import {
  PUBLISH_RETRY_DELAYS_MS,
  type PublishOptions,
  type PublishResult,
  publishPolicies,
  SnapshotTooLargeError,
} from "../../src/store/publish.js";
import { formatProblem, type LoadedPolicies, loadPolicyFiles } from "./files.js";
import { type OpenPolicyStore, openPolicyStore } from "./kv.js";
import { deleteOrder, type FieldChange, fieldChanges, planChanges, storedOnly, summarize, writeOrder } from "./plan.js";
import { verdict } from "./verdict.js";

const USAGE = `usage: npm run policy -- <command> [options]

commands:
  validate <file…>              check policy files (JSON or YAML: { "clusters": {…}, "routes": […] })
  apply <file…>                 validate, then write what changed  [--prune] [--dry-run]
  diff <file…>                  show what apply would change to the objects in the files
                                (exit 1 when there are differences)  [--prune: also what it deletes]
  pull [--out file]             write what is stored as one policy file (JSON, or YAML for .yaml)
  list                          the stored routes and clusters
  delete <route-id>             delete one route
  touch                         publish what KV holds now, so that edits made straight in KV
                                (wrangler kv key put, the dashboard) reach every isolate within
                                POLICY_CACHE_TTL_MS; the worker's cron does it within a minute
  verdict <route>               a mirror's release verdict from a running worker, as a table;
                                exit 0 pass, 1 fail, 3 inconclusive (docs/verdict.md)
                                [--mirror <name>: needed when the route has several]
                                [--window 15m: 1m to 60m, or 1h] [--json: the endpoint's answer]
                                [--url <worker URL>: default npm start's, http://127.0.0.1:8787]
                                [--prefix <ADMIN_PREFIX>: default /__mirror]
                                the admin token comes from the ADMIN_TOKEN environment variable

where (apply, diff, pull, list, delete, touch):
  --local (default)             the local state that wrangler dev and npm start use
  --remote                      Workers KV on Cloudflare, through wrangler (after wrangler login)
  --env <name>                  a wrangler environment (staging, production)
  --persist-to <dir>            local state directory, as wrangler's --persist-to
  --config <wrangler.toml>      another wrangler configuration`;

export class UsageError extends Error {}

interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Where `verdict` reads ADMIN_TOKEN and EDGE_MIRROR_PORT: the process's environment unless given. */
  env?: Record<string, string | undefined>;
}

export async function main(argv: string[], io: Io): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { command, files, flags } = parsed;
  if (command === "help" || flags.help) {
    io.out(USAGE);
    return 0;
  }
  if (["validate", "apply", "diff"].includes(command)) {
    if (files.length === 0) {
      io.err(`${command} needs at least one policy file\n\n${USAGE}`);
      return 2;
    }
    const loaded = loadPolicyFiles(files);
    for (const w of loaded.warnings) io.err(`warning: ${formatProblem(w)}`);
    if (loaded.errors.length > 0) {
      for (const e of loaded.errors) io.err(`error: ${formatProblem(e)}`);
      io.err(`${loaded.errors.length} error${loaded.errors.length === 1 ? "" : "s"}; nothing was written`);
      return 1;
    }
    if (command === "validate") {
      io.out(
        `valid: ${files.length} file${files.length === 1 ? "" : "s"}, ${loaded.routes} routes, ${loaded.clusters} clusters`,
      );
      return 0;
    }
    return withStore(flags, io, (store) =>
      command === "apply" ? apply(store, loaded, flags, io) : diff(store, loaded, flags, io),
    );
  }
  if (command === "pull") return withStore(flags, io, (store) => pull(store, flags.out, io));
  if (command === "list") return withStore(flags, io, (store) => list(store, io));
  if (command === "touch") return withStore(flags, io, (store) => touch(store, io));
  if (command === "delete") {
    const id = files[0];
    if (!id || files.length > 1) {
      io.err(`delete takes exactly one route id\n\n${USAGE}`);
      return 2;
    }
    return withStore(flags, io, (store) => remove(store, id, io));
  }
  if (command === "verdict") {
    const route = files[0];
    if (!route || files.length > 1) {
      io.err(`verdict takes exactly one route id\n\n${USAGE}`);
      return 2;
    }
    return verdict(
      { route, mirror: flags.mirror, window: flags.window, url: flags.url, prefix: flags.prefix, json: flags.json },
      { out: io.out, err: io.err, env: io.env ?? process.env },
    );
  }
  io.err(`unknown command "${command}"\n\n${USAGE}`);
  return 2;
}

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      local: { type: "boolean" },
      remote: { type: "boolean" },
      env: { type: "string" },
      "persist-to": { type: "string" },
      config: { type: "string" },
      prune: { type: "boolean" },
      "dry-run": { type: "boolean" },
      out: { type: "string" },
      mirror: { type: "string" },
      window: { type: "string" },
      url: { type: "string" },
      prefix: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.local && values.remote) throw new UsageError("use either --local or --remote, not both");
  const [command = "help", ...files] = positionals;
  return { command, files, flags: values };
}

type Flags = ReturnType<typeof parse>["flags"];

async function withStore(flags: Flags, io: Io, work: (store: PolicyStore) => Promise<number>): Promise<number> {
  let store: OpenPolicyStore;
  try {
    store = await openPolicyStore({
      remote: flags.remote ?? false,
      env: flags.env,
      persistTo: flags["persist-to"],
      config: flags.config,
    });
  } catch (err) {
    io.err(`cannot open the policy store: ${(err as Error).message}`);
    return 2;
  }
  try {
    return await work(store);
  } catch (err) {
    io.err(`error: ${(err as Error).message}`);
    return 2;
  } finally {
    await store.close();
  }
}

async function apply(store: PolicyStore, loaded: LoadedPolicies, flags: Flags, io: Io): Promise<number> {
  const stored = await store.readAll();
  const changes = planChanges(loaded.entries, stored, flags.prune ?? false);
  for (const c of changes) if (c.kind !== "unchanged") io.out(`${flags["dry-run"] ? "would " : ""}${c.kind} ${c.key}`);
  const counts = summarize(changes);
  const summary = `created ${counts.create}, updated ${counts.update}, deleted ${counts.delete}, unchanged ${counts.unchanged}`;
  if (flags["dry-run"]) {
    io.out(`dry run: ${summary}; nothing was written`);
    return 0;
  }
  const after = new Map(changes.map((c) => [c.key, c.after]));
  const writes = writeOrder(changes.filter((c) => c.kind === "create" || c.kind === "update").map((c) => c.key)).map(
    (key) => [key, after.get(key) as string] as const,
  );
  await store.put(writes, (done, total) => {
    if (total >= 50 && (done % 50 === 0 || done === total)) io.err(`writing ${done}/${total}`);
  });
  const deletes = deleteOrder(changes.filter((c) => c.kind === "delete").map((c) => c.key));
  await store.delete(deletes);
  io.out(summary);
  if (writes.length + deletes.length === 0) return 0;
  // What KV now holds, as this command knows it: nothing needs listing or reading again.
  const texts = new Map(stored);
  for (const [key, text] of writes) texts.set(key, text);
  for (const key of deletes) texts.delete(key);
  await publish(store, { texts, now: Date.now() }, io);
  return 0;
}

/**
 * Publishes, retrying a write KV refused (one write per second per key: another publisher may
 * have written a moment ago). A publication that still fails is reported, and the command fails:
 * the policies are written, and the worker's cron publishes them within a minute.
 */
async function publish(store: PolicyStore, options: PublishOptions, io: Io): Promise<PublishResult> {
  let lastError: unknown;
  for (let attempt = 0; attempt <= PUBLISH_RETRY_DELAYS_MS.length; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, PUBLISH_RETRY_DELAYS_MS[attempt - 1]));
    try {
      const result = await publishPolicies(store, options);
      io.out(
        result.written
          ? `published ${result.routes} routes and ${result.clusters} clusters as version ${result.version.slice(0, 12)}`
          : `already published: ${result.routes} routes and ${result.clusters} clusters, version ${result.version.slice(0, 12)}`,
      );
      return result;
    } catch (err) {
      lastError = err;
      if (err instanceof SnapshotTooLargeError) break;
    }
  }
  throw new Error(
    `the policies are written but could not be published (${(lastError as Error)?.message ?? lastError}); the worker's cron publishes them within a minute, or run npm run policy -- touch`,
  );
}

/** Publishes what KV holds, every key read: after edits made straight in KV. */
async function touch(store: PolicyStore, io: Io): Promise<number> {
  await publish(store, { full: true, now: Date.now() }, io);
  return 0;
}

function describeField(change: FieldChange): string {
  const show = (v: unknown) => (v === undefined ? "(none)" : JSON.stringify(v));
  return `    ${change.path}: ${show(change.before)} → ${show(change.after)}`;
}

async function diff(store: PolicyStore, loaded: LoadedPolicies, flags: Flags, io: Io): Promise<number> {
  const stored = await store.readAll();
  const prune = flags.prune ?? false;
  let differences = 0;
  for (const c of planChanges(loaded.entries, stored, prune)) {
    if (c.kind === "unchanged") continue;
    differences++;
    if (c.kind === "create") io.out(`+ ${c.key}\n    ${c.after}`);
    else if (c.kind === "delete") io.out(`- ${c.key}  (only in KV; apply --prune deletes it)\n    ${c.before}`);
    else {
      io.out(`~ ${c.key}`);
      for (const f of fieldChanges(JSON.parse(c.before as string), JSON.parse(c.after as string)))
        io.out(describeField(f));
    }
  }
  io.out(differences === 0 ? "no differences" : `${differences} difference${differences === 1 ? "" : "s"}`);
  // Like kubectl diff, only the objects in the files are compared; the rest is one line, not a list.
  const untouched = prune ? 0 : storedOnly(loaded.entries, stored).length;
  if (untouched > 0) {
    io.out(
      `${untouched} stored object${untouched === 1 ? "" : "s"} not in these files; --prune to list and delete them`,
    );
  }
  return differences === 0 ? 0 : 1;
}

/** What is stored, as one policy file; names become keys of null-prototype objects. */
function storedFile(stored: ReadonlyMap<string, string>) {
  const clusters: Record<string, unknown> = Object.create(null);
  const routes: unknown[] = [];
  for (const key of [...stored.keys()].sort()) {
    const parsed = parsePolicyKey(key);
    const document = storedDocument(stored.get(key) as string);
    if (parsed?.kind === "cluster") clusters[parsed.name] = document;
    else if (parsed?.kind === "route") routes.push(document);
  }
  return { $schema: "./schema/policy.schema.json", clusters, routes };
}

async function pull(store: PolicyStore, out: string | undefined, io: Io): Promise<number> {
  const doc = storedFile(await store.readAll());
  const text = out && /\.ya?ml$/i.test(out) ? toYaml(doc) : `${JSON.stringify(doc, null, 2)}\n`;
  if (out) {
    writeFileSync(out, text);
    io.out(`wrote ${doc.routes.length} routes and ${Object.keys(doc.clusters).length} clusters to ${out}`);
  } else io.out(text.trimEnd());
  return 0;
}

async function list(store: PolicyStore, io: Io): Promise<number> {
  const doc = storedFile(await store.readAll());
  io.out("CLUSTER\tORIGIN");
  for (const [name, c] of Object.entries(doc.clusters)) io.out(`${name}\t${(c as { origin: string }).origin}`);
  io.out("\nROUTE\tPRIORITY\tMATCH\tMIRRORS");
  for (const r of doc.routes as Array<{
    id: string;
    priority?: number;
    match?: { path?: { type: string; value: string } };
    mirrors?: Array<{ cluster?: string; origin?: string; percent?: number }>;
  }>) {
    const path = r.match?.path ? `${r.match.path.type} ${r.match.path.value}` : "PathPrefix /";
    const mirrors =
      (r.mirrors ?? [])
        .map((m) => `${m.cluster ?? m.origin}${m.percent !== undefined ? ` ${m.percent}%` : ""}`)
        .join(", ") || "-";
    io.out(`${r.id}\t${r.priority ?? 0}\t${path}\t${mirrors}`);
  }
  return 0;
}

async function remove(store: PolicyStore, id: string, io: Io): Promise<number> {
  const key = routeKey(id);
  if ((await store.get(key)) === null) {
    io.err(`error: no route "${id}" is stored`);
    return 1;
  }
  await store.delete([key]);
  io.out(`deleted ${key}`);
  await publish(store, { changes: new Map([[key, null]]), now: Date.now() }, io);
  return 0;
}

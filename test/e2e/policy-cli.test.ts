import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { ROOT } from "../../scripts/lib/build.mjs";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { startWorker } from "../../scripts/lib/worker.mjs";
import { localConfig } from "../../scripts/lib/wrangler-config.mjs";
import { main } from "../../scripts/policy/cli.js";
import {
  clusterKey,
  POLICY_MARKER_KEY,
  POLICY_SNAPSHOT_KEY,
  routeKey,
  SESSION_EPOCH_KEY,
} from "../../src/store/keys.js";

/**
 * The CLI against real local KV state, read back through the worker in workerd. Most commands run
 * its `main` in this process, as scripts/policy.ts does, each opening and closing the local KV as
 * a process of its own would: what it prints is what console.log and console.error would print.
 * `spawned` and `bin` run the real entry points, for what only a process shows: its exit code, and
 * that nothing else reaches its stderr.
 */
const dir = mkdtempSync(join(tmpdir(), "edge-mirror-cli-"));
const state = join(dir, "state");

async function policy(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (line) => out.push(line), err: (line) => err.push(line) });
  const printed = (lines: string[]) => lines.map((line) => `${line}\n`).join("");
  return { code, out: printed(out), err: printed(err) };
}
const local = (...args: string[]) => policy(...args, "--persist-to", state);

/** Node, in the repository, on `args`: a process of its own, its exit code and what it printed. */
function node(...args: string[]) {
  const run = spawnSync(process.execPath, args, { cwd: ROOT, encoding: "utf8" });
  return { code: run.status, out: run.stdout, err: run.stderr };
}
/** `npm run policy -- <args>` as a process of its own. */
const spawned = (...args: string[]) => node("--import", "tsx", join(ROOT, "scripts/policy.ts"), ...args);
/** The package's `edge-mirror-policy` command (bin/edge-mirror-policy.mjs) as a process of its own. */
const bin = (...args: string[]) => node(join(ROOT, "bin/edge-mirror-policy.mjs"), ...args);

function file(name: string, content: string | object): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content, null, 2));
  return path;
}

let primary: Awaited<ReturnType<typeof startOrigin>>;
let canary: Awaited<ReturnType<typeof startOrigin>>;

beforeAll(async () => {
  primary = await startOrigin({ name: "primary" });
  canary = await startOrigin({ name: "canary" });
});
afterAll(async () => {
  await Promise.all([primary?.close(), canary?.close()]);
});

/**
 * Starts the worker on the CLI's local state, sends one request to `path`, returns what the canary
 * saw. A new isolate with a policy cache reads the published snapshot alone (every key only when
 * nothing is published): what it serves is what the CLI published.
 */
async function mirroredThroughWorker(path: string): Promise<string[]> {
  canary.reset();
  const worker = await startWorker({
    scriptPath: inject("workerScript"),
    persistTo: state,
    vars: { PRIMARY_ORIGIN: primary.url, POLICY_CACHE_TTL_MS: "60000" },
  });
  try {
    const res = await fetch(`${worker.url}${path}`);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    // Give the copy, if any, its chance to arrive: wait for it, or settle for none after a bounded wait.
    await canary.waitForCount(1, 2000).catch(() => {});
    // The route the copy's marker names (`<route>;t=…;b=…;sig=…`).
    return canary.requests.map((r) => String(r.headers["x-edge-mirror"]).split(";")[0] as string);
  } finally {
    await worker.dispose();
  }
}

const policyFile = () => ({
  $schema: "../schema/policy.schema.json",
  clusters: { canary: { origin: canary.url } },
  routes: [
    {
      id: "api",
      match: { path: { type: "PathPrefix", value: "/api" } },
      mirrors: [{ cluster: "canary", percent: 100 }],
    },
  ],
});

describe("validate", () => {
  it("accepts a good file", async () => {
    const run = await policy("validate", file("good.json", policyFile()));
    expect(run.code).toBe(0);
    expect(run.out).toContain("valid: 1 file, 1 routes, 1 clusters");
  });

  it.each([
    ["malformed.json", '{"routes": [', /malformed\.json: cannot be read as JSON/],
    ["malformed.yaml", "routes:\n  - id: a\n   bad: [", /malformed\.yaml: cannot be read as YAML/],
    ["unknown.json", { routes: [{ id: "a", mirrorz: [] }] }, /unknown\.json: routes\[0\]\.mirrorz: unknown field/],
    [
      "type.json",
      { routes: [{ id: "a", timeoutMs: "15s" }] },
      /type\.json: routes\[0\]\.timeoutMs: must be a number, got string/,
    ],
    [
      "range.yaml",
      "routes:\n  - id: a\n    mirrors: [{ origin: 'https://x.test', percent: 101 }]\n",
      /range\.yaml: routes\[0\]\.mirrors\[0\]\.percent: must be ≤ 100/,
    ],
    [
      "regex.json",
      { routes: [{ id: "a", match: { path: { type: "RegularExpression", value: "/(?=a)" } } }] },
      /routes\[0\]\.match\.path\.value: must not use lookahead or lookbehind/,
    ],
    [
      "badregex.json",
      { routes: [{ id: "a", match: { path: { type: "RegularExpression", value: "([" } } }] },
      /routes\[0\]\.match\.path\.value: is not a valid regular expression/,
    ],
    [
      "scheme.json",
      { clusters: { c: { origin: "ftp://files.test" } } },
      /scheme\.json: clusters\.c\.origin: must use http or https, not ftp/,
    ],
    [
      "undefined.json",
      { routes: [{ id: "a", mirrors: [{ cluster: "ghost" }] }] },
      /undefined\.json: routes\[0\]\.mirrors\[0\]\.cluster: names undefined cluster "ghost"/,
    ],
  ])("refuses %s with a precise error and exit code 1", async (name, content, expected) => {
    const run = await policy("validate", file(name, content));
    expect(run.code).toBe(1);
    expect(run.err).toMatch(expected);
    expect(run.err).toContain("nothing was written");
  });

  it("refuses duplicate route ids across files and warns about a shadowed route", async () => {
    const a = file("a.json", { routes: [{ id: "dup", match: { path: { type: "PathPrefix", value: "/x" } } }] });
    const b = file("b.json", { routes: [{ id: "dup" }] });
    const dup = await policy("validate", a, b);
    expect(dup.code).toBe(1);
    expect(dup.err).toContain(`b.json: routes[0].id: duplicate route id "dup" (also at ${a}: routes[0])`);

    const shadow = file("shadow.json", { routes: [{ id: "low" }, { id: "high", priority: 2 }] });
    const warned = await policy("validate", shadow);
    expect(warned.code).toBe(0);
    expect(warned.err).toContain("warning: " + shadow + ': routes[0]: route "low" can never match: route "high"');
  });
});

describe("apply, diff, pull, list, delete against local KV", () => {
  it("a bad file changes nothing in KV", async () => {
    expect((await local("apply", file("bad.json", { routes: [{ id: "x", timeoutMs: -5 }] }))).code).toBe(1);
    const pulled = await local("pull");
    expect(pulled.code).toBe(0);
    expect(JSON.parse(pulled.out)).toMatchObject({ clusters: {}, routes: [] });
  });

  it("applies, and the running worker mirrors by the applied policy", async () => {
    const good = file("policy.json", policyFile());
    const dry = await local("apply", good, "--dry-run");
    expect(dry.out).toContain("dry run: created 2, updated 0, deleted 0, unchanged 0; nothing was written");
    expect(await mirroredThroughWorker("/api/x")).toEqual([]);

    // As a process: exit 0, and on its stderr only its own lines (none). Opening local KV starts
    // nothing that warns (no Durable Object, no worker).
    const applied = spawned("apply", good, "--persist-to", state);
    expect(applied.code).toBe(0);
    expect(applied.err).toBe("");
    expect(applied.out).toContain(`create ${clusterKey("canary")}`);
    expect(applied.out).toContain("created 2, updated 0, deleted 0, unchanged 0");
    expect(await mirroredThroughWorker("/api/x")).toEqual(["api"]);

    expect((await local("apply", good)).out).toContain("created 0, updated 0, deleted 0, unchanged 2");
  });

  it("diffs field by field, then applies the change", async () => {
    const changed = policyFile();
    changed.routes[0] = {
      ...changed.routes[0],
      match: { path: { type: "PathPrefix", value: "/v2" } },
    } as (typeof changed.routes)[0];
    const path = file("changed.json", changed);
    const diff = await local("diff", path);
    expect(diff.code).toBe(1);
    expect(diff.err).toBe("");
    expect(diff.out).toContain(`~ ${routeKey("api")}`);
    expect(diff.out).toContain('    match.path.value: "/api" → "/v2"');
    expect((await local("apply", path)).out).toContain("updated 1");
    expect(await mirroredThroughWorker("/v2/y")).toEqual(["api"]);
    expect(await local("diff", path)).toMatchObject({ code: 0, out: expect.stringContaining("no differences") });
  });

  it("pulls to YAML that validates and re-applies unchanged; lists what is stored", async () => {
    const out = join(dir, "pulled.yaml");
    expect((await local("pull", "--out", out)).code).toBe(0);
    expect(readFileSync(out, "utf8")).toContain("id: api");
    expect((await local("apply", out)).out).toContain("unchanged 2");
    const listed = await local("list");
    expect(listed.err).toBe("");
    expect(listed.out).toMatch(/api\t0\tPathPrefix \/v2\tcanary 100%/);
    expect(listed.out).toContain(`canary\t${canary.url}`);
  });

  it("diffs only the objects in the files, and counts the stored rest in one line", async () => {
    const extra = file("extra.json", { routes: [{ id: "extra", match: { path: { type: "Exact", value: "/e" } } }] });
    const diff = await local("diff", extra);
    expect(diff).toMatchObject({ code: 1, err: "" });
    expect(diff.out.trim().split("\n")).toEqual([
      `+ ${routeKey("extra")}`,
      `    {"id":"extra","match":{"path":{"type":"Exact","value":"/e"}}}`,
      "1 difference",
      "2 stored objects not in these files; --prune to list and delete them",
    ]);

    const pruning = await local("diff", extra, "--prune");
    expect(pruning.code).toBe(1);
    expect(pruning.out).toContain(`- ${clusterKey("canary")}  (only in KV; apply --prune deletes it)`);
    expect(pruning.out).toContain(`- ${routeKey("api")}  (only in KV; apply --prune deletes it)`);
    expect(pruning.out).toContain("3 differences");
    expect(pruning.out).not.toContain("stored objects not in these files");

    // A file that holds part of what is stored, unchanged: no differences, exit 0.
    const part = await local("diff", file("part.json", { clusters: { canary: { origin: canary.url } } }));
    expect(part).toMatchObject({ code: 0, err: "" });
    expect(part.out.trim().split("\n")).toEqual([
      "no differences",
      "1 stored object not in these files; --prune to list and delete them",
    ]);
  });

  it("prunes what the files no longer hold, and never the dashboard's session epoch", async () => {
    // A real sign-in through the worker on this state stores the session epoch beside the policies.
    const token = "policy-cli-test-admin-token-0123456789";
    const signIn = async () => {
      const worker = await startWorker({
        scriptPath: inject("workerScript"),
        persistTo: state,
        vars: { ADMIN_TOKEN: token },
      });
      try {
        const res = await fetch(`${worker.url}/__mirror/login`, {
          method: "POST",
          body: new URLSearchParams({ token }),
          redirect: "manual",
        });
        expect(res.status).toBe(303);
        return await worker.kv.get(SESSION_EPOCH_KEY);
      } finally {
        await worker.dispose();
      }
    };
    const epoch = await signIn();
    expect(epoch).toMatch(/"epoch":"[0-9a-f]{32}"/);

    const other = file("other.json", {
      clusters: { canary: { origin: canary.url } },
      routes: [{ id: "other", match: { path: { type: "Exact", value: "/o" } } }],
    });
    const pruned = await local("apply", other, "--prune");
    expect(pruned.out).toContain(`delete ${routeKey("api")}`);
    expect(pruned.out).toContain("created 1, updated 0, deleted 1, unchanged 1");
    expect(pruned.out).not.toContain(SESSION_EPOCH_KEY);
    expect(await local("diff", other, "--prune")).toMatchObject({ code: 0 });
    expect((await local("pull")).out).not.toContain("epoch");
    expect(await mirroredThroughWorker("/v2/y")).toEqual([]);
    // Signing in again joins the same, untouched epoch.
    expect(await signIn()).toBe(epoch);
  });

  it("deletes one route, and says so when there is none", async () => {
    expect(await local("delete", "other")).toMatchObject({
      code: 0,
      out: expect.stringContaining(`deleted ${routeKey("other")}`),
      err: "",
    });
    expect(await local("delete", "other")).toMatchObject({
      code: 1,
      err: expect.stringContaining('no route "other" is stored'),
    });
  });

  it("touch publishes an edit made straight in KV, which no isolate sees before", async () => {
    const good = file("touched.json", policyFile());
    expect((await local("apply", good, "--prune")).out).toMatch(
      /published 1 routes and 1 clusters as version [0-9a-f]{12}/,
    );
    expect(await mirroredThroughWorker("/api/t")).toEqual(["api"]);
    // As `wrangler kv key put --local` writes it: a new value, no metadata, nothing published.
    const moved = { ...policyFile().routes[0], match: { path: { type: "PathPrefix", value: "/moved" } } };
    const worker = await startWorker({ scriptPath: inject("workerScript"), persistTo: state });
    await worker.kv.put(routeKey("api"), JSON.stringify(moved));
    await worker.dispose();
    expect(await mirroredThroughWorker("/moved/t")).toEqual([]);

    const touched = await local("touch");
    expect(touched).toMatchObject({ code: 0, err: "" });
    expect(touched.out).toMatch(/^published 1 routes and 1 clusters as version [0-9a-f]{12}$/m);
    expect(await mirroredThroughWorker("/moved/t")).toEqual(["api"]);
    expect((await local("touch")).out).toMatch(/^already published: 1 routes and 1 clusters, version [0-9a-f]{12}$/m);
  });

  it("refuses bad usage with exit code 2", async () => {
    // The package's command, as a process: its exit code is main's.
    expect(bin("frobnicate")).toMatchObject({ code: 2, err: expect.stringContaining('unknown command "frobnicate"') });
    expect((await policy("frobnicate")).code).toBe(2);
    expect((await policy("apply")).code).toBe(2);
    expect((await policy("list", "--local", "--remote")).code).toBe(2);
  });
});

describe("remote mode", () => {
  const calls = join(dir, "wrangler-calls.log");
  /** A stand-in for wrangler that logs each call and answers from two stored objects. */
  const fakeWrangler = () =>
    file(
      "fake-wrangler.mjs",
      `import { appendFileSync, readFileSync } from "node:fs";
const args = process.argv.slice(2);
// The CLI removes its files when it is done: keep what each bulk command was given.
const given = args[1] === "bulk" ? JSON.parse(readFileSync(args[3], "utf8")) : undefined;
appendFileSync(${JSON.stringify(calls)}, JSON.stringify({ args, given }) + "\\n");
const stored = {
  ${JSON.stringify(clusterKey("canary"))}: ${JSON.stringify(JSON.stringify({ origin: canary.url }))},
  ${JSON.stringify(routeKey("old"))}: '{"id":"old"}',
};
const prefix = args[args.indexOf("--prefix") + 1];
if (args[1] === "key") console.log(JSON.stringify(Object.keys(stored).filter((k) => k.startsWith(prefix)).map((name) => ({ name }))));
if (args[1] === "bulk" && args[2] === "get") console.log("fetching…\\n" + JSON.stringify(Object.fromEntries(given.map((k) => [k, { value: stored[k] ?? null }]))));
if (args[1] === "bulk" && args[2] === "put") console.log("Success!");`,
    );
  // The CLI reads which wrangler to run from its environment when it opens the remote store.
  beforeAll(() => {
    vi.stubEnv("EDGE_MIRROR_WRANGLER", fakeWrangler());
  });
  afterAll(() => {
    vi.unstubAllEnvs();
  });
  const remote = async (...args: string[]) => {
    writeFileSync(calls, "");
    const run = await policy(...args, "--remote");
    const made = readFileSync(calls, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { args: string[]; given?: unknown });
    return { ...run, calls: made };
  };

  it("applies through wrangler kv with --remote, the binding and the environment, writing only what changed", async () => {
    const run = await remote("apply", file("remote.json", policyFile()), "--env", "production");
    expect(run.err).toBe("");
    expect(run.code).toBe(0);
    expect(run.out).toContain("created 1, updated 0, deleted 0, unchanged 1");
    // The stored route beside the new one.
    expect(run.out).toMatch(/published 2 routes and 1 clusters as version [0-9a-f]{12}/);
    // Read, write what changed, then publish: the published pair read, the snapshot written, then its marker.
    expect(run.calls.map((c) => c.args.slice(0, 3).join(" "))).toEqual([
      "kv key list",
      "kv key list",
      "kv bulk get",
      "kv bulk put",
      "kv bulk get",
      "kv bulk put",
      "kv bulk put",
    ]);
    for (const { args } of run.calls)
      expect(args).toEqual(expect.arrayContaining(["--binding", "MIRROR_CONFIG", "--remote", "--env", "production"]));
    const put = run.calls[3] as { args: string[]; given: Array<{ key: string; metadata: unknown }> };
    expect(put.given.map((e) => e.key)).toEqual([routeKey("api")]);
    expect(put.given[0]?.metadata).toEqual({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const published = run.calls
      .slice(4)
      .map((c) => (c.given as Array<{ key: string } | string>).map((e) => (typeof e === "string" ? e : e.key)));
    expect(published).toEqual([[POLICY_MARKER_KEY, POLICY_SNAPSHOT_KEY], [POLICY_SNAPSHOT_KEY], [POLICY_MARKER_KEY]]);
    // The files handed to wrangler are gone with the command.
    expect(existsSync(put.args[3] as string)).toBe(false);
  });

  it("diffs like local mode: the file's objects, and the stored rest in one line", async () => {
    const run = await remote("diff", file("remote.json", policyFile()));
    expect(run.code).toBe(1);
    expect(run.out).toContain(`+ ${routeKey("api")}`);
    expect(run.out).toContain("1 difference\n1 stored object not in these files; --prune to list and delete them");
  });
});

describe("the wrangler configuration local commands read", () => {
  it("is read through wrangler once, and again whenever the configuration changes", async () => {
    const project = join(dir, "project");
    mkdirSync(project);
    const config = join(project, "wrangler.toml");
    const toml = (id: string, limit: number) =>
      `name = "x"\ncompatibility_date = "2026-01-02"\n[[kv_namespaces]]\nbinding = "MIRROR_CONFIG"\nid = "${id}"\n` +
      `[[rules]]\ntype = "Text"\nglobs = ["**/*.browser.js"]\nfallthrough = true\n` +
      `[[ratelimits]]\nname = "ADMIN_LOGIN_LIMIT"\nnamespace_id = "1"\nsimple = { limit = ${limit}, period = 60 }\n` +
      `[[r2_buckets]]\nbinding = "MIRROR_CAPTURES"\nbucket_name = "captures-${id}"\n` +
      `[vars]\nADMIN_HOST = "admin.example.com"\nADMIN_PREFIX = "/ops/edge"\n` +
      `[env.staging]\n[[env.staging.kv_namespaces]]\nbinding = "MIRROR_CONFIG"\nid = "staging-${id}"\n` +
      `[[env.staging.ratelimits]]\nname = "ADMIN_LOGIN_LIMIT"\nnamespace_id = "2"\nsimple = { limit = 5, period = 10 }\n` +
      `[[env.staging.r2_buckets]]\nbinding = "MIRROR_CAPTURES"\n[env.staging.vars]\nADMIN_HOST = ""\nADMIN_PREFIX = ""\n`;
    writeFileSync(config, toml("first", 10));
    const first = await localConfig({ config });
    expect(first).toEqual({
      namespaceId: "first",
      ratelimits: { ADMIN_LOGIN_LIMIT: { simple: { limit: 10, period: 60 } } },
      compatibilityDate: "2026-01-02",
      modulesRules: [{ type: "Text", include: ["**/*.browser.js"], fallthrough: true }],
      queueProducers: {},
      queueConsumers: {},
      r2Buckets: { MIRROR_CAPTURES: "captures-first" },
      admin: { host: "admin.example.com", prefix: "/ops/edge" },
      defaultPersistTo: join(project, ".wrangler/state"),
    });
    const kept = join(project, ".wrangler/edge-mirror/config.json");
    expect(JSON.parse(readFileSync(kept, "utf8")).config).toEqual(first);
    // The kept answer is the one wrangler gave, and it serves only the same text and environment.
    // Every read through wrangler replaces the file (a new inode): the same inode means none ran.
    const inode = statSync(kept).ino;
    expect(await localConfig({ config })).toEqual(first);
    expect(statSync(kept).ino).toBe(inode);
    const staging = await localConfig({ config, env: "staging" });
    expect(staging.namespaceId).toBe("staging-first");
    // A bucket without a name is kept under the binding's; without ADMIN_HOST or routes, no admin host.
    expect(staging).toMatchObject({
      r2Buckets: { MIRROR_CAPTURES: "MIRROR_CAPTURES" },
      admin: { host: undefined, prefix: "/__mirror" },
    });
    writeFileSync(config, toml("second", 20));
    const second = await localConfig({ config });
    expect(second.namespaceId).toBe("second");
    expect(second.ratelimits.ADMIN_LOGIN_LIMIT?.simple.limit).toBe(20);
  });
});

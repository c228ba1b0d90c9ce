/**
 * @module admin/stats
 * `<ADMIN_PREFIX>/api/stats`: the live counters of every stats shard, merged, over the last
 * `minutes` (1–60, default 60): per route and mirror the totals, a per-minute series and the
 * fields that differ, the primary's answers and latency beside the mirror's, the top divergence
 * signatures and the release verdict over the same window (judged as `api/verdict` judges, by
 * the route's policy in the isolate's snapshot, which also lists the configured routes: the
 * dashboard's poll every two seconds reads no KV); the newest diff samples; and each shard's write
 * load.
 * `GET /samples?route=&mirror=&field=` gives the newest samples of one differing field.
 * `DELETE` clears every shard (for example after changing a route's mirrors).
 */
import { Hono } from "hono/tiny";
import type { Merged } from "../stats/merge.js";
import { readFieldSamples, readStats, resetStats, type ShardStatus, StatsUnavailableError } from "../stats/shards.js";
import { type RouteSummary, summarize, verdictInput } from "../stats/summary.js";
import type { PolicySnapshot } from "../store/index.js";
import { parsePolicyKey } from "../store/keys.js";
import { decideVerdict, thresholdsFor } from "../verdict/index.js";
import { type AdminEnv, jsonError, policySnapshot } from "./http.js";
import { judgedMirrors } from "./verdict.js";

const NO_STORE = { "cache-control": "no-store" };

const unbound = () =>
  jsonError(503, "stats_unavailable", "no MIRROR_STATS Durable Object binding: add it as in wrangler.toml");

function unavailable(err: unknown): Response {
  if (err instanceof StatsUnavailableError) return jsonError(503, "stats_unavailable", err.message);
  throw err;
}

/** The `minutes` query parameter, or undefined when it is not an integer from 1 to 60. */
function windowParam(value: string | undefined): number | undefined {
  const minutes = Number(value ?? "60");
  return Number.isInteger(minutes) && minutes >= 1 && minutes <= 60 ? minutes : undefined;
}

const invalidWindow = () => jsonError(400, "invalid_query", "minutes must be an integer from 1 to 60");

/**
 * Each mirror's release verdict over the window, judged by its route's policy in the snapshot. A
 * route the snapshot does not hold as valid shows no verdict rather than one judged by thresholds
 * it does not have.
 */
function addVerdicts(
  routes: RouteSummary[],
  read: { merged: Merged; minutes: number[]; shards: ShardStatus[] },
  policies: PolicySnapshot,
  asked: number,
): void {
  const shards = { asked, answered: read.shards.filter((s) => s.answered).length };
  const now = Date.now();
  for (const summary of routes) {
    const route = summary.mirrors.length > 0 ? policies.routeById.get(summary.route) : undefined;
    if (route === undefined) continue;
    const judged = judgedMirrors(route);
    for (const mirror of summary.mirrors) {
      const compared = judged.get(mirror.mirror)?.compared;
      if (compared === undefined) continue;
      const merged = read.merged.routes.get(summary.route)?.mirrors.get(mirror.mirror);
      const input = verdictInput(merged, { minutes: read.minutes, to: now }, { compared, shards });
      const report = decideVerdict(route.id, mirror.mirror, input, thresholdsFor(route, mirror.mirror));
      mirror.verdict = { verdict: report.verdict, reasons: report.reasons, samples: report.samples };
    }
  }
}

/** The configured routes' ids: those the snapshot holds, and those stored but invalid. */
function configuredRoutes(policies: PolicySnapshot): string[] {
  const ids = [...policies.routeById.keys()];
  for (const { key } of policies.invalid) {
    const stored = parsePolicyKey(key);
    if (stored?.kind === "route") ids.push(stored.name);
  }
  return ids;
}

/** The live counters of every stats shard, merged; and clearing them. */
export function statsApi(): Hono<AdminEnv> {
  const statsApi = new Hono<AdminEnv>();
  statsApi.get("/", async (c) => {
    const namespace = c.env.MIRROR_STATS;
    if (!namespace) return unbound();
    const minutes = windowParam(c.req.query("minutes"));
    if (minutes === undefined) return invalidWindow();
    const admin = c.get("admin");
    const [read, policies] = await Promise.all([
      readStats(namespace, admin.statsShards, minutes).catch(unavailable),
      policySnapshot(c),
    ]);
    if (read instanceof Response) return read;
    const first = read.minutes[0] as number;
    const routes = summarize(read.merged, read.minutes, configuredRoutes(policies));
    addVerdicts(routes, read, policies, admin.statsShards);
    return c.json(
      {
        window: {
          minutes,
          from: new Date(first * 60_000).toISOString(),
          to: new Date().toISOString(),
        },
        routes,
        samples: read.merged.samples,
        sources: {
          counters: true,
          analyticsEngine: Boolean(c.env.MIRROR_ANALYTICS),
          shards: read.shards,
        },
      },
      200,
      NO_STORE,
    );
  });

  statsApi.get("/samples", async (c) => {
    const namespace = c.env.MIRROR_STATS;
    if (!namespace) return unbound();
    const minutes = windowParam(c.req.query("minutes"));
    if (minutes === undefined) return invalidWindow();
    const { route, mirror, field } = c.req.query();
    if (!route || !mirror || !field) {
      return jsonError(400, "invalid_query", "route, mirror and field are required");
    }
    const samples = await readFieldSamples(
      namespace,
      c.get("admin").statsShards,
      { route, mirror, field },
      minutes,
    ).catch(unavailable);
    if (samples instanceof Response) return samples;
    return c.json({ route, mirror, field, samples }, 200, NO_STORE);
  });

  statsApi.delete("/", async (c) => {
    const namespace = c.env.MIRROR_STATS;
    if (!namespace) return unbound();
    await resetStats(namespace, c.get("admin").statsShards);
    return c.body(null, 204);
  });
  return statsApi;
}

/**
 * @module admin/stats
 * `<ADMIN_PREFIX>/api/stats`: the live counters of every stats shard, merged, over the last
 * `minutes` (1–60, default 60): per route and mirror the totals, a per-minute series and the
 * fields that differ, the primary's answers and latency beside the mirror's, the top divergence
 * signatures and the release verdict over the same window (judged as `api/verdict` judges, by
 * the route's policy as stored: one bulk KV read of the routes shown); the newest diff samples;
 * and each shard's write load.
 * `GET /samples?route=&mirror=&field=` gives the newest samples of one differing field.
 * `DELETE` clears every shard (for example after changing a route's mirrors).
 */
import { Hono } from "hono/tiny";
import { parseRoute, type Route } from "../policy/index.js";
import type { Merged } from "../stats/merge.js";
import { readFieldSamples, readStats, resetStats, type ShardStatus, StatsUnavailableError } from "../stats/shards.js";
import { type RouteSummary, summarize, verdictInput } from "../stats/summary.js";
import { routeKey } from "../store/keys.js";
import { kvPolicyStore, type PolicyStore } from "../store/policy-store.js";
import { decideVerdict, thresholdsFor } from "../verdict/index.js";
import { type AdminEnv, jsonError } from "./http.js";
import { judgedMirrors, MAX_ROUTE_ID_CHARS } from "./verdict.js";

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
 * Each mirror's release verdict over the window, judged by its route's policy as stored (the
 * routes with mirrors read in one bulk KV read). A route that cannot be read or parsed shows no
 * verdict rather than one judged by thresholds it does not have.
 */
async function addVerdicts(
  routes: RouteSummary[],
  read: { merged: Merged; minutes: number[]; shards: ShardStatus[] },
  store: PolicyStore,
  asked: number,
): Promise<void> {
  const ids = routes.filter((r) => r.mirrors.length > 0 && r.route.length <= MAX_ROUTE_ID_CHARS).map((r) => r.route);
  if (ids.length === 0) return;
  const texts = await store.getMany(ids.map(routeKey)).catch(() => new Map<string, string>());
  const shards = { asked, answered: read.shards.filter((s) => s.answered).length };
  const now = Date.now();
  for (const summary of routes) {
    const text = texts.get(routeKey(summary.route));
    if (text === undefined) continue;
    let route: Route;
    try {
      route = parseRoute(JSON.parse(text));
    } catch {
      continue;
    }
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

/** The live counters of every stats shard, merged; and clearing them. */
export function statsApi(): Hono<AdminEnv> {
  const statsApi = new Hono<AdminEnv>();
  statsApi.get("/", async (c) => {
    const namespace = c.env.MIRROR_STATS;
    if (!namespace) return unbound();
    const minutes = windowParam(c.req.query("minutes"));
    if (minutes === undefined) return invalidWindow();
    const [read, configured] = await Promise.all([
      readStats(namespace, c.get("admin").statsShards, minutes).catch(unavailable),
      kvPolicyStore(c.env.MIRROR_CONFIG)
        .list("route")
        .catch(() => [] as string[]),
    ]);
    if (read instanceof Response) return read;
    const first = read.minutes[0] as number;
    const routes = summarize(read.merged, read.minutes, configured);
    await addVerdicts(routes, read, kvPolicyStore(c.env.MIRROR_CONFIG), c.get("admin").statsShards);
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

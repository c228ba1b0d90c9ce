/**
 * @module admin/stats
 * `<ADMIN_PREFIX>/api/stats`: the live counters of every stats shard, merged, over the last
 * `minutes` (1–60, default 60): per route and mirror the totals, a per-minute series and the
 * fields that differ; the newest diff samples; and each shard's write load.
 * `GET /samples?route=&mirror=&field=` gives the newest samples of one differing field.
 * `DELETE` clears every shard (for example after changing a route's mirrors).
 */
import { Hono } from "hono/tiny";
import { readFieldSamples, readStats, resetStats, StatsUnavailableError } from "../stats/shards.js";
import { summarize } from "../stats/summary.js";
import { kvPolicyStore } from "../store/policy-store.js";
import { type AdminEnv, jsonError } from "./http.js";

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
    return c.json(
      {
        window: {
          minutes,
          from: new Date(first * 60_000).toISOString(),
          to: new Date().toISOString(),
        },
        routes: summarize(read.merged, read.minutes, configured),
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

/**
 * @module admin/stats
 * `<ADMIN_PREFIX>/api/stats`: the live counters and newest diff samples from `MirrorStats`,
 * summed over the last `minutes` (1–60, default 60), one row per configured or seen route.
 * `DELETE` clears them (for example after changing a route's mirrors).
 */
import { Hono } from "hono";
import { statsObject } from "../stats/durable-object.js";
import { summarize } from "../stats/index.js";
import { kvPolicyStore } from "../store/policy-store.js";
import { type AdminEnv, jsonError } from "./index.js";

export const statsApi = new Hono<AdminEnv>();

const unavailable = () =>
  jsonError(503, "stats_unavailable", "no MIRROR_STATS Durable Object binding: add it as in wrangler.toml");

statsApi.get("/", async (c) => {
  const stub = statsObject(c.env);
  if (!stub) return unavailable();
  const minutesParam = c.req.query("minutes") ?? "60";
  const minutes = Number(minutesParam);
  if (!Number.isInteger(minutes) || minutes < 1 || minutes > 60) {
    return jsonError(400, "invalid_query", "minutes must be an integer from 1 to 60");
  }
  const [snapshot, configured] = await Promise.all([
    stub.read(minutes),
    kvPolicyStore(c.env.MIRROR_CONFIG)
      .list("route")
      .catch(() => [] as string[]),
  ]);
  return c.json(
    {
      window: { minutes, from: new Date(snapshot.from).toISOString(), to: new Date(snapshot.to).toISOString() },
      routes: summarize(snapshot.tally, configured),
      samples: snapshot.samples,
      sources: { counters: true, analyticsEngine: Boolean(c.env.MIRROR_ANALYTICS) },
    },
    200,
    { "cache-control": "no-store" },
  );
});

statsApi.delete("/", async (c) => {
  const stub = statsObject(c.env);
  if (!stub) return unavailable();
  await stub.reset();
  return c.body(null, 204);
});

/**
 * @module admin/verdict
 * `<ADMIN_PREFIX>/api/verdict?route=R&mirror=M&window=15m`: the release verdict of one mirror of a
 * route over the last 1–60 minutes (docs/verdict.md). It takes the route's policy from the
 * isolate's snapshot (its mirrors, whether each is compared, their thresholds) — what the worker
 * serves, and no KV read for a pipeline that asks every minute — every stats shard's counters for
 * the window, and answers the `VerdictReport` src/verdict decides on them: 200 whatever the verdict,
 * `Cache-Control: no-store`. Errors are the admin surface's JSON errors, as src/verdict/report
 * lists them. Behind the same gate as `api/stats`.
 */
import { Hono } from "hono/tiny";
import { mirrorLabel } from "../mirror/plan.js";
import { compareSpec, type Route } from "../policy/index.js";
import { readStats, StatsUnavailableError } from "../stats/shards.js";
import { verdictInput } from "../stats/summary.js";
import { routeKey } from "../store/keys.js";
import { DEFAULT_WINDOW, decideVerdict, parseWindow, thresholdsFor, WindowError } from "../verdict/index.js";
import { type AdminEnv, jsonError, policySnapshot } from "./http.js";

const NO_STORE = { "cache-control": "no-store" };

/** The mirrors a route can copy to, by the label the counters use, and whether each is compared. */
export function judgedMirrors(route: Route): Map<string, { compared: boolean }> {
  const mirrors = new Map<string, { compared: boolean }>();
  for (const mirror of route.mirrors) mirrors.set(mirrorLabel(mirror), { compared: compareSpec(mirror) !== undefined });
  const chosen = route.mirrorFromHeader;
  if (chosen) {
    const compared = compareSpec(chosen) !== undefined;
    for (const label of chosen.allow) if (!mirrors.has(label)) mirrors.set(label, { compared });
  }
  return mirrors;
}

const quoted = (text: string) => JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);

/** The verdict endpoint. */
export function verdictApi(): Hono<AdminEnv> {
  const verdictApi = new Hono<AdminEnv>();
  verdictApi.get("/", async (c) => {
    const query = c.req.query();
    const routeId = query.route;
    if (!routeId) return jsonError(400, "invalid_query", "route is required: the id of the route to judge");
    let minutes: number;
    try {
      minutes = parseWindow(query.window ?? DEFAULT_WINDOW);
    } catch (err) {
      if (err instanceof WindowError) return jsonError(400, "invalid_query", err.message);
      throw err;
    }
    const namespace = c.env.MIRROR_STATS;
    if (!namespace) {
      return jsonError(503, "stats_unavailable", "no MIRROR_STATS Durable Object binding: add it as in wrangler.toml");
    }
    const policies = await policySnapshot(c);
    const route = policies.routeById.get(routeId);
    if (route === undefined) {
      const key = routeKey(routeId);
      const invalid = policies.invalid.find((entry) => entry.key === key);
      if (invalid === undefined) return jsonError(404, "not_found", `no route ${quoted(routeId)}`);
      return jsonError(
        409,
        "route_invalid",
        `route ${quoted(routeId)} as stored is not valid: ${invalid.error.slice(0, 300)}`,
      );
    }
    const mirrors = judgedMirrors(route);
    let label = query.mirror;
    if (label === undefined || label === "") {
      if (mirrors.size === 0) return jsonError(404, "not_found", `route ${quoted(routeId)} has no mirrors to judge`);
      if (mirrors.size > 1) {
        return jsonError(
          400,
          "mirror_required",
          `route ${quoted(routeId)} has ${mirrors.size} mirrors: name one with mirror= (${[...mirrors.keys()].join(", ")})`,
        );
      }
      label = mirrors.keys().next().value as string;
    }
    const mirror = mirrors.get(label);
    if (!mirror) {
      const known = mirrors.size === 0 ? "none" : [...mirrors.keys()].join(", ");
      return jsonError(
        404,
        "not_found",
        `route ${quoted(routeId)} has no mirror ${quoted(label)} (its mirrors: ${known})`,
      );
    }
    const shards = c.get("admin").statsShards;
    const now = Date.now();
    let read: Awaited<ReturnType<typeof readStats>>;
    try {
      read = await readStats(namespace, shards, minutes, now);
    } catch (err) {
      if (err instanceof StatsUnavailableError) return jsonError(503, "stats_unavailable", err.message);
      throw err;
    }
    const answered = read.shards.filter((s) => s.answered).length;
    const input = verdictInput(
      read.merged.routes.get(route.id)?.mirrors.get(label),
      { minutes: read.minutes, to: now },
      { compared: mirror.compared, shards: { asked: shards, answered } },
    );
    return c.json(decideVerdict(route.id, label, input, thresholdsFor(route, label)), 200, NO_STORE);
  });
  return verdictApi;
}

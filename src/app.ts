/**
 * @module app
 * One request's way through edge-mirror: match → proxy → mirror → record.
 * The client's response depends only on the primary; everything mirror-related is planned
 * without I/O and then handed to `ctx.waitUntil`.
 */

import type { Capture } from "./compare/index.js";
import { UpstreamError } from "./errors/index.js";
import {
  applyHeaderOps,
  forwardableHeaders,
  forwardedFrom,
  HOP_HEADER,
  MAX_HOPS,
  setForwarded,
} from "./headers/index.js";
import { requestFacts } from "./match/index.js";
import type { MirrorBreaker } from "./mirror/breaker.js";
import {
  compareBodyCap,
  type MirrorBody,
  type MirrorPlan,
  planMirrors,
  runMirrors,
  teeForComparison,
} from "./mirror/index.js";
import type { Route } from "./policy/index.js";
import { forwardToPrimary, primaryOrigin, rawPathAndQuery, relayBody } from "./proxy/index.js";
import { analyticsSink } from "./record/analytics.js";
import { fanOut, logSink, type OutcomeSink, parseLogLevel } from "./record/index.js";
import type { StatsBuffer } from "./stats/buffer.js";
import { createStatsBuffer } from "./stats/index.js";
import { PolicyCache, type PolicySnapshot } from "./store/index.js";

/** Primary timeout for unmatched requests: the seeds' Envoy route timeout. */
const DEFAULT_TIMEOUT_MS = 15_000;

let cache: PolicyCache | undefined;

/** One cache per isolate; its TTL comes from the first request's env. */
export function policyCache(env: Env): PolicyCache {
  if (!cache) {
    const ttl = Number(env.POLICY_CACHE_TTL_MS);
    cache = new PolicyCache({ ttlMs: Number.isFinite(ttl) && ttl >= 0 ? ttl : 5000 });
  }
  return cache;
}

let stats: StatsBuffer | undefined;

/** One counter buffer per isolate, flushing to its stats shard. */
function statsBuffer(env: Env): StatsBuffer | undefined {
  stats ??= createStatsBuffer(env);
  return stats;
}

/** Where outcomes and matched requests are recorded. */
interface Recorder {
  outcome: OutcomeSink;
  request: (route: string, mirrored: boolean) => void;
}

/** The log line, the live counters and, when bound, Analytics Engine: all fed the same outcome. */
function defaultRecorder(env: Env, ctx: Pick<ExecutionContext, "waitUntil">): Recorder {
  const waitUntil = (p: Promise<unknown>) => ctx.waitUntil(p);
  const buffer = statsBuffer(env);
  const sinks = [logSink(parseLogLevel(env.LOG_LEVEL))];
  if (buffer) sinks.push(buffer.sink(waitUntil));
  if (env.MIRROR_ANALYTICS) sinks.push(analyticsSink(env.MIRROR_ANALYTICS));
  return {
    outcome: fanOut(sinks),
    request: (route, mirrored) => {
      try {
        buffer?.countRequest(route, mirrored, waitUntil);
      } catch {
        // Counting is best effort, never the client's problem.
      }
    },
  };
}

export interface HandleOptions {
  random?: () => number;
  /** Replaces every default sink (logs, counters, Analytics Engine); requests are then not counted. */
  sink?: OutcomeSink;
  cache?: PolicyCache;
  breaker?: MirrorBreaker;
}

export async function handleRequest(
  request: Request,
  env: Env,
  ctx: Pick<ExecutionContext, "waitUntil">,
  options: HandleOptions = {},
): Promise<Response> {
  const random = options.random ?? Math.random;
  const recorder: Recorder = options.sink ? { outcome: options.sink, request: () => {} } : defaultRecorder(env, ctx);
  const sink = recorder.outcome;
  const url = new URL(request.url);
  const hops = Number.parseInt(request.headers.get(HOP_HEADER) ?? "0", 10) || 0;
  if (hops >= MAX_HOPS) {
    return new UpstreamError(
      "loop_detected",
      `request passed through edge-mirror ${hops} times: the primary points back at this worker; set PRIMARY_ORIGIN or give the route backends`,
    ).toResponse();
  }

  const snapshot = await (options.cache ?? policyCache(env)).get(env.MIRROR_CONFIG, (p) => ctx.waitUntil(p));
  const route = snapshot.routes.find(requestFacts(request, url));

  const headers = forwardableHeaders(request.headers);
  const from = forwardedFrom(request, url);
  setForwarded(headers, from);
  applyHeaderOps(headers, route?.requestHeaders);
  headers.set(HOP_HEADER, String(hops + 1));
  const pathAndQuery = rawPathAndQuery(request.url);

  let origin: string;
  try {
    origin = primaryOrigin(route, snapshot.clusters, env.PRIMARY_ORIGIN, url, random);
  } catch (err) {
    if (err instanceof UpstreamError) return err.toResponse();
    throw err;
  }

  const plan = route ? safePlan(route, request.headers, snapshot, random) : undefined;
  let primaryBody = request.body;
  let mirrorBody: MirrorBody = { kind: "none" };
  if (route && plan && plan.targets.length > 0 && request.body) {
    const declared = Number(request.headers.get("content-length") ?? Number.NaN);
    if (declared > route.maxMirrorBodyBytes) {
      mirrorBody = { kind: "too_large", declared, cap: route.maxMirrorBodyBytes };
    } else {
      const [toPrimary, toMirrors] = request.body.tee();
      primaryBody = toPrimary;
      mirrorBody = { kind: "stream", stream: toMirrors, cap: route.maxMirrorBodyBytes };
    }
  }

  const primary = forwardToPrimary({
    url: origin + pathAndQuery,
    method: request.method,
    headers,
    body: primaryBody ? relayBody(primaryBody, request.headers.get("content-length")) : null,
    timeoutMs: route?.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });

  // Only when a sampled mirror compares is the primary's answer read a second time.
  const compareCap = plan ? compareBodyCap(plan.targets) : undefined;
  const primaryCapture = compareCap === undefined ? undefined : { cap: compareCap, ...deferred<Capture>() };

  if (route) recorder.request(route.id, (plan?.targets.length ?? 0) > 0);
  if (route && plan && (plan.targets.length > 0 || plan.skipped.length > 0)) {
    const requestId = request.headers.get("cf-ray") ?? crypto.randomUUID();
    for (const skip of plan.skipped) {
      sink({ kind: "skipped", route: route.id, requestId, ...skip });
    }
    if (plan.targets.length > 0) {
      ctx.waitUntil(
        runMirrors({
          routeId: route.id,
          requestId,
          method: request.method,
          pathAndQuery,
          headers,
          host: from.host,
          hops,
          targets: plan.targets,
          body: mirrorBody,
          sink,
          ...(options.breaker ? { breaker: options.breaker } : {}),
          ...(primaryCapture ? { primary: primaryCapture.promise } : {}),
        }).catch((err: unknown) =>
          console.error(JSON.stringify({ msg: "edge-mirror.mirror_crashed", error: String(err) })),
        ),
      );
    }
  }

  try {
    const response = await primary;
    if (!primaryCapture) return response;
    const split = teeForComparison(response, primaryCapture.cap);
    primaryCapture.resolve(split.capture);
    // Read even when the compared mirror fails first, so the branch never holds chunks unread.
    ctx.waitUntil(split.capture);
    return split.response;
  } catch (err) {
    primaryCapture?.resolve({ ok: false, error: err instanceof UpstreamError ? err.code : "primary failed" });
    if (err instanceof UpstreamError) return err.toResponse();
    throw err;
  }
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T | Promise<T>) => void } {
  let resolve: (value: T | Promise<T>) => void = () => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Planning is pure, but a bug in it must cost the mirrors, never the client. */
function safePlan(
  route: Route,
  headers: Headers,
  snapshot: PolicySnapshot,
  random: () => number,
): MirrorPlan | undefined {
  try {
    return planMirrors(route, headers, snapshot.clusters, random);
  } catch (err) {
    console.error(JSON.stringify({ msg: "edge-mirror.plan_failed", route: route.id, error: String(err) }));
    return undefined;
  }
}

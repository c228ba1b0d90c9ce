/**
 * @module app
 * One request's way through edge-mirror: match → proxy → mirror → record. Traffic that no
 * route claims (most of a zone's) goes straight to the primary. For a matched route the
 * client's response still depends only on the primary; the copies are planned without I/O and
 * sent inside `ctx.waitUntil`.
 */
import { splitUpload } from "./body/index.js";
import { hopsSoFar, MAX_HOPS } from "./headers/index.js";
import { type Isolate, isolateFor, type Recorder, recorderFor } from "./isolate/index.js";
import { matchRoute } from "./match/index.js";
import type { MirrorBreaker } from "./mirror/breaker.js";
import { planCopies, sendCopies } from "./mirror/index.js";
import { errorResponse, forwardToPrimary, primaryOrigin, primaryRequest, UpstreamError } from "./proxy/index.js";
import type { LogLevel, OutcomeSink } from "./record/index.js";
import type { PolicyCache, PolicySnapshot } from "./store/index.js";

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
  const isolate = isolateFor(env);
  const url = new URL(request.url);
  const hops = hopsSoFar(request.headers);
  if (hops >= MAX_HOPS) return loopDetected(hops, isolate.settings.logLevel);
  const waitUntil = (p: Promise<unknown>) => ctx.waitUntil(p);
  const policies = options.cache ?? isolate.policies;
  const snapshot = policies.fresh(Date.now()) ?? (await loadPolicies(policies, isolate, env, waitUntil));

  // match: most of a zone's requests match no route and go straight to the primary.
  const route = matchRoute(snapshot.routes, request, url);
  const { primaryOrigin: primaryAt, logLevel } = isolate.settings;
  if (!route) {
    const primary = primaryRequest(request, url, primaryAt ?? url.origin, hops, undefined, request.body);
    return forwardToPrimary(primary).catch(UNMATCHED_FAILURE[logLevel]);
  }

  // mirror: which copies, decided before the body is touched (it is split only for them).
  const random = options.random ?? Math.random;
  let origin: string;
  try {
    origin = primaryOrigin(route, snapshot.clusters, primaryAt, url, random);
  } catch (err) {
    return errorResponse(err, route.id, logLevel);
  }
  const planned = planCopies(route, request, url, snapshot.clusters, isolate, random);
  const plan = planned instanceof Promise ? await planned : planned;
  const upload = splitUpload(request, plan.targets.length > 0 ? route.maxMirrorBodyBytes : undefined, isolate.budget);

  // proxy
  const primary = primaryRequest(request, url, origin, hops, route, upload.primary);
  const answer = forwardToPrimary(primary);

  // mirror and record: the copies leave inside waitUntil; the answer is tee'd only when one compares.
  const recorder = options.sink ? sinkOnly(options.sink) : recorderFor(isolate, env, waitUntil);
  const copies = sendCopies({
    route,
    plan,
    request,
    primary,
    host: url.host,
    hops,
    body: upload.mirrors,
    recorder,
    isolate,
    waitUntil,
    breaker: options.breaker,
  });
  return answer.then(copies.answered, copies.failed);
}

/**
 * The policy snapshot, and the deployment's secret with it: an isolate's first request waits for
 * both at once, so that the secret costs the hot path nothing and sticky sampling has its key
 * from the first request on. Later calls re-read the secret now and then, in the background.
 */
async function loadPolicies(
  policies: PolicyCache,
  isolate: Isolate,
  env: Env,
  waitUntil: (p: Promise<unknown>) => void,
): Promise<PolicySnapshot> {
  const [snapshot] = await Promise.all([
    policies.get(env.MIRROR_CONFIG, waitUntil),
    isolate.secret.load(env.MIRROR_CONFIG, waitUntil),
  ]);
  return snapshot;
}

/**
 * The client-facing error for traffic no route claims, its detail logged: one function per log
 * level, made once, so that no request makes its own.
 */
const UNMATCHED_FAILURE: Record<LogLevel, (err: unknown) => Response> = {
  debug: (err) => errorResponse(err, undefined, "debug"),
  info: (err) => errorResponse(err, undefined, "info"),
  off: (err) => errorResponse(err, undefined, "off"),
};

/** Tests' own sink: every outcome, no counters. */
function sinkOnly(outcome: OutcomeSink): Recorder {
  return { outcome, request: () => {} };
}

function loopDetected(hops: number, level: LogLevel): Response {
  const loop = new UpstreamError(
    "loop_detected",
    `request passed through edge-mirror ${hops} times: the primary points back at this worker; set PRIMARY_ORIGIN or give the route backends`,
  );
  return errorResponse(loop, undefined, level);
}

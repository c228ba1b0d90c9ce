/**
 * @module app
 * One request's way through edge-mirror: match → proxy → mirror → record. Traffic that no
 * route claims (most of a zone's) goes straight to the primary. For a matched route the
 * client's response still depends only on the primary; the copies are planned without I/O and
 * sent inside `ctx.waitUntil`.
 */
import { splitUpload } from "./body/index.js";
import { UpstreamError } from "./errors/index.js";
import { hopsSoFar, MAX_HOPS } from "./headers/index.js";
import { isolateFor, recorderFor } from "./isolate/index.js";
import { matchRoute } from "./match/index.js";
import type { MirrorBreaker } from "./mirror/breaker.js";
import { planCopies, sendCopies } from "./mirror/index.js";
import { errorResponse, forwardToPrimary, primaryOrigin, primaryRequest } from "./proxy/index.js";
import type { OutcomeSink } from "./record/index.js";
import type { PolicyCache } from "./store/index.js";

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
  if (hops >= MAX_HOPS) return loopDetected(hops);
  const waitUntil = (p: Promise<unknown>) => ctx.waitUntil(p);
  const policies = options.cache ?? isolate.policies;
  const snapshot = policies.fresh(Date.now()) ?? (await policies.get(env.MIRROR_CONFIG, waitUntil));

  const route = matchRoute(snapshot.routes, request, url);
  if (!route) {
    const origin = isolate.settings.primaryOrigin ?? url.origin;
    return forwardToPrimary(primaryRequest(request, url, origin, hops, undefined, request.body)).catch(errorResponse);
  }

  const random = options.random ?? Math.random;
  let origin: string;
  try {
    origin = primaryOrigin(route, snapshot.clusters, isolate.settings.primaryOrigin, url, random);
  } catch (err) {
    return errorResponse(err);
  }
  const plan = await planCopies(route, request, url, snapshot.clusters, isolate, random);
  const upload = splitUpload(request, plan.targets.length > 0 ? route.maxMirrorBodyBytes : undefined);
  const primary = primaryRequest(request, url, origin, hops, route, upload.primary);
  const answer = forwardToPrimary(primary);

  const recorder = options.sink ? { outcome: options.sink, request: () => {} } : recorderFor(isolate, env, waitUntil);
  const copies = sendCopies({
    route,
    plan,
    request,
    headers: primary.headers,
    host: url.host,
    hops,
    body: upload.mirrors,
    recorder,
    isolate,
    waitUntil,
    breaker: options.breaker,
  });
  return answer.then(copies.answered, (err: unknown) => {
    copies.primaryFailed(err);
    return errorResponse(err);
  });
}

function loopDetected(hops: number): Response {
  return new UpstreamError(
    "loop_detected",
    `request passed through edge-mirror ${hops} times: the primary points back at this worker; set PRIMARY_ORIGIN or give the route backends`,
  ).toResponse();
}

/**
 * @module app
 * One request's way through edge-mirror: match → proxy → mirror → record. Traffic that no
 * route claims (most of a zone's) goes straight to the primary. For a matched route the
 * client's response still depends only on the primary; the copies are planned without I/O and
 * sent inside `ctx.waitUntil`. The request owns the primary's answer: when a copy compares, it is
 * tee'd here, and the copies get the comparison's read of it, never the answer itself.
 */
import type { Hold } from "./body/budget.js";
import { splitUpload, teeForComparison } from "./body/index.js";
import type { Capture } from "./compare/index.js";
import { hopsSoFar, MAX_HOPS } from "./headers/index.js";
import type { IsolateState } from "./isolate/index.js";
import { matchRoute } from "./match/index.js";
import { compareBodyCap, planCopies, recordSkips, sendCopies } from "./mirror/index.js";
import { chooseBackend, errorResponse, forwardToPrimary, primaryRequest, UpstreamError } from "./proxy/index.js";
import type { LogLevel } from "./record/index.js";
import type { PolicySnapshot } from "./store/index.js";
import { rawPathAndQuery } from "./url/index.js";

export async function handleRequest(
  request: Request,
  state: IsolateState,
  ctx: Pick<ExecutionContext, "waitUntil">,
): Promise<Response> {
  const url = new URL(request.url);
  const hops = hopsSoFar(request.headers);
  const { defaultOrigin, logLevel } = state.settings;
  if (hops >= MAX_HOPS) return loopDetected(hops, logLevel);
  const waitUntil = (p: Promise<unknown>) => ctx.waitUntil(p);
  const snapshot = state.policies.fresh(Date.now()) ?? (await loadPolicies(state, waitUntil));

  // match: most of a zone's requests match no route and go straight to the primary.
  const route = matchRoute(snapshot.routes, request, url);
  if (!route) {
    const primary = primaryRequest({ request, url, origin: defaultOrigin ?? url.origin, hops, body: request.body });
    return forwardToPrimary(primary).catch(UNMATCHED_FAILURE[logLevel]);
  }

  // mirror: which copies, decided before the body is touched (it is split only for them).
  const random = state.random;
  let origin: string;
  try {
    origin = chooseBackend(route, snapshot.clusters, defaultOrigin, url, random);
  } catch (err) {
    return errorResponse(err, route.id, logLevel);
  }
  const planned = planCopies(route, request, url, snapshot.clusters, state.secret, random);
  const plan = planned instanceof Promise ? await planned : planned;
  const { targets } = plan;
  const upload = splitUpload(request, targets.length > 0 ? route.maxMirrorBodyBytes : undefined, state.budget);

  // proxy
  const primary = primaryRequest({ request, url, origin, hops, route, body: upload.primary });
  const answer = forwardToPrimary(primary);
  const failed = (err: unknown) => errorResponse(err, route.id, logLevel);

  // record, and the copies inside waitUntil.
  const recorder = state.recorder(waitUntil);
  recorder.countRequest(route.id, targets.length > 0);
  if (targets.length === 0 && plan.skipped.length === 0) return answer.catch(failed);
  const requestId = request.headers.get("cf-ray") ?? crypto.randomUUID();
  recordSkips(plan.skipped, route.id, requestId, recorder.outcome);
  if (targets.length === 0) return answer.catch(failed);

  // Only when a sampled mirror compares is the primary's answer read a second time.
  const compareCap = compareBodyCap(targets);
  const compared = compareCap === undefined ? undefined : teeWhenAnswered(answer, compareCap, state.budget.hold());
  sendCopies(
    {
      routeId: route.id,
      requestId,
      method: request.method,
      pathAndQuery: rawPathAndQuery(request.url),
      headers: primary.request.headers,
      host: url.host,
      hops,
      targets,
      markedBodyDigest: plan.markedBodyDigest,
      body: upload.mirrors,
      sink: recorder.outcome,
      breaker: state.breaker,
      noise: state.noise,
      secret: state.secret,
      budget: state.budget,
      spool: state.spool,
      primary: compared && { capture: compared.capture, hold: compared.hold },
    },
    waitUntil,
  );
  if (!compared) return answer.catch(failed);
  // Read even when the compared mirror fails first, so that the branch never holds chunks unread.
  waitUntil(compared.capture);
  return compared.response.catch(failed);
}

/**
 * The primary's answer, once it comes, split: the client's branch streams untouched while the
 * other is read, up to `cap` and within `hold`, for comparison (`teeForComparison`). A primary
 * that failed leaves the comparison its error code to report.
 */
function teeWhenAnswered(
  answer: Promise<Response>,
  cap: number,
  hold: Hold,
): { response: Promise<Response>; capture: Promise<Capture>; hold: Hold } {
  const split = answer.then((response) => teeForComparison(response, cap, hold));
  return {
    response: split.then((teed) => teed.response),
    capture: split.then(
      (teed) => teed.capture,
      (err: unknown): Capture => ({ ok: false, error: err instanceof UpstreamError ? err.code : "primary failed" }),
    ),
    hold,
  };
}

/**
 * The policy snapshot, and the deployment's secret with it: an isolate's first request waits for
 * both at once, so that the secret costs the hot path nothing and sticky sampling has its key
 * from the first request on. Later calls re-read the secret now and then, in the background.
 */
async function loadPolicies(state: IsolateState, waitUntil: (p: Promise<unknown>) => void): Promise<PolicySnapshot> {
  const [snapshot] = await Promise.all([
    state.policies.get(state.kv, waitUntil),
    state.secret.load(state.kv, waitUntil),
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

function loopDetected(hops: number, level: LogLevel): Response {
  const loop = new UpstreamError(
    "loop_detected",
    `request passed through edge-mirror ${hops} times: the primary points back at this worker; set PRIMARY_ORIGIN or give the route backends`,
  );
  return errorResponse(loop, undefined, level);
}

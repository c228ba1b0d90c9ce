/**
 * @module app
 * One request's way through edge-mirror: match → proxy → mirror → record. Traffic that no
 * route claims (most of a zone's) goes straight to the primary. For a matched route the
 * client's response still depends only on the primary; the copies are planned without I/O and
 * sent inside `ctx.waitUntil`. The request owns the primary's answer: when a copy compares, it is
 * tee'd here, and the copies get the comparison's read of it, never the answer itself; a route
 * that captures has a sample of its requests recorded, with the primary's answers, to R2
 * (src/capture), through the same tee. For a request with copies, the primary's status and time
 * to response headers are handed to the copies (one promise on the answer), so that each copy's
 * outcome carries them beside its own (the release verdict's two sides).
 */
import type { Hold } from "./body/budget.js";
import { splitUpload, teeForComparison } from "./body/index.js";
import { type Capturing, startCapture } from "./capture/index.js";
import type { Capture } from "./compare/index.js";
import { hopsSoFar, MAX_HOPS } from "./headers/index.js";
import type { IsolateState } from "./isolate/index.js";
import { matchRoute } from "./match/index.js";
import { compareBodyCap, planCopies, recordSkips, sendCopies } from "./mirror/index.js";
import {
  chooseBackend,
  errorResponse,
  forwardToPrimary,
  type PrimaryRequest,
  primaryRequest,
  UpstreamError,
} from "./proxy/index.js";
import type { LogLevel, PrimaryAnswer } from "./record/index.js";
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
  // capture: sampled before anything is read; undefined for routes without capture and unsampled requests.
  const capture = route.capture && startCapture(route, route.capture, request, url, upload.primary, state, random);

  // proxy
  const primary = primaryRequest({ request, url, origin, hops, route, body: capture ? capture.body : upload.primary });
  // Timed only for a request with copies: their outcomes carry it (see the header).
  const recordPrimary = targets.length > 0 && state.recordPrimary;
  const primaryStarted = recordPrimary ? Date.now() : 0;
  const answer = forwardToPrimary(primary);
  const failed = (err: unknown) => errorResponse(err, route.id, logLevel);

  // record, and the copies inside waitUntil.
  const recorder = state.recorder(waitUntil);
  recorder.countRequest(route.id, targets.length > 0);
  if (targets.length === 0 && plan.skipped.length === 0 && !capture) return answer.catch(failed);
  const requestId = request.headers.get("cf-ray") ?? crypto.randomUUID();
  recordSkips(plan.skipped, route.id, requestId, recorder.outcome);

  // The primary's answer is read a second time only when a sampled mirror compares or capture
  // records it: one tee serves both.
  const compareCap = targets.length > 0 ? compareBodyCap(targets) : undefined;
  const compare = compareCap === undefined ? undefined : { cap: compareCap, hold: state.budget.hold() };
  const read = readAnswer(answer, compare, capture, primary, waitUntil);
  if (targets.length > 0) {
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
        primary: read.compared && compare && { capture: read.compared, hold: compare.hold },
        primaryAnswer: recordPrimary
          ? answer.then(
              (response): PrimaryAnswer => ({ status: response.status, latencyMs: Date.now() - primaryStarted }),
              (): PrimaryAnswer => ({ status: null, latencyMs: Date.now() - primaryStarted }),
            )
          : undefined,
      },
      waitUntil,
    );
  }
  // Read even when the compared mirror fails first, so that the branch never holds chunks unread.
  if (read.compared) waitUntil(read.compared);
  return read.response.catch(failed);
}

/**
 * The primary's answer as the client gets it and, when a sampled mirror compares, as the
 * comparison reads it: through capture's tee when the request is captured, else through one of
 * its own (`teeForComparison`), else untouched.
 */
function readAnswer(
  answer: Promise<Response>,
  compare: { cap: number; hold: Hold } | undefined,
  capture: Capturing | undefined,
  primary: PrimaryRequest,
  waitUntil: (promise: Promise<unknown>) => void,
): { response: Promise<Response>; compared?: Promise<Capture> } {
  if (capture) return capture.follow(answer, primary, waitUntil, compare);
  if (!compare) return { response: answer };
  const split = answer.then((response) => teeForComparison(response, compare.cap, compare.hold));
  return {
    response: split.then((teed) => teed.response),
    compared: split.then((teed) => teed.capture, primaryFailed),
  };
}

/** What a comparison reads of a primary that gave no answer. */
function primaryFailed(err: unknown): Capture {
  return { ok: false, error: err instanceof UpstreamError ? err.code : "primary failed" };
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

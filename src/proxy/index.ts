/**
 * @module proxy
 * The primary leg: choose the origin (weighted backends, PRIMARY_ORIGIN, or the request URL),
 * build the primary's headers, forward with the path and query byte-exact, and turn timeouts
 * and network failures into 504/502. Nothing mirror-related ever runs here. A WebSocket
 * handshake passes through: its 101 and socket go back to the client as the primary gave them
 * (`dropUnforwardable` keeps `Upgrade` and `Connection` for it, and for nothing else: any other
 * request with them would leave as a WebSocket GET without its body).
 */
import { AnswerLostError, isBodyless, type RelayedBody, relayBody } from "../body/index.js";
import { applyHeaderOps, dropUnforwardable, forwardedFrom, HOP_HEADER, setForwarded } from "../headers/index.js";
import type { Backend, Route } from "../policy/index.js";
import type { LogLevel } from "../record/index.js";
import { rawPathAndQuery } from "../url/index.js";
import { UpstreamError } from "./errors.js";

export { UpstreamError, type UpstreamFailure } from "./errors.js";

/** HTTPRoute-style weighted choice; weight 0 backends never receive traffic. */
export function pickBackend(backends: readonly Backend[], random: () => number): Backend | undefined {
  let total = 0;
  for (const b of backends) total += b.weight;
  if (total <= 0) return undefined;
  let point = random() * total;
  for (const b of backends) {
    point -= b.weight;
    if (point < 0 && b.weight > 0) return b;
  }
  return backends.findLast((b) => b.weight > 0);
}

/**
 * The origin of the backend the primary leg goes to, or an `UpstreamError` the client will see.
 * `defaultOrigin` is PRIMARY_ORIGIN already reduced to an origin (see `isolate`): the default
 * primary, which also serves a backend whose cluster is not defined (deleted, or not written
 * yet) rather than a 500 on every request of its route; the policy snapshot logs that backend
 * once (see `store`). Only a route whose every weight is 0 has no backend at all, as Gateway API
 * requires.
 */
export function chooseBackend(
  route: Route | undefined,
  clusters: ReadonlyMap<string, string>,
  defaultOrigin: string | undefined,
  requestUrl: URL,
  random: () => number,
): string {
  if (route?.backends) {
    const backend = pickBackend(route.backends, random);
    if (!backend) throw new UpstreamError("no_backend", `route "${route.id}" has no backend with weight > 0`);
    if (backend.origin !== undefined) return backend.origin;
    const origin = clusters.get(backend.cluster as string);
    if (origin !== undefined) return origin;
  }
  return defaultOrigin || requestUrl.origin;
}

/** What the primary leg is made of. */
export interface PrimaryLeg {
  /** The client's request, whose headers the primary's start from. */
  request: Request;
  /** `request.url`, parsed once for the whole request path. */
  url: URL;
  /** Where the primary is (`chooseBackend`, or the default origin for traffic no route claims). */
  origin: string;
  /** Times the request has passed through edge-mirror before (`hopsSoFar`). */
  hops: number;
  /** The matched route, for its timeout and header changes; undefined for traffic no route claims. */
  route?: Route | undefined;
  /** The client's body, or the primary's branch of it when it was split for the copies. */
  body: ReadableStream | null;
}

/**
 * What the primary is sent: the client's headers minus hop-by-hop and Cloudflare's own, the
 * X-Forwarded-* set, the route's header changes, and the hop count that ends a loop through
 * this worker. The client's body is relayed (see `relayBody`).
 *
 * The request is built here, once, from the client's own `Headers`: the runtime copies them in
 * one step and `fetch` takes the built request as it is. (A `Headers` assembled field by field,
 * then handed to `fetch`, was copied twice and cost the unmatched path most of its overhead.)
 */
export function primaryRequest({ request, url, origin, hops, route, body }: PrimaryLeg): PrimaryRequest {
  const method = request.method;
  const target = origin + rawPathAndQuery(request.url);
  // Traffic no route claims keeps the zone's own timeouts: edge-mirror adds none of its own.
  const deadline = route?.timeoutMs === undefined ? undefined : { ms: route.timeoutMs, abort: new AbortController() };
  const init: RequestInit = { headers: request.headers, redirect: "manual" };
  if (deadline) init.signal = deadline.abort.signal;
  let relayed: RelayedBody | null = null;
  let sent: Request;
  let derivedTarget: string | undefined;
  if (body && isBodyless(method)) {
    // A GET or HEAD that arrived with a body: only a request derived from the incoming one may
    // carry it on (and only if it is not told its method again); it keeps the incoming URL, so
    // `fetch` is told the target.
    sent = new Request(request, init);
    derivedTarget = target;
  } else {
    if (body) relayed = relayBody(body, request.headers.get("content-length"));
    init.method = method;
    init.body = relayed?.stream ?? null;
    sent = new Request(target, init);
  }
  const headers = sent.headers;
  const carried = dropUnforwardable(headers, method);
  setForwarded(headers, forwardedFrom(request, url), carried);
  applyHeaderOps(headers, route?.requestHeaders);
  headers.set(HOP_HEADER, String(hops + 1));
  return { request: sent, target: derivedTarget, body: relayed, deadline };
}

/**
 * After the primary fails, how long the rest of the client's upload may pause while it is read
 * and dropped (nginx's `lingering_timeout`); after an early answer, how long the relay may wait
 * for a primary that stopped reading.
 */
export const DRAIN_AFTER_FAILURE_MS = 5_000;

export interface PrimaryRequest {
  /** What `fetch` is given, as it is; its headers are where the mirrors' copies start from. */
  request: Request;
  /**
   * Set only for a GET or HEAD that carries a body: `request` is then derived from the client's
   * and keeps its URL, and `fetch` sends it here.
   */
  target?: string | undefined;
  body: RelayedBody | null;
  /**
   * Time allowed for the primary's response headers, and what aborts the request when it
   * passes; undefined leaves it to the platform.
   */
  deadline: { ms: number; abort: AbortController } | undefined;
}

/**
 * Resolves with the primary's response as soon as its headers arrive; the body then streams
 * to the client untouched. The timeout covers the wait for those headers. Failures reject with
 * an `UpstreamError`, after the rest of the client's upload has been read and dropped so that
 * its connection survives; so does an answer given before the upload was read and then lost
 * (see `RelayedBody.answered`).
 */
export function forwardToPrimary(req: PrimaryRequest): Promise<Response> {
  const { deadline } = req;
  if (!deadline) {
    const sent = send(req).catch((err) => failed(req, err, false));
    return req.body ? sent.then((response) => handedOn(req, response)) : sent;
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    deadline.abort.abort();
  }, deadline.ms);
  return send(req).then(
    (response) => {
      clearTimeout(timer);
      return handedOn(req, response);
    },
    (err) => {
      clearTimeout(timer);
      return failed(req, err, timedOut);
    },
  );
}

function send(req: PrimaryRequest): Promise<Response> {
  return req.target === undefined ? fetch(req.request) : fetch(req.target, req.request);
}

/** The primary's answer as the client gets it: held while a relayed upload is finished (see `RelayedBody.answered`). */
function handedOn(req: PrimaryRequest, response: Response): Response | Promise<Response> {
  if (!req.body) return response;
  const answer = req.body.answered(response, DRAIN_AFTER_FAILURE_MS);
  return answer instanceof Promise ? answer.catch(answerLost) : answer;
}

/** A small answer lost with its connection is, for the client, a primary that could not be reached. */
function answerLost(err: unknown): never {
  if (err instanceof AnswerLostError) throw new UpstreamError("primary_unreachable", err.message);
  throw err;
}

async function failed(req: PrimaryRequest, err: unknown, timedOut: boolean): Promise<never> {
  await req.body?.discardRest(DRAIN_AFTER_FAILURE_MS);
  if (timedOut) throw new UpstreamError("primary_timeout", `primary did not answer within ${req.deadline?.ms} ms`);
  throw new UpstreamError("primary_unreachable", `primary unreachable: ${(err as Error).message ?? String(err)}`);
}

/**
 * The client's answer for a failed primary leg: the failure's status and a short JSON error with
 * a fixed message. What went wrong in detail (a fetch error's text, the route) goes to the log,
 * never to the client: one `edge-mirror.primary_failed` line, unless LOG_LEVEL is `off`. `route`
 * is the matched route's id, undefined for traffic no route claims.
 */
export function errorResponse(err: unknown, route: string | undefined, level: LogLevel): Response {
  if (!(err instanceof UpstreamError)) throw err;
  if (level !== "off") {
    console.error(
      JSON.stringify({
        msg: "edge-mirror.primary_failed",
        route,
        code: err.code,
        status: err.status,
        detail: err.message,
      }),
    );
  }
  return err.toResponse();
}

/**
 * H, the floor a correct proxy cannot go below: the bench's floor (A) plus the changes edge-mirror
 * makes to the primary's headers for traffic no route claims — hop-by-hop fields and the edge's
 * `cf-*` fields out, `X-Forwarded-*` and the hop count in — made with edge-mirror's own functions.
 * edge-mirror's unmatched path (B) ÷ H is what the rest of its code costs: the admin and loop
 * checks, the policy snapshot, the route lookup, the target and the promise chain.
 */
import { dropUnforwardable, forwardedFrom, HOP_HEADER, setForwarded } from "../../src/headers/index.js";

export default {
  fetch(request: Request, env: Env) {
    const url = new URL(request.url);
    const sent = new Request(env.PRIMARY_ORIGIN + url.pathname + url.search, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      redirect: "manual",
    });
    const headers = sent.headers;
    const carried = dropUnforwardable(headers, request.method);
    setForwarded(headers, forwardedFrom(request, url), carried);
    headers.set(HOP_HEADER, "1");
    return fetch(sent);
  },
} satisfies ExportedHandler<Env>;

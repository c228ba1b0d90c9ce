/**
 * Entry for `npm run bench -- --mode paired`: the bench's floor, the floor with the header changes a
 * proxy must make, and edge-mirror (the real worker) in one isolate. Requests under `/floor/`
 * go to the floor, under `/floor-headers/` to the floor with headers, all others to
 * edge-mirror, so that the handlers run in the same process, heap and code cache, and only
 * the handler differs.
 */

import { dropUnforwardable, forwardedFrom, HOP_HEADER, setForwarded } from "../../src/headers/index.js";
import edgeMirror from "../../src/index.js";
import floor from "./floor.mjs";

export { MirrorStatsShard } from "../../src/index.js";

/** The floor's requests: their path starts here. */
const FLOOR_PREFIX = "/floor/";
/** The floor-with-headers' requests: their path starts here. */
const FLOOR_HEADERS_PREFIX = "/floor-headers/";

/**
 * The floor plus what edge-mirror changes on the primary's headers for traffic no route
 * claims (hop-by-hop and the edge's `cf-*` fields out, X-Forwarded-* and the hop count in), with
 * edge-mirror's own functions: edge-mirror ÷ this is what the rest of its code costs.
 */
const floorWithHeaders = {
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
};

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const url = request.url;
    const path = url.indexOf("/", url.indexOf("//") + 2);
    if (url.startsWith(FLOOR_PREFIX, path)) return floor.fetch(request, env, ctx);
    if (url.startsWith(FLOOR_HEADERS_PREFIX, path)) return floorWithHeaders.fetch(request, env);
    return edgeMirror.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;

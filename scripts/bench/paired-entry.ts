/**
 * Entry for `npm run bench -- --mode paired`: the bench's floor, the floor with the header changes a
 * proxy must make, and edge-mirror (the real worker) in one isolate. Requests under `/floor/`
 * go to the floor, under `/floor-headers/` to the floor with headers, all others to
 * edge-mirror, so that the handlers run in the same process, heap and code cache, and only
 * the handler differs.
 */

import edgeMirror from "../../src/index.js";
import floor from "./floor.mjs";
import floorWithHeaders from "./floor-headers.js";

export { MirrorStatsShard } from "../../src/index.js";

/** The floor's requests: their path starts here. */
const FLOOR_PREFIX = "/floor/";
/** The floor-with-headers' requests: their path starts here. */
const FLOOR_HEADERS_PREFIX = "/floor-headers/";

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const url = request.url;
    const path = url.indexOf("/", url.indexOf("//") + 2);
    if (url.startsWith(FLOOR_PREFIX, path)) return floor.fetch(request, env, ctx);
    if (url.startsWith(FLOOR_HEADERS_PREFIX, path)) return floorWithHeaders.fetch(request, env);
    return edgeMirror.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;

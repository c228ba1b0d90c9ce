/**
 * Entry for `npm run bench:paired`: the bench's floor and edge-mirror (the real worker) in one
 * isolate. Requests under `/floor/` go to the floor, all others to edge-mirror, so that both
 * handlers run in the same process, heap and code cache, and only the handler differs.
 */

import edgeMirror from "../../src/index.js";
import floor from "./floor.mjs";

export { MirrorStatsShard } from "../../src/index.js";

/** The floor's requests: their path starts here. */
const FLOOR_PREFIX = "/floor/";

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const url = request.url;
    const path = url.indexOf("/", url.indexOf("//") + 2);
    if (url.startsWith(FLOOR_PREFIX, path)) return floor.fetch(request, env, ctx);
    return edgeMirror.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;

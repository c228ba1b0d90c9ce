/**
 * Entry for `npm run bench -- --mode paired`: the bench's floor, the floor with the header changes a
 * proxy must make, and edge-mirror (the real worker) in one isolate. Requests under `/floor/`
 * go to the floor, under `/floor-headers/` to the floor with headers, all others to
 * edge-mirror, so that the handlers run in the same process, heap and code cache, and only
 * the handler differs. Under `/pair-unrecorded/` is edge-mirror built not to record the primary's
 * status and latency beside each copy's (`--set verdict`: what that recording costs). Under
 * `/floor-three/` is the floor that also sends three copies and cancels their answers (A3), under
 * `/floor-three-read/` the same reading them to the end (A3r): `--set mirrors`.
 */

import edgeMirror, { createWorker } from "../../src/index.js";
import floor from "./floor.mjs";
import floorWithHeaders from "./floor-headers.js";

export { MirrorStatsShard } from "../../src/index.js";

/** The floor's requests: their path starts here. */
const FLOOR_PREFIX = "/floor/";
/** The floor-with-headers' requests: their path starts here. */
const FLOOR_HEADERS_PREFIX = "/floor-headers/";
/** Requests for the worker that does not record the primary's answer: their path starts here. */
const UNRECORDED_PREFIX = "/pair-unrecorded/";
/** The floor with three copies whose answers it cancels (A3), and reads (A3r): their paths start here. */
const FLOOR_THREE_PREFIX = "/floor-three/";
const FLOOR_THREE_READ_PREFIX = "/floor-three-read/";
const unrecorded = createWorker({ recordPrimary: false });

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const url = request.url;
    const path = url.indexOf("/", url.indexOf("//") + 2);
    if (url.startsWith(FLOOR_PREFIX, path)) return floor.fetch(request, env, ctx);
    if (url.startsWith(FLOOR_HEADERS_PREFIX, path)) return floorWithHeaders.fetch(request, env);
    if (url.startsWith(FLOOR_THREE_PREFIX, path)) return floor.fetch(request, { ...env, MIRROR_COUNT: "3" }, ctx);
    if (url.startsWith(FLOOR_THREE_READ_PREFIX, path)) {
      return floor.fetch(request, { ...env, MIRROR_COUNT: "3", MIRROR_READ: "1" }, ctx);
    }
    if (url.startsWith(UNRECORDED_PREFIX, path)) return unrecorded.fetch(request, env, ctx);
    return edgeMirror.fetch(request, env, ctx);
  },
} satisfies ExportedHandler<Env>;

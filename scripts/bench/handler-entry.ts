/**
 * Entry for `npm run bench -- --mode handler`: runs a worker's own request handler `HANDLER_REPEATS` times
 * per request with `fetch` answered in place, then answers the request itself. The network,
 * HTTP parsing and Miniflare's entry worker cost the same whether a handler runs once or a
 * thousand times, so the CPU time a repeat adds is the handler's own, measured far above the
 * machine's noise. `HANDLER` picks edge-mirror (the real worker) or the bench's floor.
 */

import edgeMirror from "../../src/index.js";
import floor from "./floor.mjs";

export { MirrorStatsShard } from "../../src/index.js";

interface HandlerEnv extends Env {
  HANDLER: "edge-mirror" | "floor";
  HANDLER_REPEATS: string;
}

/**
 * `fetch` answered in place. It still turns its arguments into a request as workerd's does (a
 * `Request` given alone is taken as it is; anything else is built into one, headers copied),
 * since that work is part of what a handler's way of calling `fetch` costs.
 */
async function answered(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const request = input instanceof Request && init === undefined ? input : new Request(input, init);
  return new Response(null, { status: request.method === "GET" ? 204 : 200 });
}

export default {
  async fetch(request: Request, env: HandlerEnv, ctx: ExecutionContext) {
    const handler = env.HANDLER === "floor" ? floor : edgeMirror;
    const repeats = Number(env.HANDLER_REPEATS);
    // For the isolate's whole life, not only while the handler runs: copies are sent from
    // waitUntil, after the handler has answered, and must not reach the network either.
    globalThis.fetch = answered;
    let statuses = 0;
    for (let i = 0; i < repeats; i++) statuses += (await handler.fetch(request, env, ctx)).status;
    return new Response(String(statuses));
  },
} satisfies ExportedHandler<HandlerEnv>;

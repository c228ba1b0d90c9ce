import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { vi } from "vitest";
import { handleRequest } from "../../src/app.js";
import type { MirrorOutcome } from "../../src/record/index.js";
import { PolicyCache } from "../../src/store/index.js";
import { clusterKey, routeKey } from "../../src/store/keys.js";

export interface SeenRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

export type Responder = (req: Request) => Response | Promise<Response>;

/**
 * Replaces the worker's outbound fetch with per-origin responders and records every request
 * (bodies read in full) so that tests can compare what the primary and each mirror received.
 */
export function interceptFetch(responders: Record<string, Responder>) {
  const seen: SeenRequest[] = [];
  const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init as RequestInit);
    const origin = new URL(req.url).origin;
    const body = new Uint8Array(await req.arrayBuffer());
    seen.push({ url: req.url, method: req.method, headers: Object.fromEntries(req.headers), body });
    const responder = responders[origin];
    if (!responder) throw new TypeError(`fetch failed: no responder for ${origin}`);
    return responder(new Request(req, { body: body.byteLength ? body : null }));
  });
  return {
    seen,
    to: (origin: string) => seen.filter((s) => s.url.startsWith(origin)),
    restore: () => spy.mockRestore(),
  };
}

export async function putPolicies(policies: { clusters?: Record<string, string>; routes?: object[] }) {
  for (const [name, origin] of Object.entries(policies.clusters ?? {})) {
    await env.MIRROR_CONFIG.put(clusterKey(name), JSON.stringify({ origin }));
  }
  for (const route of policies.routes ?? []) {
    await env.MIRROR_CONFIG.put(routeKey((route as { id: string }).id), JSON.stringify(route));
  }
}

export function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  return bytes;
}

/**
 * Runs one request through `handleRequest` with a fresh policy cache, collects its mirror
 * outcomes into `outcomes`, reads the whole answer and waits for the `waitUntil` work.
 */
export async function sendThrough(
  request: Request,
  environment: Env,
  outcomes: MirrorOutcome[],
  random: () => number = () => 0,
): Promise<{ response: Response; body: Uint8Array }> {
  const ctx = createExecutionContext();
  const response = await handleRequest(request, environment, ctx, {
    sink: (o) => outcomes.push(o),
    cache: new PolicyCache({ ttlMs: 0, log: () => {} }),
    random,
  });
  const body = new Uint8Array(await response.arrayBuffer());
  await waitOnExecutionContext(ctx);
  return { response, body };
}

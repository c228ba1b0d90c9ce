/**
 * @module edge-mirror
 * Worker entry point and composition root: every request is answered from the primary origin
 * and, where a route policy in KV says so, copied to mirror origins inside `ctx.waitUntil`.
 * Requests under the admin prefix go to the admin surface (a Hono app) instead and are never
 * proxied or mirrored. The zone's own traffic does not go through a router: one string check
 * sends it on its way (with ADMIN_HOST set, a check of the host first, which sends other hosts'
 * traffic on sooner).
 *
 * `createWorker` builds the worker; the isolate's state (src/isolate) is built from the first
 * env the worker sees and kept in the worker's closure, one per env object: the runtime passes
 * one per isolate, and a test that passes its own gets a state of its own. Each request then
 * costs one WeakMap lookup. Nothing is kept at module level. The cron trigger (`scheduled`)
 * publishes the policies when KV holds others than those published: edits made straight in KV.
 *
 * `queue` is the spool's consumer: it redelivers durable copies that were not delivered inline
 * (mirror/redeliver), with the same isolate state, so its outcomes reach the same counters.
 */
import { createAdminApp } from "./admin/index.js";
import { adminRequest } from "./admin/paths.js";
import { handleRequest } from "./app.js";
import { buildIsolate, type IsolateOptions, type IsolateState } from "./isolate/index.js";
import { redeliver } from "./mirror/redeliver.js";
import { kvPolicyStore } from "./store/policy-store.js";
import { reconcilePolicies } from "./store/publish.js";

/** What a worker may be built with instead of the runtime's defaults (tests: their own draws and sinks). */
export type WorkerOptions = IsolateOptions;

export interface EdgeMirrorWorker {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response>;
  /** The cron trigger: publishes the policies when KV holds other ones than published (store/publish). */
  scheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext): void;
  /** Redelivers a batch of spooled copies (or sends dead ones again, read from the dead-letter queue). */
  queue(batch: MessageBatch, env: Env, ctx: ExecutionContext): Promise<void>;
  /** The state this worker keeps for `env`, built on first use: what tests and benchmarks read. */
  isolate(env: Env): IsolateState;
}

export function createWorker(options: WorkerOptions = {}): EdgeMirrorWorker {
  const states = new WeakMap<Env, IsolateState>();
  const isolate = (env: Env): IsolateState => {
    let state = states.get(env);
    if (state === undefined) {
      state = buildIsolate(env, options);
      states.set(env, state);
    }
    return state;
  };
  const admin = createAdminApp((env) => isolate(env).admin);
  return {
    fetch(request, env, ctx) {
      const state = isolate(env);
      const { adminPrefix, adminHost } = state.settings;
      const forAdmin = adminRequest(request, adminPrefix, adminHost);
      if (forAdmin) return admin.fetch(forAdmin, env, ctx);
      return handleRequest(request, state, ctx);
    },
    scheduled(controller, env, ctx) {
      if (!env.MIRROR_CONFIG) return;
      ctx.waitUntil(reconcilePolicies(kvPolicyStore(env.MIRROR_CONFIG), controller.scheduledTime, options.policyLog));
    },
    async queue(batch, env, ctx) {
      const state = isolate(env);
      const waitUntil = (promise: Promise<unknown>) => ctx.waitUntil(promise);
      const secret = state.secret;
      await secret.load(state.kv, waitUntil);
      await redeliver(batch, {
        spool: state.spool,
        signingKey: () => secret.signingKey(),
        sink: state.recorder(waitUntil).outcome,
      });
    },
    isolate,
  };
}

export { MirrorStatsShard } from "./stats/durable-object.js";

export default createWorker() satisfies ExportedHandler<Env>;

/**
 * The floor for the benchmark: the least code that proxies (A) and that proxies and mirrors to
 * MIRROR_COUNT origins inside waitUntil (A3, and A3r with MIRROR_READ=1). edge-mirror is
 * measured against these.
 */
export default {
  /**
   * @param {Request} request
   * @param {Record<string, string>} env
   * @param {{ waitUntil(promise: Promise<unknown>): void }} ctx
   */
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const target = env.PRIMARY_ORIGIN + url.pathname + url.search;
    const copies = Number(env.MIRROR_COUNT ?? 0);
    for (let i = 0; i < copies; i++) {
      ctx.waitUntil(
        fetch(env.MIRROR_ORIGIN + url.pathname + url.search, { method: request.method, headers: request.headers })
          // A3 cancels the answers (every copy then opens a connection); A3r reads them to the
          // end, as edge-mirror does with small answers, so that the connections are reused.
          .then((r) => (env.MIRROR_READ === "1" ? r.arrayBuffer().then(() => {}) : r.body?.cancel()))
          .catch(() => {}),
      );
    }
    return fetch(target, { method: request.method, headers: request.headers, body: request.body, redirect: "manual" });
  },
};

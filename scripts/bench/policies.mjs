/**
 * @module scripts/bench/policies
 * The KV policies of the bench's edge-mirror scenarios, shared by `npm run bench` and
 * `npm run bench -- --mode profile`, so that a profile is taken on the very scenario the bench measures.
 */
import { policyEntries } from "../lib/worker.mjs";

/** What every scenario requests, except F. */
export const BENCH_PATH = "/bench/item?x=1";
/** F's request: under the last of its 1,000 routes. */
export const LAST_ROUTE_PATH = "/tenant/999/bench";

/** @param {string} id @param {string} path @param {Record<string, unknown>} [extra] */
const route = (id, path, extra = {}) => ({ id, match: { path: { type: "PathPrefix", value: path } }, ...extra });

/** @param {{ fast: string, slow: string }} mirrors the fast and the slow mirror's origins */
export function benchPolicies(mirrors) {
  const clusters = { fast: { origin: mirrors.fast }, slow: { origin: mirrors.slow } };
  const fast = { mirrors: [{ cluster: "fast" }] };
  return {
    /** B: one route, elsewhere; the request matches nothing. */
    noMatch: policyEntries({ clusters, routes: [route("elsewhere", "/elsewhere", fast)] }),
    /** C and E: the request's route has one fast mirror. */
    oneFast: policyEntries({ clusters, routes: [route("bench", "/bench", fast)] }),
    /** G: C with the mirror durable; it is healthy, so nothing is spooled. */
    oneFastDurable: policyEntries({
      clusters,
      routes: [route("bench", "/bench", { mirrors: [{ cluster: "fast", delivery: "durable" }] })],
    }),
    /**
     * `--mode paired --set durable`: two routes in one worker, the one fast mirror best-effort on
     * one and durable on the other (BENCH_PATH itself stays unmatched).
     */
    pairedDelivery: policyEntries({
      clusters,
      routes: [
        route("pair-best-effort", "/pair-best-effort", fast),
        route("pair-durable", "/pair-durable", { mirrors: [{ cluster: "fast", delivery: "durable" }] }),
      ],
    }),
    /**
     * C and V of `--set verdict`: two routes alike, one fast mirror at 100 %; V's requests are
     * served by a worker that does not record the primary's answer beside the copy's.
     */
    pairedRecording: policyEntries({
      clusters,
      routes: [
        route("pair-best-effort", "/pair-best-effort", fast),
        route("pair-unrecorded", "/pair-unrecorded", fast),
      ],
    }),
    /**
     * D of `--set mirrors`: three slow mirrors at 100 % on /pair-three, beside the floor that
     * sends three copies itself (A3r, under /floor-three).
     */
    pairedMirrors: policyEntries({
      clusters,
      routes: [
        route("pair-three", "/pair-three", {
          mirrors: [{ cluster: "slow" }, { cluster: "slow" }, { cluster: "slow" }],
        }),
      ],
    }),
    /** D: three mirrors, each the slow one. */
    threeSlow: policyEntries({
      clusters,
      routes: [route("bench", "/bench", { mirrors: [{ cluster: "slow" }, { cluster: "slow" }, { cluster: "slow" }] })],
    }),
    /** K1, K100: C's route capturing `percent` % of its requests to R2 (capture's defaults otherwise). */
    captured: (/** @type {number} */ percent) =>
      policyEntries({ clusters, routes: [route("bench", "/bench", { ...fast, capture: { percent } })] }),
    /** F: 1,000 routes, each with one fast mirror. */
    thousandRoutes: policyEntries({
      clusters,
      routes: Array.from({ length: 1000 }, (_, i) => route(`tenant-${i}`, `/tenant/${i}`, fast)),
    }),
  };
}

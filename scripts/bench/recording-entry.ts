/**
 * Entry for `npm run bench -- --mode paired --set verdict`'s second measure: the recording of the
 * primary's answer beside a copy's, timed on its own in Node (V8, as workerd), where the paired
 * run's whole requests are too noisy on a shared machine to resolve a cost of a few percent.
 * It times what a mirrored request does more — the promise on the primary's answer and the copy's
 * wait for it, the counting of the primary's status class and of both latencies in the sketches —
 * and the flush's encoding of the sketches, once per `FLUSH_EVERY` outcomes, against the same
 * work without the primary (the counters of the copy's own outcome, the flush's encoding).
 */
import { besidePrimary } from "../../src/mirror/copy.js";
import type { MirrorOutcome, PrimaryAnswer } from "../../src/record/index.js";
import { encodeTally } from "../../src/stats/flush-log.js";
import { countOutcome, emptyBatch } from "../../src/stats/tally.js";

/** Outcomes a flush carries: an isolate serving 200 mirrored requests/s flushes every 5 s. */
const FLUSH_EVERY = 1000;

function outcomes(n: number, withPrimary: boolean): MirrorOutcome[] {
  let seed = 1;
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed / 2_147_483_648;
  };
  return Array.from({ length: n }, (_, i) => {
    const primary = Math.round(5 + 300 * random() ** 3);
    return {
      route: "bench",
      mirror: "fast",
      requestId: `ray-${i}`,
      kind: "sent",
      status: 200,
      latencyMs: Math.round(primary * (0.5 + random())),
      bodyBytes: 0,
      ...(withPrimary ? { primary: { status: 200, latencyMs: primary } } : {}),
    } satisfies MirrorOutcome;
  });
}

/** µs per outcome of counting `list` and encoding a flush every `FLUSH_EVERY`. */
function countingUs(list: readonly MirrorOutcome[]): number {
  const started = performance.now();
  let batch = emptyBatch();
  let encoded = 0;
  for (let i = 0; i < list.length; i++) {
    countOutcome(batch, list[i] as MirrorOutcome);
    if ((i + 1) % FLUSH_EVERY === 0) {
      encoded += encodeTally(batch.tally).length;
      batch = emptyBatch();
    }
  }
  if (encoded === 0) throw new Error("nothing encoded");
  return ((performance.now() - started) * 1000) / list.length;
}

/** µs per request of the request path's promise on the answer and the copy's wait for it. */
async function handOverUs(n: number, withPrimary: boolean): Promise<number> {
  const answer = Promise.resolve(new Response(null, { status: 204 }));
  const started = performance.now();
  let statuses = 0;
  for (let i = 0; i < n; i++) {
    const at = Date.now();
    const primaryAnswer = withPrimary
      ? answer.then(
          (response): PrimaryAnswer => ({ status: response.status, latencyMs: Date.now() - at }),
          (): PrimaryAnswer => ({ status: null, latencyMs: Date.now() - at }),
        )
      : undefined;
    const beside = await besidePrimary({ primaryAnswer });
    statuses += beside.primary?.status ?? 0;
  }
  if (withPrimary && statuses === 0) throw new Error("no primary recorded");
  return ((performance.now() - started) * 1000) / n;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

/** Each measure taken `runs` times, with and without the primary in turn; medians in µs per mirrored request. */
export async function measureRecording(runs = 9, n = 200_000) {
  const without = outcomes(n, false);
  const withPrimary = outcomes(n, true);
  const counting = { without: [] as number[], with: [] as number[] };
  const handOver = { without: [] as number[], with: [] as number[] };
  // A warm-up of each, so that both are optimised before they are timed.
  countingUs(without);
  countingUs(withPrimary);
  await handOverUs(n, false);
  await handOverUs(n, true);
  for (let run = 0; run < runs; run++) {
    counting.without.push(countingUs(without));
    counting.with.push(countingUs(withPrimary));
    handOver.without.push(await handOverUs(n, false));
    handOver.with.push(await handOverUs(n, true));
  }
  const extra = counting.with.map(
    (w, i) => w - (counting.without[i] as number) + (handOver.with[i] as number) - (handOver.without[i] as number),
  );
  return {
    countingUs: { without: median(counting.without), with: median(counting.with) },
    handOverUs: { without: median(handOver.without), with: median(handOver.with) },
    extraUs: { median: median(extra), min: Math.min(...extra), max: Math.max(...extra) },
  };
}

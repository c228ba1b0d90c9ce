import { Agent } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { newestWorkerdPid, peakMemoryMiB, resetPeakMemoryMiB } from "../../scripts/lib/proc.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { DEFAULT_MEMORY_BUDGET_BYTES } from "../../src/body/budget.js";
import { exchange, mirrorOutcomes, sha256, until } from "../e2e/helpers.ts";

/**
 * Large bodies through a mirrored route in workerd: the primary gets every byte; the mirror gets
 * the body or a logged skip; the worker never holds a whole large body, and concurrent uploads
 * hold no more than the isolate's memory budget for copies. workerd's peak resident memory (VmHWM)
 * is read from /proc, a count of bytes rather than a timing.
 */
const MiB = 1024 * 1024;
/** The isolate's memory budget for copies: the default, as deployed. */
const BUDGET_MIB = DEFAULT_MEMORY_BUDGET_BYTES / MiB;
let primary: Awaited<ReturnType<typeof startOrigin>>;
let mirror: Awaited<ReturnType<typeof startOrigin>>;
let worker: Awaited<ReturnType<typeof startWorker>>;
const logs: string[] = [];
const memoryFigures: Array<{ what: string; peakGrowthMiB: number }> = [];

function pattern(size: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(((i + seed) * 2654435761) >>> 0, i);
  return b;
}

beforeAll(async () => {
  primary = await startOrigin({ name: "primary" });
  mirror = await startOrigin({ name: "mirror" });
  worker = await startWorker({
    scriptPath: inject("workerScript"),
    vars: { PRIMARY_ORIGIN: primary.url },
    onLog: (l) => logs.push(l),
    policies: policyEntries({
      clusters: { mirror: { origin: mirror.url } },
      routes: [
        {
          id: "ten",
          match: { path: { type: "PathPrefix", value: "/ten" } },
          maxMirrorBodyBytes: 16 * MiB,
          mirrors: [{ cluster: "mirror" }],
        },
        { id: "hundred", match: { path: { type: "PathPrefix", value: "/hundred" } }, mirrors: [{ cluster: "mirror" }] },
      ],
    }),
  });
});

afterAll(async () => {
  await worker?.dispose();
  await Promise.all([primary?.close(), mirror?.close()]);
});

async function outcome(route: string) {
  const of = () => mirrorOutcomes(logs).find((o) => o.route === route);
  await until(() => of() !== undefined, 10_000);
  return of();
}

describe("large bodies", () => {
  /** POSTs 100 MB to `path`, checks the primary got every byte and the copy was skipped; returns workerd's peak RSS growth. */
  async function hundredMegabytes(path: string, streamed: boolean): Promise<number> {
    logs.length = 0;
    const pid = newestWorkerdPid();
    const before = peakMemoryMiB(pid);
    const body = pattern(100 * MiB);
    const init: RequestInit & { duplex?: "half" } = streamed
      ? {
          method: "POST",
          duplex: "half",
          body: new ReadableStream<Uint8Array>({
            start(controller) {
              for (let at = 0; at < body.length; at += MiB) controller.enqueue(body.subarray(at, at + MiB));
              controller.close();
            },
          }),
        }
      : { method: "POST", body };
    const res = await fetch(`${worker.url}${path}`, init);
    expect((await res.json()) as { sha256: string }).toMatchObject({
      servedBy: "primary",
      bytes: 100 * MiB,
      sha256: sha256(body),
    });
    expect(await outcome("hundred")).toMatchObject({ kind: "skipped", reason: "body_too_large" });
    return peakMemoryMiB(pid) - before;
  }

  it("100 MB, declared length, over the 1 MiB cap: not copied at all, skip logged, primary byte-identical", async () => {
    const growth = await hundredMegabytes("/hundred/declared", false);
    memoryFigures.push({ what: "100 MB declared", peakGrowthMiB: growth });
    expect(growth).toBeLessThan(64);
  });

  it("100 MB streamed without a length: the copy stops at the cap, the primary streams on", async () => {
    const growth = await hundredMegabytes("/hundred/streamed", true);
    memoryFigures.push({ what: "100 MB streamed", peakGrowthMiB: growth });
    // Buffering the whole body would add 100 MiB or more; the tee holds at most about the cap.
    expect(growth).toBeLessThan(64);
    console.info(
      `workerd peak RSS growth: ${memoryFigures.map((m) => `${m.what} ${m.peakGrowthMiB.toFixed(1)} MiB`).join(", ")}`,
    );
  });

  it("10 MB under a 16 MiB cap: primary and mirror both get every byte", async () => {
    const body = pattern(10 * MiB);
    const res = await fetch(`${worker.url}/ten`, { method: "POST", body });
    expect((await res.json()) as { sha256: string }).toMatchObject({ servedBy: "primary", sha256: sha256(body) });
    await mirror.waitForCount(1, 30_000);
    expect(mirror.requests[0]?.sha256).toBe(sha256(body));
    expect(await outcome("ten")).toMatchObject({ kind: "sent", bodyBytes: 10 * MiB });
  });
});

describe("concurrent uploads and the isolate's memory budget", () => {
  /** A mirror that answers 4 s after a copy has arrived: each copy's body is held that long. */
  let slowMirror: Awaited<ReturnType<typeof startOrigin>>;
  const figures: string[] = [];

  beforeAll(async () => {
    slowMirror = await startOrigin({ name: "slow-mirror" });
    slowMirror.setDelay(4000);
  });

  afterAll(async () => {
    console.info(`workerd peak RSS growth, budget ${BUDGET_MIB} MiB:\n${figures.join("\n")}`);
    await slowMirror?.close();
  });

  /**
   * `n` concurrent 30 MiB uploads (32 MiB cap) to a route whose mirror answers in 4 s, so that
   * every copy's body is held that long, through a workerd of their own: its peak before them is
   * what it holds after one small request. Every primary answer must be intact, and the mirror
   * must get every copy that was sent byte for byte; the others are logged `memory_budget` skips.
   */
  async function uploads(n: number, chunked: boolean) {
    const logs: string[] = [];
    const uploader = await startWorker({
      scriptPath: inject("workerScript"),
      vars: { PRIMARY_ORIGIN: primary.url },
      onLog: (l) => logs.push(l),
      policies: policyEntries({
        clusters: { slow: { origin: slowMirror.url } },
        routes: [
          {
            id: "uploads",
            match: { path: { type: "PathPrefix", value: "/uploads" } },
            maxMirrorBodyBytes: 32 * MiB,
            // The primary answers once it has read the whole body: eight at once on a busy machine take a while.
            timeoutMs: 120_000,
            mirrors: [{ cluster: "slow", timeoutMs: 30_000 }],
          },
        ],
      }),
    });
    try {
      slowMirror.reset();
      // A fresh connection per request: a keep-alive one the worker has just closed would fail the upload.
      const agent = new Agent({ keepAlive: false });
      await exchange(agent, `${uploader.url}/warm-up`, "GET");
      const pid = newestWorkerdPid();
      const bodies = Array.from({ length: n }, (_, i) => pattern(30 * MiB, i + 1));
      const before = resetPeakMemoryMiB(pid);
      const answers = await Promise.all(
        bodies.map((body, i) => exchange(agent, `${uploader.url}/uploads/${i}`, "POST", body, chunked)),
      );
      const outcomes = () => mirrorOutcomes(logs).filter((o) => o.route === "uploads");
      await until(() => outcomes().length === n, 60_000);
      const growth = peakMemoryMiB(pid) - before;
      const sent = outcomes().filter((o) => o.kind === "sent");
      const skipped = outcomes().filter((o) => o.kind === "skipped");
      figures.push(
        `${n} × 30 MiB, ${chunked ? "chunked" : "declared length"}: peak +${growth.toFixed(0)} MiB; ${sent.length} copied, ${skipped.length} skipped`,
      );
      expect(answers.map((a) => a.error ?? a.status)).toEqual(bodies.map(() => 200));
      expect(answers.map((a) => JSON.parse(String(a.body)))).toEqual(
        bodies.map((body) =>
          expect.objectContaining({ servedBy: "primary", bytes: body.length, sha256: sha256(body) }),
        ),
      );
      expect(outcomes()).toHaveLength(n);
      expect(sent.map((o) => o.status)).toEqual(sent.map(() => 200));
      expect(skipped.map((o) => o.reason)).toEqual(skipped.map(() => "memory_budget"));
      // The mirror got the copies that were sent, each whole, and nothing else.
      const sums = new Set(bodies.map(sha256));
      expect(slowMirror.requests.map((r) => sums.has(r.sha256))).toEqual(sent.map(() => true));
      return { growth, sent: sent.length, skipped: skipped.length };
    } finally {
      await uploader.dispose();
    }
  }

  it.each([1, 4, 8])("%i concurrent 30 MiB uploads with a declared length, mirror answering in 4 s", async (n) => {
    const { growth, sent, skipped } = await uploads(n, false);
    expect(sent).toBeGreaterThanOrEqual(1);
    // One 30 MiB copy fits the default budget at a time; the rest arrive while it waits 4 s for its mirror.
    if (n === 8) expect(skipped).toBeGreaterThanOrEqual(1);
    expect(growth).toBeLessThan(BUDGET_MIB + 64);
  });

  it("8 concurrent 30 MiB uploads without a length (chunked)", async () => {
    const { growth, sent, skipped } = await uploads(8, true);
    expect(sent).toBeGreaterThanOrEqual(1);
    expect(skipped).toBeGreaterThanOrEqual(1);
    expect(growth).toBeLessThan(BUDGET_MIB + 64);
  });
});

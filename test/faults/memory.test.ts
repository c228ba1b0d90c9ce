import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startOrigin } from "../../scripts/lib/origins.mjs";
import { policyEntries, startWorker } from "../../scripts/lib/worker.mjs";
import { mirrorOutcomes, until } from "../e2e/helpers.ts";

/**
 * Large bodies through a mirrored route in workerd: the primary gets every byte; the mirror gets
 * the body or a logged skip; the worker never holds a whole large body. workerd's peak resident
 * memory (VmHWM) is read from /proc, a count of bytes rather than a timing.
 */
const MiB = 1024 * 1024;
let primary: Awaited<ReturnType<typeof startOrigin>>;
let mirror: Awaited<ReturnType<typeof startOrigin>>;
let worker: Awaited<ReturnType<typeof startWorker>>;
const logs: string[] = [];
const memoryFigures: Array<{ what: string; peakGrowthMiB: number }> = [];

/** The newest workerd started by this process: the one startWorker just launched. */
function workerdPid(): number {
  const out = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)]).toString();
  const pids = out
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([, comm]) => comm === "workerd")
    .map(([pid]) => Number(pid));
  const pid = pids.at(-1);
  if (!pid) throw new Error("no workerd child process found");
  return pid;
}

function peakRssMiB(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) / 1024;
}

function pattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
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

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function outcome(route: string) {
  const of = () => mirrorOutcomes(logs).find((o) => o.route === route);
  await until(() => of() !== undefined, 10_000);
  return of();
}

describe("large bodies", () => {
  /** POSTs 100 MB to `path`, checks the primary got every byte and the copy was skipped; returns workerd's peak RSS growth. */
  async function hundredMegabytes(path: string, streamed: boolean): Promise<number> {
    logs.length = 0;
    const pid = workerdPid();
    const before = peakRssMiB(pid);
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
      sha256: sha(body),
    });
    expect(await outcome("hundred")).toMatchObject({ kind: "skipped", reason: "body_too_large" });
    return peakRssMiB(pid) - before;
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
    expect((await res.json()) as { sha256: string }).toMatchObject({ servedBy: "primary", sha256: sha(body) });
    await mirror.waitForCount(1, 30_000);
    expect(mirror.requests[0]?.sha256).toBe(sha(body));
    expect(await outcome("ten")).toMatchObject({ kind: "sent", bodyBytes: 10 * MiB });
  });
});

import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { startWorker } from "../../scripts/lib/worker.mjs";

/**
 * Without PRIMARY_ORIGIN and without backends the primary is the request URL: on a zone route
 * that is the zone's origin, but locally it is the worker itself. That must end, not hang.
 */
let worker: Awaited<ReturnType<typeof startWorker>>;

beforeAll(async () => {
  worker = await startWorker({ scriptPath: inject("workerScript"), vars: { PRIMARY_ORIGIN: "" } });
});

afterAll(() => worker?.dispose());

it("answers 508 loop_detected when the primary is the worker itself", async () => {
  const res = await fetch(`${worker.url}/anything`);
  expect(res.status).toBe(508);
  expect(res.headers.get("x-edge-mirror-error")).toBe("loop_detected");
  expect(await res.json()).toMatchObject({ error: "loop_detected" });
});

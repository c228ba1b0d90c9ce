/**
 * The benchmark's origins in a process of their own, so that the load generator and the
 * origins do not share one event loop. Talks to its parent over IPC:
 *   → { ports: { primary, fast, slow } }    once listening
 *   ← "count"  → { count, connections }     mirror requests and connections received so far
 *   ← "stop"                                 closes and exits
 */
import { startOrigin } from "../lib/origins.mjs";

const slowMs = Number(process.argv[2] ?? 300);
const primary = await startOrigin({ name: "primary", record: false });
const fast = await startOrigin({ name: "fast-mirror", record: false });
const slow = await startOrigin({ name: "slow-mirror", record: false });
slow.setDelay(slowMs);

process.on("message", async (message) => {
  if (message === "count") {
    process.send?.({ count: fast.count + slow.count, connections: fast.connections + slow.connections });
  }
  if (message === "stop") {
    await Promise.all([primary.close(), fast.close(), slow.close()]);
    process.exit(0);
  }
});
process.send?.({ ports: { primary: primary.port, fast: fast.port, slow: slow.port } });

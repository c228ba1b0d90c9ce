import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

/**
 * The test pool closes its WebSocket to the runner inside workerd without waiting for the runner's
 * close frame, so workerd reports one "WebSocket peer disconnected" exception per test file at
 * teardown. The pool drops its twin ("WebSocket was aborted") but not this one, and it writes
 * workerd's lines itself, one per call: exactly those lines are dropped here, everything else
 * passes.
 */
const TEARDOWN_NOISE = /^exception = workerd\/api\/web-socket\.c\+\+:\d+: disconnected: WebSocket peer disconnected\n$/;
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) =>
    typeof chunk === "string" && TEARDOWN_NOISE.test(chunk) ? true : write(chunk, ...rest)) as typeof stream.write;
}

export default defineConfig({
  test: {
    // vitest's default is one worker fewer than the cores: on CI's 2 cores, every file in turn.
    maxWorkers: 2,
    projects: [
      {
        plugins: [
          cloudflareTest({
            main: "./src/index.ts",
            wrangler: { configPath: "./wrangler.toml" },
            // TTL 0: every request reads KV, so tests see their own writes at once.
            miniflare: {
              bindings: {
                POLICY_CACHE_TTL_MS: "0",
                LOG_LEVEL: "off",
                PRIMARY_ORIGIN: "",
                STATS_FLUSH_MS: "0",
                LOG_SAMPLE_RATE: "1",
              },
            },
          }),
        ],
        test: {
          name: "worker",
          include: ["src/**/*.test.ts", "test/worker/**/*.test.ts"],
          // One workerd runtime per vitest worker, not one per file: starting one per file was
          // three quarters of this project's time. The files stay independent all the same:
          // test/worker/setup.ts deletes every binding's data before each file.
          isolate: false,
          setupFiles: ["test/worker/setup.ts"],
          // Property tests and 1,000-route loads take seconds; on a shared machine, several times that.
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: "faults",
          environment: "node",
          include: ["test/faults/**/*.test.ts"],
          globalSetup: ["test/e2e/global-setup.ts"],
          testTimeout: 300_000,
          hookTimeout: 180_000,
          // The load runs after everything else, its two files side by side (one per core); alone,
          // one file at a time, when its latencies are written to a report (FAULTS_REPORT): a busy
          // machine should not be what they measure.
          fileParallelism: !process.env.FAULTS_REPORT,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: "e2e",
          environment: "node",
          include: ["test/e2e/**/*.test.ts"],
          globalSetup: ["test/e2e/global-setup.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});

/**
 * @module isolate
 * What an isolate keeps between requests, built once from the env it serves (vars cannot change
 * within an isolate): the settings parsed from env vars, the policy cache, the counter buffer,
 * the mirror breaker, the noise memory, the deployment's secret, the memory budget for copies,
 * the spool durable copies wait in, the capture batch and the admin surface's state. Nothing here is kept at module level: the composition root
 * (src/index.ts) builds one `IsolateState` per env and hands each module what it uses.
 */
import { type AdminState, adminState } from "../admin/index.js";
import { adminHost, adminPrefix, adminToken } from "../admin/settings.js";
import { DEFAULT_MEMORY_BUDGET_BYTES, MemoryBudget, parseBudgetBytes } from "../body/budget.js";
import { CaptureState } from "../capture/index.js";
import { NoiseMemory } from "../compare/index.js";
import { markerKeySetting } from "../headers/marker.js";
import { type BreakerOptions, MirrorBreaker } from "../mirror/breaker.js";
import { analyticsSink } from "../record/analytics.js";
import { fanOut, type LogLevel, logSink, type OutcomeSink, parseLogLevel, parseSampleRate } from "../record/index.js";
import { DeploymentSecret } from "../secret/index.js";
import { Spool } from "../spool/index.js";
import { createStatsBuffer, type StatsSettings, statsSettings } from "../stats/index.js";
import { PolicyCache } from "../store/index.js";
import { PolicyPublisher } from "../store/publish.js";

export interface Settings {
  /** `PRIMARY_ORIGIN` reduced to its origin, or undefined: requests then go to their own URL. */
  defaultOrigin: string | undefined;
  policyTtlMs: number;
  logLevel: LogLevel;
  logSampleRate: number;
  adminPrefix: string;
  /** The only host that serves the admin surface (`ADMIN_HOST`), or undefined: every host does. */
  adminHost: string | undefined;
  /** The token that opens the admin surface; undefined while it stays closed. */
  adminToken: string | undefined;
  /** Shards, flush interval, and the shard this isolate writes to (drawn once). */
  stats: StatsSettings;
  /** `MIRROR_MARKER_KEY` when it is long enough; else undefined (the deployment key in KV serves). */
  markerKey: string | undefined;
  /** What copies and comparisons may hold at once, in bytes (`MIRROR_MEMORY_BUDGET_BYTES`). */
  memoryBudgetBytes: number;
}

/** Reads a non-negative number of milliseconds, or the default. */
function millis(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value.trim() !== "" && Number.isFinite(n) && n >= 0 ? n : fallback;
}

function originOf(value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    return new URL(value).origin;
  } catch {
    // A typo must not turn every request of the zone into a 500: say so once and serve.
    console.error(
      JSON.stringify({ msg: "edge-mirror.invalid_setting", name: "PRIMARY_ORIGIN", error: "not an absolute URL" }),
    );
    return undefined;
  }
}

function memoryBudgetBytes(value: string | undefined): number {
  if (value === undefined || value.trim() === "") return DEFAULT_MEMORY_BUDGET_BYTES;
  const bytes = parseBudgetBytes(value);
  if (bytes !== undefined) return bytes;
  console.error(
    JSON.stringify({
      msg: "edge-mirror.invalid_setting",
      name: "MIRROR_MEMORY_BUDGET_BYTES",
      error: `not a whole number of bytes; using ${DEFAULT_MEMORY_BUDGET_BYTES}`,
    }),
  );
  return DEFAULT_MEMORY_BUDGET_BYTES;
}

export function parseSettings(env: Env): Settings {
  return {
    defaultOrigin: originOf(env.PRIMARY_ORIGIN),
    policyTtlMs: millis(env.POLICY_CACHE_TTL_MS, 5000),
    logLevel: parseLogLevel(env.LOG_LEVEL),
    logSampleRate: parseSampleRate(env.LOG_SAMPLE_RATE),
    adminPrefix: adminPrefix(env),
    adminHost: adminHost(env),
    adminToken: adminToken(env),
    stats: statsSettings(env),
    markerKey: markerKeySetting(env.MIRROR_MARKER_KEY),
    memoryBudgetBytes: memoryBudgetBytes(env.MIRROR_MEMORY_BUDGET_BYTES),
  };
}

/**
 * What a worker may be built with instead of the runtime's defaults, once, at construction
 * (src/index.ts `createWorker`): tests give their own draws, outcome sink, breaker thresholds and
 * log. Every isolate state the worker builds takes them.
 */
export interface IsolateOptions {
  /** The draws of sampling and of weighted backends; default `Math.random`. */
  random?: () => number;
  /**
   * Replaces every default sink (the log line, the counters, Analytics Engine): each outcome goes
   * here alone, and requests are not counted.
   */
  outcomes?: OutcomeSink;
  /** The mirror breaker's threshold and backoff; default `DEFAULT_BREAKER`. */
  breaker?: BreakerOptions;
  /** Where the policy cache writes its lines (invalid policies, KV unavailable); default stderr. */
  policyLog?: (line: string) => void;
  /**
   * Whether a copied request's outcomes carry the primary's status and latency (the release
   * verdict's other side); default true. False only to measure what recording them costs
   * (`npm run bench -- --mode paired --set verdict`).
   */
  recordPrimary?: boolean;
}

/** Where a matched request's outcomes and counts go. */
export interface Recorder {
  outcome: OutcomeSink;
  /** Counts a matched request, and whether any of its copies was sampled. */
  countRequest: (route: string, mirrored: boolean) => void;
}

export interface IsolateState {
  readonly settings: Settings;
  /** The `MIRROR_CONFIG` namespace: the policies, and the deployment's secret when it keeps one. */
  readonly kv: KVNamespace;
  readonly policies: PolicyCache;
  /** The draws of sampling and of weighted backends. */
  readonly random: () => number;
  /** Ejected mirrors: isolate-wide, like the mirrors they describe. */
  readonly breaker: MirrorBreaker;
  /** Learned compare noise. */
  readonly noise: NoiseMemory;
  /** Whether copies' outcomes carry the primary's answer (`IsolateOptions.recordPrimary`). */
  readonly recordPrimary: boolean;
  /** Keys the markers copies carry and sticky sampling (src/secret). */
  readonly secret: DeploymentSecret;
  /** What the bodies that copies and comparisons hold take from; shared by every request. */
  readonly budget: MemoryBudget;
  /**
   * Where durable copies not delivered inline wait (src/spool): the `MIRROR_SPOOL` queue, the
   * `MIRROR_SPOOL_BODIES` bucket and the `MIRROR_DEAD_LETTERS` queue, whichever are bound.
   */
  readonly spool: Spool;
  /** Captured requests batched for R2 (src/capture); its buffer is undefined without `MIRROR_CAPTURES`. */
  readonly capture: CaptureState;
  /** The admin surface's settings and caches (admin/state). */
  readonly admin: AdminState;
  /**
   * The log line, the live counters and, when bound, Analytics Engine, all fed the same outcome;
   * counts wait in the request's `waitUntil`.
   */
  recorder(waitUntil: (promise: Promise<unknown>) => void): Recorder;
}

/** The isolate's state for `env`: built once per env by the composition root. */
export function buildIsolate(env: Env, options: IsolateOptions = {}): IsolateState {
  const settings = parseSettings(env);
  const policies = new PolicyCache({
    ttlMs: settings.policyTtlMs,
    ...(options.policyLog ? { log: options.policyLog } : {}),
  });
  const budget = new MemoryBudget(settings.memoryBudgetBytes);
  return {
    settings,
    kv: env.MIRROR_CONFIG,
    policies,
    random: options.random ?? Math.random,
    breaker: new MirrorBreaker(options.breaker),
    noise: new NoiseMemory(),
    recordPrimary: options.recordPrimary ?? true,
    secret: new DeploymentSecret(settings.markerKey),
    budget,
    spool: spoolOf(env),
    capture: new CaptureState(env, budget),
    admin: adminState(
      { prefix: settings.adminPrefix, token: settings.adminToken, statsShards: settings.stats.shards },
      policies,
      new PolicyPublisher(options.policyLog ? { log: options.policyLog } : {}),
    ),
    recorder: options.outcomes ? outcomesOnly(options.outcomes) : recorderOf(env, settings),
  };
}

/** The spool's bindings, each optional: a deployment may leave them out, and its durable copies are then sent once. */
function spoolOf(env: Env): Spool {
  const bound = env as Partial<Pick<Env, "MIRROR_SPOOL" | "MIRROR_DEAD_LETTERS" | "MIRROR_SPOOL_BODIES">>;
  return new Spool({
    queue: bound.MIRROR_SPOOL,
    deadLetters: bound.MIRROR_DEAD_LETTERS,
    bodies: bound.MIRROR_SPOOL_BODIES,
  });
}

const NOT_COUNTED = () => {};

/** Tests' own sink: every outcome, no counters. */
function outcomesOnly(outcome: OutcomeSink): IsolateState["recorder"] {
  const recorder: Recorder = { outcome, countRequest: NOT_COUNTED };
  return () => recorder;
}

function recorderOf(env: Env, settings: Settings): IsolateState["recorder"] {
  const stats = createStatsBuffer(env, settings.stats);
  const log = logSink({ level: settings.logLevel, sampleRate: settings.logSampleRate });
  const analytics = env.MIRROR_ANALYTICS ? analyticsSink(env.MIRROR_ANALYTICS) : undefined;
  return (waitUntil) => {
    const sinks = [log];
    if (stats) sinks.push(stats.sink(waitUntil));
    if (analytics) sinks.push(analytics);
    return {
      outcome: fanOut(sinks),
      countRequest: (route, mirrored) => {
        try {
          stats?.countRequest(route, mirrored, waitUntil);
        } catch {
          // Counting is best effort, never the client's problem.
        }
      },
    };
  };
}

/**
 * @module isolate
 * What an isolate keeps between requests: the settings parsed from env vars (once — vars cannot
 * change within an isolate), the policy cache, the counter buffer, the mirror breaker, the
 * noise memory, the deployment's secret and the memory budget for copies. Every other module is
 * handed these rather than keeping module-level state.
 */
import { AdmittedAddresses } from "../admin/limits.js";
import { SessionEpochCache, SessionKeys } from "../admin/session.js";
import { adminHost, adminPrefix, adminToken, loginLimiter } from "../admin/settings.js";
import { DEFAULT_MEMORY_BUDGET_BYTES, MemoryBudget, parseBudgetBytes } from "../body/budget.js";
import { NoiseMemory } from "../compare/index.js";
import { markerKeySetting } from "../headers/marker.js";
import { MirrorBreaker } from "../mirror/breaker.js";
import { analyticsSink } from "../record/analytics.js";
import { fanOut, type LogLevel, logSink, type OutcomeSink, parseLogLevel, parseSampleRate } from "../record/index.js";
import { DeploymentSecret } from "../secret/index.js";
import type { StatsBuffer } from "../stats/buffer.js";
import { createStatsBuffer, type StatsSettings, statsSettings } from "../stats/index.js";
import { PolicyCache } from "../store/index.js";

export interface Settings {
  /** `PRIMARY_ORIGIN` reduced to its origin, or undefined: requests then go to their own URL. */
  primaryOrigin: string | undefined;
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
    primaryOrigin: originOf(env.PRIMARY_ORIGIN),
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
 * What `Settings` are parsed from (the vars, the admin token, whether a sign-in limiter is bound),
 * joined: equal fingerprints parse to equal settings.
 */
function fingerprint(env: Env): string {
  return [
    env.PRIMARY_ORIGIN,
    env.POLICY_CACHE_TTL_MS,
    env.LOG_LEVEL,
    env.LOG_SAMPLE_RATE,
    env.ADMIN_PREFIX,
    env.ADMIN_HOST,
    env.STATS_FLUSH_MS,
    env.STATS_SHARDS,
    env.MIRROR_MEMORY_BUDGET_BYTES,
    env.MIRROR_STATS ? "counted" : "",
    env.MIRROR_MARKER_KEY,
    env.ADMIN_TOKEN,
    loginLimiter(env) ? "login-limited" : "",
  ].join("\n");
}

export interface Isolate {
  readonly settings: Settings;
  readonly policies: PolicyCache;
  /** Undefined without the `MIRROR_STATS` binding. */
  readonly stats: StatsBuffer | undefined;
  readonly breaker: MirrorBreaker;
  readonly noise: NoiseMemory;
  readonly log: OutcomeSink;
  /** Keys the markers copies carry and sticky sampling (src/secret). */
  readonly secret: DeploymentSecret;
  /** The dashboard's session epoch, as this isolate last read it. */
  readonly sessionEpoch: SessionEpochCache;
  /** The dashboard session cookie's HMAC key, derived from ADMIN_TOKEN once. */
  readonly sessionKeys: SessionKeys;
  /** Addresses whose right bearer token the rate limit admitted lately (admin/limits). */
  readonly admittedAddresses: AdmittedAddresses;
  /** What the bodies that copies and comparisons hold take from; shared by every request. */
  readonly budget: MemoryBudget;
}

function buildIsolate(env: Env, settings: Settings, previous: Isolate | undefined): Isolate {
  return {
    settings,
    policies: new PolicyCache({ ttlMs: settings.policyTtlMs }),
    stats: createStatsBuffer(env, settings.stats),
    // Ejections and learned noise describe the mirrors, not the settings: they survive.
    breaker: previous?.breaker ?? new MirrorBreaker(),
    noise: previous?.noise ?? new NoiseMemory(),
    log: logSink({ level: settings.logLevel, sampleRate: settings.logSampleRate }),
    secret: new DeploymentSecret(settings.markerKey),
    sessionEpoch: new SessionEpochCache(),
    sessionKeys: new SessionKeys(),
    admittedAddresses: new AdmittedAddresses(),
    budget: new MemoryBudget(settings.memoryBudgetBytes),
  };
}

let current: { env: Env; fingerprint: string; isolate: Isolate } | undefined;

/**
 * This isolate's state. The first request builds it; later ones get it back after one identity
 * check. (An env whose vars differ — tests pass their own — rebuilds the settings.)
 */
export function isolateFor(env: Env): Isolate {
  if (current?.env === env) return current.isolate;
  const print = fingerprint(env);
  if (current?.fingerprint === print) {
    current.env = env;
    return current.isolate;
  }
  const isolate = buildIsolate(env, parseSettings(env), current?.isolate);
  current = { env, fingerprint: print, isolate };
  return isolate;
}

/** Where a matched request's outcomes and counts go. */
export interface Recorder {
  outcome: OutcomeSink;
  request: (route: string, mirrored: boolean) => void;
}

/** The log line, the live counters and, when bound, Analytics Engine: all fed the same outcome. */
export function recorderFor(isolate: Isolate, env: Env, waitUntil: (p: Promise<unknown>) => void): Recorder {
  const { stats } = isolate;
  const sinks = [isolate.log];
  if (stats) sinks.push(stats.sink(waitUntil));
  if (env.MIRROR_ANALYTICS) sinks.push(analyticsSink(env.MIRROR_ANALYTICS));
  return {
    outcome: fanOut(sinks),
    request: (route, mirrored) => {
      try {
        stats?.countRequest(route, mirrored, waitUntil);
      } catch {
        // Counting is best effort, never the client's problem.
      }
    },
  };
}

/**
 * @module mirror/plan
 * Pure decisions about a request's mirrors: which targets are sampled (each independently, at
 * random or sticky by a request value), which header-chosen cluster is allowed, and why the
 * others are skipped. No I/O here.
 */
import {
  type CompareSpec,
  compareSpec,
  DEFAULT_RETRY,
  type HeaderOps,
  type Mirror,
  type MirrorFromHeader,
  type Retry,
  type Route,
  type SampleBy,
} from "../policy/index.js";
import type { SkipReason } from "../record/index.js";
import { type SipKey, sipHash24 } from "../siphash/index.js";
import type { PathRewrite } from "./rewrite.js";

export interface MirrorTarget {
  /** Cluster name, or the origin for an `origin` mirror: the metrics label. */
  label: string;
  origin: string;
  timeoutMs: number;
  hostSuffix: string;
  requestHeaders: HeaderOps | undefined;
  compare?: CompareTarget;
  /** Set when the mirror has `urlRewrite`: the copy's path (only) changes. */
  rewrite?: PathRewrite;
  /**
   * Set for `delivery: "durable"`: how the copy is retried once spooled (src/spool). Absent, the
   * copy is best-effort: sent once, as today.
   */
  durable?: Retry;
}

/** A compared mirror's settings, with its reference resolved to an origin (or why it cannot be). */
export interface CompareTarget {
  spec: CompareSpec;
  reference?: { origin: string } | { problem: string };
}

export interface SkippedMirror {
  mirror: string;
  reason: SkipReason;
  detail?: string;
}

export interface MirrorPlan {
  targets: MirrorTarget[];
  skipped: SkippedMirror[];
  /**
   * Set when the request carries a marker made for it whose body digest is still to be compared
   * with the body (read only for the copies): see `runMirrors`.
   */
  markedBodyDigest?: string;
}

/**
 * Copies carry the client's headers to internal clusters; a request with more than this is not
 * copied (Cloudflare itself accepts up to 128 KB of request headers).
 */
export const MAX_COPY_HEADERS = 200;
export const MAX_COPY_HEADER_BYTES = 64 * 1024;

/** Why the request's headers are too much to copy, or undefined. */
export function headersProblem(headers: Headers): string | undefined {
  let count = 0;
  let bytes = 0;
  for (const [name, value] of headers) {
    count++;
    bytes += name.length + value.length + 4;
  }
  if (count > MAX_COPY_HEADERS) return `${count} header fields (at most ${MAX_COPY_HEADERS} are copied)`;
  if (bytes > MAX_COPY_HEADER_BYTES) return `${bytes} bytes of headers (at most ${MAX_COPY_HEADER_BYTES} are copied)`;
  return undefined;
}

/** `percent` (0–100) or `fraction`; absent means always. `random` returns [0, 1). */
export function isSampled(mirror: Pick<Mirror, "percent" | "fraction">, random: () => number): boolean {
  if (mirror.fraction) return random() * mirror.fraction.denominator < mirror.fraction.numerator;
  const percent = mirror.percent ?? 100;
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return random() * 100 < percent;
}

/**
 * Longer sticky values are not hashed (the request is sampled at random): a browser sends a
 * cookie of at most 4096 bytes, so real values are hashed whole and a client cannot make a
 * request cost more than this per mirror.
 */
export const MAX_STICKY_VALUE_LENGTH = 4096;

/** Labels are cluster names (63 characters) or origins (2048); the scratch holds the longest of both. */
const MAX_LABEL_LENGTH = 2048;
const utf8 = new TextEncoder();
// UTF-8 takes at most 3 bytes per UTF-16 unit; value, NUL, label.
const utf8Scratch = new Uint8Array(3 * MAX_STICKY_VALUE_LENGTH + 1 + 3 * MAX_LABEL_LENGTH);

/**
 * Where `value` falls in [0, 1) for the mirror labelled `label`: SipHash-2-4 under `key` (the
 * deployment's sticky-sampling key, src/secret) of the UTF-8 bytes of value, a NUL byte and label,
 * its top 53 bits over 2^53. Keyed, so that a client can neither compute its bucket nor choose a
 * value that is always or never copied; the same on every isolate of a deployment, which all
 * share the key. The label salts it, so that mirrors decide
 * independently while one mirror decides alike on every route; a mirror samples the points below
 * its percentage, so raising it only adds values.
 */
export function stickyPoint(value: string, label: string, key: SipKey): number {
  const valueBytes = utf8.encodeInto(value, utf8Scratch).written;
  utf8Scratch[valueBytes] = 0;
  const labelBytes = utf8.encodeInto(label, utf8Scratch.subarray(valueBytes + 1)).written;
  const { high, low } = sipHash24(key, utf8Scratch, valueBytes + 1 + labelBytes);
  return high / 2 ** 32 + (low >>> 11) / 2 ** 53;
}

/** The value `sampleBy` names in this request; absent, empty or too long → undefined. */
function stickyValue(by: SampleBy, headers: Headers, query: URLSearchParams | undefined): string | undefined {
  let value: string | null | undefined;
  if (by.header !== undefined) value = headers.get(by.header);
  else if (by.cookie !== undefined) value = cookieValue(headers.get("cookie"), by.cookie);
  else if (by.query !== undefined) value = query?.get(by.query);
  return value && value.length <= MAX_STICKY_VALUE_LENGTH ? value : undefined;
}

/**
 * The value of the first `name=value` pair in a Cookie header (RFC 6265 §5.4: pairs separated by
 * `;`; several Cookie fields arrive joined by `,`, which no cookie value may hold).
 *
 * When the name appears twice, the first pair wins: a browser sends the cookie with the longest
 * path first (RFC 6265 §5.4 step 2), and the first is what Go's `Request.Cookie` and the `cookie`
 * package behind Express return, so the decision follows the session the application most likely
 * serves. A client can put a value of its choosing first, as
 * it can send any value, but with the keyed hash it cannot tell which values are copied.
 */
export function cookieValue(header: string | null, name: string): string | undefined {
  if (header === null) return undefined;
  const pair = `${name}=`;
  for (let at = header.indexOf(pair); at !== -1; at = header.indexOf(pair, at + 1)) {
    if (!startsPair(header, at)) continue;
    const start = at + pair.length;
    let end = start;
    while (end < header.length && header[end] !== ";" && header[end] !== ",") end++;
    return header.slice(start, end).trim();
  }
  return undefined;
}

function startsPair(header: string, at: number): boolean {
  let i = at - 1;
  while (i >= 0 && (header[i] === " " || header[i] === "\t")) i--;
  return i < 0 || header[i] === ";" || header[i] === ",";
}

/**
 * Sampled at the request's sticky point for `sampleBy`, or at random when it carries no value.
 * Capture samples its requests through here too (src/capture).
 */
export function isMirrorSampled(
  mirror: Pick<Mirror, "percent" | "fraction" | "sampleBy">,
  label: string,
  headers: Headers,
  context: PlanContext,
  random: () => number,
): boolean {
  const by = mirror.sampleBy;
  if (!by) return isSampled(mirror, random);
  const key = context.stickyKey;
  return isSampled(mirror, () => {
    const value = stickyValue(by, headers, context.query);
    return value === undefined || key === undefined ? random() : stickyPoint(value, label, key);
  });
}

export function mirrorLabel(mirror: { cluster?: string | undefined; origin?: string | undefined }): string {
  return mirror.cluster ?? mirror.origin ?? "";
}

/** Header values chosen by clients end up in logs: keep them short. */
function clip(value: string): string {
  return value.length > 64 ? `${value.slice(0, 64)}…` : value;
}

/**
 * The one label under which every header-chosen name outside `mirrorFromHeader.allow` is
 * counted. Were each counted under its own name, a client sending junk names would fill the
 * bounded counters and push configured mirrors into `(other)`; the name itself is in the log
 * line's `detail`. Not a valid cluster name, so no configured mirror can share it.
 */
export const NOT_ALLOWED = "(not allowed)";

/** The label of a header-chosen name, and what the log line says of a name outside `allow`. */
function headerChoice(dynamic: MirrorFromHeader, name: string): { label: string; outside?: string } {
  if (dynamic.allow.includes(name)) return { label: name };
  return { label: NOT_ALLOWED, outside: `${dynamic.header} names ${JSON.stringify(clip(name))}` };
}

function compareTarget(spec: CompareSpec, clusters: ReadonlyMap<string, string>): CompareTarget {
  const ref = spec.reference;
  if (!ref) return { spec };
  if (ref.origin !== undefined) return { spec, reference: { origin: ref.origin } };
  const origin = clusters.get(ref.cluster as string);
  return {
    spec,
    reference: origin === undefined ? { problem: `reference cluster "${ref.cluster}" is not defined` } : { origin },
  };
}

/** The largest body any sampled comparison reads, or undefined when nothing is compared. */
export function compareBodyCap(targets: readonly MirrorTarget[]): number | undefined {
  let cap: number | undefined;
  for (const t of targets) if (t.compare) cap = Math.max(cap ?? 0, t.compare.spec.maxBodyBytes);
  return cap;
}

/** What the request path learned about the request before planning. */
export interface PlanContext {
  /** The request carries a valid, signed mirror marker: it is a copy already. */
  marked?: boolean;
  /** A WebSocket upgrade: its socket belongs to the client and the primary, never to a copy. */
  upgrade?: boolean;
  /** The request's query parameters, for mirrors with `sampleBy: { query }`. */
  query?: URLSearchParams;
  /**
   * The deployment's sticky-sampling key (src/secret). Without one (no secret could be read yet)
   * a mirror with `sampleBy` samples at random.
   */
  stickyKey?: SipKey | undefined;
}

type CopySettings = Pick<
  MirrorFromHeader,
  "timeoutMs" | "hostSuffix" | "requestHeaders" | "compare" | "urlRewrite" | "delivery" | "retry"
>;

/** One copy's target, listed or header-chosen alike. */
function copyTarget(
  label: string,
  origin: string,
  settings: CopySettings,
  route: Route,
  clusters: ReadonlyMap<string, string>,
): MirrorTarget {
  const target: MirrorTarget = {
    label,
    origin,
    timeoutMs: settings.timeoutMs,
    hostSuffix: settings.hostSuffix,
    requestHeaders: settings.requestHeaders,
  };
  const spec = compareSpec(settings);
  if (spec) target.compare = compareTarget(spec, clusters);
  const modifier = settings.urlRewrite?.path;
  if (modifier?.type === "ReplaceFullPath") target.rewrite = { replaceFullPath: modifier.replaceFullPath };
  else if (modifier) {
    // The schema allows ReplacePrefixMatch on PathPrefix routes only.
    target.rewrite = { replacePrefixMatch: modifier.replacePrefixMatch, prefix: route.match.path.value };
  }
  if (settings.delivery === "durable") target.durable = settings.retry ?? DEFAULT_RETRY;
  return target;
}

export function planMirrors(
  route: Route,
  headers: Headers,
  clusters: ReadonlyMap<string, string>,
  random: () => number,
  context: PlanContext = {},
): MirrorPlan {
  const plan: MirrorPlan = { targets: [], skipped: [] };
  const dynamic = route.mirrorFromHeader;
  const dynamicName = dynamic ? headers.get(dynamic.header)?.trim() : undefined;
  const choice = dynamic && dynamicName ? headerChoice(dynamic, dynamicName) : undefined;

  const refusal = context.marked ? "loop_marker" : context.upgrade ? "upgrade" : undefined;
  if (refusal) {
    for (const mirror of route.mirrors) plan.skipped.push({ mirror: mirrorLabel(mirror), reason: refusal });
    if (choice) {
      plan.skipped.push({
        mirror: choice.label,
        reason: refusal,
        ...(choice.outside ? { detail: choice.outside } : {}),
      });
    }
    return plan;
  }

  for (const mirror of route.mirrors) {
    const label = mirrorLabel(mirror);
    if (!isMirrorSampled(mirror, label, headers, context, random)) {
      plan.skipped.push({ mirror: label, reason: "not_sampled" });
      continue;
    }
    const origin =
      mirror.cluster === undefined ? new URL(mirror.origin as string).origin : clusters.get(mirror.cluster);
    if (origin === undefined) {
      plan.skipped.push({ mirror: label, reason: "unknown_cluster", detail: `cluster "${label}" is not defined` });
      continue;
    }
    plan.targets.push(copyTarget(label, origin, mirror, route, clusters));
  }

  if (dynamic && dynamicName && choice) {
    const origin = clusters.get(dynamicName);
    if (choice.outside !== undefined) {
      plan.skipped.push({
        mirror: choice.label,
        reason: "cluster_not_allowed",
        detail: `${choice.outside}, a cluster outside mirrorFromHeader.allow`,
      });
    } else if (origin === undefined) {
      plan.skipped.push({
        mirror: choice.label,
        reason: "unknown_cluster",
        detail: `${dynamic.header} names no defined cluster`,
      });
    } else {
      plan.targets.push(copyTarget(dynamicName, origin, dynamic, route, clusters));
    }
  }
  if (plan.targets.length > 0) {
    const problem = headersProblem(headers);
    if (problem) {
      for (const t of plan.targets)
        plan.skipped.push({ mirror: t.label, reason: "headers_too_large", detail: problem });
      plan.targets = [];
    }
  }
  return plan;
}

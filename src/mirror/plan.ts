/**
 * @module mirror/plan
 * Pure decisions about a request's mirrors: which targets are sampled (each independently),
 * which header-chosen cluster is allowed, and why the others are skipped. No I/O here.
 */
import {
  type CompareSpec,
  compareSpec,
  type HeaderOps,
  type Mirror,
  type MirrorFromHeader,
  type Route,
} from "../policy/index.js";
import type { SkipReason } from "../record/index.js";
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

export function mirrorLabel(mirror: { cluster?: string | undefined; origin?: string | undefined }): string {
  return mirror.cluster ?? mirror.origin ?? "";
}

/** Header values chosen by clients end up in logs: keep them short. */
function clip(value: string): string {
  return value.length > 64 ? `${value.slice(0, 64)}…` : value;
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
}

type CopySettings = Pick<MirrorFromHeader, "timeoutMs" | "hostSuffix" | "requestHeaders" | "compare" | "urlRewrite">;

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
  const dynamicName = route.mirrorFromHeader ? headers.get(route.mirrorFromHeader.header)?.trim() : undefined;

  const refusal = context.marked ? "loop_marker" : context.upgrade ? "upgrade" : undefined;
  if (refusal) {
    for (const mirror of route.mirrors) plan.skipped.push({ mirror: mirrorLabel(mirror), reason: refusal });
    if (dynamicName) plan.skipped.push({ mirror: clip(dynamicName), reason: refusal });
    return plan;
  }

  for (const mirror of route.mirrors) {
    const label = mirrorLabel(mirror);
    if (!isSampled(mirror, random)) {
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

  const dynamic = route.mirrorFromHeader;
  if (dynamic && dynamicName) {
    const origin = clusters.get(dynamicName);
    if (!dynamic.allow.includes(dynamicName)) {
      plan.skipped.push({
        mirror: clip(dynamicName),
        reason: "cluster_not_allowed",
        detail: `${dynamic.header} names a cluster outside mirrorFromHeader.allow`,
      });
    } else if (origin === undefined) {
      plan.skipped.push({
        mirror: clip(dynamicName),
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

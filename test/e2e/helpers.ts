/**
 * What the end-to-end tests and the fault suite read from a running worker: its outcome log
 * lines, and conditions they wait for (bounded, never a fixed sleep).
 */

/** One `edge-mirror.mirror` log line (see src/record). */
export interface LoggedOutcome {
  route: string;
  mirror: string;
  kind: "sent" | "failed" | "skipped";
  status?: number;
  error?: string;
  reason?: string;
  compare?: { verdict: string };
}

/** The JSON of every log line carrying `msg` (workerd may prefix a line). */
export function logged<T = Record<string, unknown>>(logs: readonly string[], msg: string): T[] {
  const marker = `"msg":"${msg}"`;
  return logs.filter((l) => l.includes(marker)).map((l) => JSON.parse(l.slice(l.indexOf("{"))) as T);
}

export function mirrorOutcomes(logs: readonly string[]): LoggedOutcome[] {
  return logged<LoggedOutcome>(logs, "edge-mirror.mirror");
}

/** Polls `done` every 100 ms until it holds or `timeoutMs` has passed; the caller asserts afterwards. */
export async function until(done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}

/**
 * What the end-to-end tests and the fault suite read from a running worker: its outcome log
 * lines, its admin stats, conditions they wait for (bounded, never a fixed sleep), requests as a
 * keep-alive client makes them, and the SHA-256 they compare bodies by.
 */
import { createHash } from "node:crypto";
import { type Agent, request } from "node:http";
import type { Socket } from "node:net";

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

/**
 * `GET <url>/__mirror/api/stats` with the admin token (`minutes`, when given, as the API takes it):
 * the status and the JSON the caller expects.
 */
export async function adminStats<T>(
  url: string,
  token: string,
  minutes?: number,
): Promise<{ status: number; stats: T }> {
  const query = minutes === undefined ? "" : `?minutes=${minutes}`;
  const res = await fetch(`${url}/__mirror/api/stats${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, stats: (await res.json()) as T };
}

/** The SHA-256 of `bytes`, in hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** What a client saw of one request: the answer, or the error that ended it (a reset, say). */
export interface Exchange {
  status?: number;
  body?: Buffer;
  error?: string;
  /** The connection it went over, to tell whether the next request reuses it. */
  socket?: Socket;
}

/**
 * One request through `agent` (give it `keepAlive` and `maxSockets: 1` to keep one connection),
 * the body sent with Content-Length or, `chunked`, in 1 MiB chunks without. Resolves once the
 * answer has been read and the body sent in full, or with the error that ended the request: a
 * server may answer early, and the client must still finish its upload on that connection.
 */
export function exchange(agent: Agent, url: string, method: string, body?: Buffer, chunked = false): Promise<Exchange> {
  return new Promise((resolve) => {
    const headers = body && !chunked ? { "content-length": String(body.length) } : {};
    const req = request(url, { method, agent, headers });
    let answered: Exchange | undefined;
    req.setTimeout(60_000, () => req.destroy(new Error("no answer within 60 s")));
    req.on("socket", (socket) => {
      // Errors after the request has ended (a late reset) surface on the next request instead.
      if (socket.listenerCount("error") === 0) socket.on("error", () => {});
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", (err) => resolve({ error: `response: ${(err as NodeJS.ErrnoException).code ?? err.message}` }));
      res.on("end", () => {
        answered = { status: res.statusCode, body: Buffer.concat(chunks), socket: req.socket ?? undefined };
        if (req.writableFinished) resolve(answered);
      });
    });
    req.on("finish", () => {
      if (answered) resolve(answered);
    });
    req.on("error", (err: NodeJS.ErrnoException) =>
      resolve({ error: `${err.code ?? err.message}${answered ? ` after a ${answered.status}` : ""}` }),
    );
    if (!body) return void req.end();
    if (!chunked) return void req.end(body);
    for (let at = 0; at < body.length; at += 1024 * 1024) req.write(body.subarray(at, at + 1024 * 1024));
    req.end();
  });
}

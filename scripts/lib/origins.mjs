/**
 * @module scripts/lib/origins
 * Local HTTP origins for the demo, the end-to-end tests, the fault suite and the benchmarks.
 * Each records what it received (method, path, headers, body bytes and their SHA-256) and can be
 * told to answer slowly, hold requests until released, or fail in specific ways.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";

/**
 * @typedef {object} SeenRequest
 * @property {string} method
 * @property {string} url   path and query exactly as received
 * @property {Record<string, string | string[] | undefined>} headers
 * @property {Buffer} body
 * @property {string} sha256
 * @property {number} at    Date.now() when the body had fully arrived
 */

/**
 * @param {object} [options]
 * @param {string} [options.name]        shown in answers and logs
 * @param {number} [options.port]        0 (default) picks a free port
 * @param {boolean} [options.log]        print one line per request, like the Envoy sandbox's services
 * @param {boolean} [options.record]     keep requests in memory (default true); off for long benchmarks
 * @param {(req: SeenRequest, res: import("node:http").ServerResponse) => void | Promise<void>} [options.respond]
 * @param {"hang" | "reset"} [options.fault]  hang: read the request, never answer; reset: destroy the connection on arrival
 */
export async function startOrigin(options = {}) {
  const name = options.name ?? "origin";
  const record = options.record ?? true;
  /** @type {SeenRequest[]} */
  const requests = [];
  let count = 0;
  let answered = 0;
  /** @type {Array<() => void>} */
  const waiters = [];
  let delayMs = 0;
  /** @type {Promise<void> | undefined} */
  let gate;

  /**
   * @param {() => boolean} done
   * @param {() => string} describe
   * @param {number} timeoutMs
   */
  async function waitUntil(done, describe, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(describe());
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        waiters.push(() => {
          clearTimeout(timer);
          resolve(undefined);
        });
      });
    }
  }

  const server = createServer((req, res) => {
    if (options.fault === "reset") {
      count++;
      for (const wake of waiters.splice(0)) wake();
      req.socket.destroy();
      return;
    }
    /** @type {Buffer[]} */
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("error", () => {});
    req.on("end", async () => {
      const body = Buffer.concat(chunks);
      const seen = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body,
        sha256: createHash("sha256").update(body).digest("hex"),
        at: Date.now(),
      };
      count++;
      if (record) requests.push(seen);
      if (options.log) {
        console.log(
          `[${name}] Host: ${req.headers["x-forwarded-host"] ?? req.headers.host} "${req.method} ${req.url}" ${body.length} bytes${req.headers["x-edge-mirror"] ? ` (mirror of route ${String(req.headers["x-edge-mirror"]).split(";")[0]})` : ""}`,
        );
      }
      for (const wake of waiters.splice(0)) wake();
      if (options.fault === "hang") return;
      if (gate) await gate;
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      res.on("finish", () => {
        answered++;
        for (const wake of waiters.splice(0)) wake();
      });
      if (options.respond) return options.respond(seen, res);
      const answer = JSON.stringify({
        servedBy: name,
        method: seen.method,
        url: seen.url,
        bytes: body.length,
        sha256: seen.sha256,
      });
      res.writeHead(200, { "content-type": "application/json", "x-served-by": name });
      res.end(answer);
    });
  });
  server.keepAliveTimeout = 30_000;
  let connections = 0;
  server.on("connection", () => connections++);
  await new Promise((resolve) => server.listen(options.port ?? 0, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;

  return {
    name,
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    get count() {
      return count;
    },
    /** TCP connections accepted so far: fewer than requests when callers reuse them. */
    get connections() {
      return connections;
    },
    /** Requests whose answer has been fully written. */
    get answered() {
      return answered;
    },
    /** Answer every later request after `ms`. @param {number} ms */
    setDelay(ms) {
      delayMs = ms;
    },
    /** Hold answers until the returned function is called. */
    hold() {
      let release = () => {};
      gate = new Promise((r) => {
        release = r;
      });
      return () => {
        gate = undefined;
        release();
      };
    },
    /** Resolves once `n` requests have arrived, or rejects after `timeoutMs`. @param {number} n */
    waitForCount(n, timeoutMs = 10_000) {
      return waitUntil(
        () => count >= n,
        () => `${name}: expected ${n} requests, got ${count} after ${timeoutMs} ms`,
        timeoutMs,
      );
    },
    /** Resolves once `n` answers have been written. @param {number} n */
    waitForAnswered(n, timeoutMs = 10_000) {
      return waitUntil(
        () => answered >= n,
        () => `${name}: expected ${n} answers, got ${answered} after ${timeoutMs} ms`,
        timeoutMs,
      );
    },
    reset() {
      requests.length = 0;
      count = 0;
      answered = 0;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

/**
 * An origin that answers every request with `status` at once, before reading its body, as a
 * server does when an auth check or a size limit fails, and then treats the unread body as its
 * `style` does:
 * - "node": Node's http server keeps the connection and reads the rest itself, dropping it;
 * - "linger": nginx's lingering close: `Connection: close`, a half-close, then it reads and drops
 *   what keeps coming until the client closes (at most 30 s);
 * - "go": Go's net/http reads at most 256 KiB, answers with `Connection: close`, half-closes,
 *   stops reading and closes 500 ms later: a reset if the upload is still arriving.
 * @param {{ name?: string, status: number, style: "node" | "linger" | "go" }} options
 */
export async function startEarlyAnswerOrigin(options) {
  const name = options.name ?? `early-${options.style}`;
  const body = JSON.stringify({ error: "refused before reading the body", servedBy: name });
  let count = 0;
  /** @type {Set<import("node:net").Socket>} */
  const sockets = new Set();
  /** @type {import("node:net").Server} */
  let server;
  if (options.style === "node") {
    server = createServer((_req, res) => {
      count++;
      res.writeHead(options.status, { "content-type": "application/json", "x-served-by": name }).end(body);
    });
  } else {
    const style = options.style;
    const head = (/** @type {string} */ extra) =>
      `HTTP/1.1 ${options.status} Refused\r\ncontent-type: application/json\r\nx-served-by: ${name}\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n${extra}\r\n${body}`;
    server = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on("error", () => {});
      let received = Buffer.alloc(0);
      const onHead = (/** @type {Buffer} */ chunk) => {
        received = Buffer.concat([received, chunk]);
        const end = received.indexOf("\r\n\r\n");
        if (end === -1) return;
        socket.off("data", onHead);
        count++;
        if (style === "linger") {
          socket.end(head(""));
          socket.resume();
          socket.on("end", () => socket.destroy());
          setTimeout(() => socket.destroy(), 30_000).unref();
          return;
        }
        let unread = 256 * 1024 - (received.length - end - 4);
        const answer = () => {
          socket.off("data", discard);
          socket.pause();
          socket.end(head(""));
          setTimeout(() => socket.destroy(), 500).unref();
        };
        const discard = (/** @type {Buffer} */ more) => {
          unread -= more.length;
          if (unread <= 0) answer();
        };
        // A request without a body (no length, no chunking) is answered at once.
        const hasBody = /\r\n(content-length: *[1-9]|transfer-encoding:)/i.test(
          received.subarray(0, end).toString("latin1"),
        );
        if (!hasBody || unread <= 0) answer();
        else socket.on("data", discard);
      };
      socket.on("data", onHead);
    });
  }
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    /** The answer's body, byte for byte. */
    body,
    get count() {
      return count;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

/**
 * A mirror for durable copies: it goes down (refusing connections) and comes back on the same
 * port, answers every request with `status`, and keeps, per copy id (`x-edge-mirror-id`), the
 * SHA-256 of the first body that came with it — never the body — counting arrivals and
 * duplicates. `loseAnswers(n)` makes it take the next `n` copies it has not seen and then close
 * the connection without answering: the copy arrived, its answer was lost, and the sender will
 * send it again.
 * @param {{ name?: string, port?: number, status?: number, log?: boolean }} [options]  `log`: one
 *   line per request, as `startOrigin`'s, with the copy id and whether it came before
 */
export async function startCopySink(options = {}) {
  const name = options.name ?? "copy-sink";
  let status = options.status ?? 204;
  /** @type {Map<string, string>} */
  const copies = new Map();
  /** Requests that came without a copy id (best-effort copies), by SHA-256. */
  /** @type {string[]} */
  const unnamed = [];
  let arrivals = 0;
  let duplicates = 0;
  let toLose = 0;
  /** @type {Set<import("node:net").Socket>} */
  const sockets = new Set();
  const server = createServer((req, res) => {
    const hash = createHash("sha256");
    req.on("data", (chunk) => hash.update(chunk));
    req.on("error", () => {});
    req.on("end", () => {
      arrivals++;
      const digest = hash.digest("hex");
      const id = req.headers["x-edge-mirror-id"];
      if (options.log) {
        const again = typeof id === "string" && copies.has(id) ? ", again" : "";
        console.log(
          `[${name}] Host: ${req.headers["x-forwarded-host"] ?? req.headers.host} "${req.method} ${req.url}" ${digest.slice(0, 12)}… copy ${id ?? "(no id)"}${again} → ${status}`,
        );
      }
      if (typeof id !== "string") unnamed.push(digest);
      else if (copies.has(id)) duplicates++;
      else {
        copies.set(id, digest);
        if (toLose > 0) {
          toLose--;
          req.socket.destroy();
          return;
        }
      }
      res.writeHead(status, { "x-served-by": name }).end();
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  const listen = (/** @type {number} */ port) =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve(undefined);
      });
    });
  await listen(options.port ?? 0);
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  let up = true;
  return {
    name,
    port,
    url: `http://127.0.0.1:${port}`,
    /** First body's SHA-256 per copy id. */
    copies,
    unnamed,
    get arrivals() {
      return arrivals;
    },
    get duplicates() {
      return duplicates;
    },
    /** @param {number} code */
    setStatus(code) {
      status = code;
    },
    /** @param {number} n */
    loseAnswers(n) {
      toLose = n;
    },
    /** Stops listening and drops every connection: connections are refused until `up`. */
    async down() {
      if (!up) return;
      up = false;
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(() => resolve(undefined)));
    },
    async up() {
      if (up) return;
      await listen(port);
      up = true;
    },
    close() {
      return this.down();
    },
  };
}

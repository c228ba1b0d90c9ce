/**
 * @module scripts/lib/websocket-origin
 * A WebSocket origin for the end-to-end tests, built on `ws`: it records every handshake (path
 * and query exactly as received, and the headers), echoes each frame as it came (text as text,
 * binary as binary), closes with the code a client asks for (a text frame `close <code>`), and
 * records the close code each connection ended with.
 */
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

/**
 * @typedef {object} Handshake
 * @property {string} url   path and query exactly as received
 * @property {import("node:http").IncomingHttpHeaders} headers
 */

/** A text frame `close 4002` makes the origin close that connection with code 4002. */
export const CLOSE_REQUEST = /^close (\d{4})$/;

export async function startWebSocketOrigin() {
  /** @type {Handshake[]} */
  const handshakes = [];
  /** Close codes the origin received or sent, one per ended connection. @type {number[]} */
  const closes = [];
  /** @type {Array<() => void>} */
  const waiters = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };

  // Plain HTTP requests are answered too, so that a request that lost its upgrade on the way
  // shows up as a 426 rather than as a hang.
  const server = createServer((_req, res) => void res.writeHead(426, { "content-type": "text/plain" }).end("upgrade"));
  const wss = new WebSocketServer({ server });
  wss.on("connection", (socket, req) => {
    handshakes.push({ url: req.url ?? "", headers: req.headers });
    socket.on("message", (data, isBinary) => {
      const asked = isBinary ? null : CLOSE_REQUEST.exec(data.toString());
      if (asked) socket.close(Number(asked[1]), "asked to");
      else socket.send(data, { binary: isBinary });
    });
    socket.on("close", (code) => {
      closes.push(code);
      wake();
    });
    wake();
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;

  return {
    url: `http://127.0.0.1:${port}`,
    handshakes,
    closes,
    /** Resolves once `n` connections have ended, or rejects after `timeoutMs`. @param {number} n */
    async waitForCloses(n, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (closes.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`websocket origin: expected ${n} closed connections, got ${closes.length}`);
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 250));
          waiters.push(() => {
            clearTimeout(timer);
            resolve(undefined);
          });
        });
      }
    },
    reset() {
      handshakes.length = 0;
      closes.length = 0;
    },
    close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

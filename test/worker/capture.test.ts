import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CAPTURES_PREFIX } from "../../src/capture/keys.js";
import { gunzipped, ndjsonLines } from "../../src/capture/lines.js";
import { type CaptureRecord, parseRecord } from "../../src/capture/record.js";
import { bodyBytes } from "../../src/capture/text.js";
import type { MirrorOutcome } from "../../src/record/index.js";
import { interceptFetch, putPolicies, randomBytes, type TestWorker, testWorker } from "./helpers.js";

const PRIMARY = "http://primary.test:8080";
const CANARY = "http://canary.test:9002";
const SECRET = "s3cr3t-value-never-stored";

/** CAPTURE_FLUSH_MS 0: a batch is written in the waitUntil of the request that opened it. */
const testEnv = { ...env, PRIMARY_ORIGIN: PRIMARY, CAPTURE_FLUSH_MS: "0" } as Env;

let worker: TestWorker;
let outcomes: MirrorOutcome[];
let fetches: ReturnType<typeof interceptFetch>;

function send(request: Request, environment: Env = testEnv) {
  return worker.send(request, environment);
}

/** The primary answers JSON echoing what it got, with a session cookie and a secret-looking field. */
function primaryAnswer(req: Request): Response {
  const url = new URL(req.url);
  if (url.pathname.startsWith("/big")) {
    const headers = { "content-type": "application/octet-stream", "content-length": String(300 * 1024) };
    return new Response(randomBytes(300 * 1024), { headers });
  }
  if (url.pathname.startsWith("/down")) throw new TypeError("fetch failed: connection refused");
  if (url.pathname.startsWith("/api/none")) return new Response(null, { status: 204 });
  return Response.json(
    { path: url.pathname, method: req.method, session: SECRET, items: [{ id: 1, price: 25 }] },
    { headers: { "set-cookie": `sid=${SECRET}; HttpOnly`, "x-served-by": "primary" } },
  );
}

async function storedRecords(): Promise<{ records: CaptureRecord[]; raw: string; objects: number }> {
  const records: CaptureRecord[] = [];
  let raw = "";
  const { objects } = await env.MIRROR_CAPTURES.list({ prefix: CAPTURES_PREFIX });
  for (const { key } of objects) {
    const object = (await env.MIRROR_CAPTURES.get(key)) as R2ObjectBody;
    for await (const line of ndjsonLines(await gunzipped(object.body))) {
      if (!("text" in line)) throw new Error(`${key}:${line.line}: ${line.error}`);
      raw += `${line.text}\n`;
      const parsed = parseRecord(JSON.parse(line.text));
      if (!parsed.ok) throw new Error(parsed.error);
      records.push(parsed.record);
    }
  }
  records.sort((a, b) => a.startedAt - b.startedAt || a.request.url.localeCompare(b.request.url));
  return { records, raw, objects: objects.length };
}

beforeEach(async () => {
  await reset();
  worker = testWorker();
  outcomes = worker.outcomes;
  fetches = interceptFetch({ [PRIMARY]: primaryAnswer, [CANARY]: primaryAnswer });
  await putPolicies({
    clusters: { canary: CANARY },
    routes: [
      {
        id: "captured",
        match: { path: { type: "PathPrefix", value: "/api" } },
        capture: { maxBodyBytes: 256 * 1024, redact: { headers: ["x-tenant"] } },
      },
      {
        id: "compared",
        match: { path: { type: "PathPrefix", value: "/cmp" } },
        mirrors: [{ cluster: "canary", compare: true }],
        capture: {},
      },
      {
        id: "compared-dead",
        match: { path: { type: "PathPrefix", value: "/dead" } },
        mirrors: [{ origin: "http://dead.test", compare: true }],
        capture: {},
      },
      {
        id: "small",
        match: { path: { type: "PathPrefix", value: "/big" } },
        capture: { maxBodyBytes: 1000, includeResponse: true },
      },
      {
        id: "no-answer",
        match: { path: { type: "PathPrefix", value: "/quiet" } },
        capture: { includeResponse: false },
      },
      { id: "never", match: { path: { type: "PathPrefix", value: "/never" } }, capture: { percent: 0 } },
      {
        id: "sticky",
        match: { path: { type: "PathPrefix", value: "/sticky" } },
        capture: { percent: 50, sampleBy: { header: "x-user" } },
      },
      { id: "down", match: { path: { type: "PathPrefix", value: "/down" } }, capture: {} },
      { id: "plain", match: { path: { type: "PathPrefix", value: "/plain" } }, mirrors: [{ cluster: "canary" }] },
    ],
  });
});

afterEach(() => {
  fetches.restore();
  vi.restoreAllMocks();
});

describe("capture on the request path", () => {
  it("records the request as the primary got it and the primary's answer, byte for byte", async () => {
    const upload = randomBytes(200 * 1024);
    const json = JSON.stringify({ name: "kettle", qty: 2 });
    const requests = [
      new Request("https://edge.example.com/api/items?page=2&q=a%20b", { headers: { accept: "application/json" } }),
      new Request("https://edge.example.com/api/items", {
        method: "POST",
        body: json,
        headers: { "content-type": "application/json" },
      }),
      new Request("https://edge.example.com/api/blob/7", {
        method: "PUT",
        body: upload,
        headers: { "content-type": "application/octet-stream" },
      }),
      new Request("https://edge.example.com/api/items/1", { method: "HEAD" }),
    ];
    const answers: Uint8Array[] = [];
    for (const request of requests) answers.push((await send(request)).body);

    const { records, objects } = await storedRecords();
    // One object per batch: each request here opened and wrote its own (CAPTURE_FLUSH_MS 0).
    expect(objects).toBe(4);
    expect(records.map((r) => [r.request.method, r.request.url, r.route])).toEqual([
      ["GET", "https://edge.example.com/api/items?page=2&q=a%20b", "captured"],
      ["POST", "https://edge.example.com/api/items", "captured"],
      ["PUT", "https://edge.example.com/api/blob/7", "captured"],
      ["HEAD", "https://edge.example.com/api/items/1", "captured"],
    ]);
    const [get, post, put, head] = records as [CaptureRecord, CaptureRecord, CaptureRecord, CaptureRecord];
    // The request's headers are the primary's: X-Forwarded-* set, no hop count.
    const sentToPrimary = fetches.to(PRIMARY)[0]?.headers ?? {};
    expect(Object.fromEntries(get.request.headers)).toEqual(
      Object.fromEntries(Object.entries(sentToPrimary).filter(([name]) => name !== "x-edge-mirror-hops")),
    );
    expect(get.request.body).toBeNull();
    expect(post.request.body).toEqual({ size: json.length, truncated: false, encoding: "utf8", text: json });
    const putBody = put.request.body;
    expect(putBody).toMatchObject({ size: 200 * 1024, truncated: false, encoding: "base64" });
    expect(bodyBytes(putBody?.encoding ?? "utf8", putBody?.text ?? "")).toEqual(upload);
    expect(fetches.to(PRIMARY)[2]?.body).toEqual(upload);
    // The answer, as the client got it (the session field is a secret: redacted in the record only).
    expect(get.response).toMatchObject({ status: 200, body: { truncated: false, encoding: "utf8" } });
    const clientAnswer = JSON.parse(new TextDecoder().decode(answers[0]));
    expect(clientAnswer.session).toBe(SECRET);
    expect(JSON.parse(get.response?.body?.text ?? "")).toEqual({ ...clientAnswer, session: "[redacted]" });
    expect(head.response?.body).toBeNull();
    for (const r of records) {
      expect(r.latencyMs).toBeGreaterThanOrEqual(0);
      expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it("keeps no credential and no secret-looking value anywhere in R2", async () => {
    await send(
      new Request(`https://edge.example.com/api/login?access_token=${SECRET}&next=%2Fhome`, {
        method: "POST",
        body: JSON.stringify({ user: "ann", password: SECRET, profile: { apiKey: SECRET } }),
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${SECRET}`,
          cookie: `sid=${SECRET}`,
          "x-api-key": SECRET,
          "x-tenant": SECRET,
        },
      }),
    );
    await send(
      new Request("https://edge.example.com/api/form", {
        method: "POST",
        body: `user=ann&password=${SECRET}`,
        headers: { "content-type": "application/x-www-form-urlencoded", "proxy-authorization": `Basic ${SECRET}` },
      }),
    );
    // Asked for by the primary, so it is on every path the record could take.
    expect(fetches.to(PRIMARY)[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);
    const { records, raw } = await storedRecords();
    expect(records).toHaveLength(2);
    expect(raw).not.toContain(SECRET);
    expect(records[0]?.request.redacted).toEqual({
      headers: ["authorization", "cookie", "x-api-key", "x-tenant"],
      query: ["access_token"],
    });
    expect(records[0]?.request.url).toBe("https://edge.example.com/api/login?access_token=%5Bredacted%5D&next=%2Fhome");
    expect(records[0]?.response?.redacted).toEqual({ headers: ["set-cookie"] });
    expect(records[1]?.request.body?.text).toBe("user=ann&password=%5Bredacted%5D");
  });

  it("keeps the first maxBodyBytes of a larger answer, marked truncated, and the client gets all of it", async () => {
    const { body } = await send(new Request("https://edge.example.com/big/file"));
    expect(body.byteLength).toBe(300 * 1024);
    const [record] = (await storedRecords()).records;
    expect(record?.response?.body).toMatchObject({ size: 300 * 1024, truncated: true, encoding: "base64" });
    const kept = record?.response?.body;
    expect(bodyBytes(kept?.encoding ?? "utf8", kept?.text ?? "")).toEqual(body.subarray(0, 1000));
  });

  it("tees the primary's answer once when a compared mirror wants it too", async () => {
    const tee = vi.spyOn(ReadableStream.prototype, "tee");
    await send(new Request("https://edge.example.com/cmp/1"));
    expect(tee).toHaveBeenCalledTimes(1);
    expect(outcomes).toEqual([
      expect.objectContaining({ kind: "sent", compare: { verdict: "match", fields: [], noise: [] } }),
    ]);
    expect((await storedRecords()).records[0]?.response).toMatchObject({ status: 200, body: { truncated: false } });
  });

  it("records the whole answer when the compared mirror fails at once and its comparison ends first", async () => {
    const { body } = await send(new Request("https://edge.example.com/dead/1"));
    expect(outcomes).toEqual([
      expect.objectContaining({ kind: "failed", compare: expect.objectContaining({ verdict: "error" }) }),
    ]);
    const recorded = (await storedRecords()).records[0]?.response?.body;
    expect(recorded).toMatchObject({ truncated: false, redacted: true });
    expect(JSON.parse(recorded?.text ?? "")).toEqual({
      ...JSON.parse(new TextDecoder().decode(body)),
      session: "[redacted]",
    });
  });

  it("without includeResponse, records the answer's status and headers and reads none of it", async () => {
    const tee = vi.spyOn(ReadableStream.prototype, "tee");
    await send(new Request("https://edge.example.com/quiet"));
    expect(tee).not.toHaveBeenCalled();
    expect((await storedRecords()).records[0]?.response).toMatchObject({ status: 200, body: null });
  });

  it("records an answer without a body as an empty one, to compare", async () => {
    await send(new Request("https://edge.example.com/api/none", { method: "DELETE" }));
    expect((await storedRecords()).records[0]?.response).toMatchObject({
      status: 204,
      body: { size: 0, truncated: false, encoding: "utf8", text: "" },
    });
  });

  it("samples by sampleBy alike for every request of a user, apart from the random draw", async () => {
    const keyed = { ...testEnv, MIRROR_MARKER_KEY: "capture-test-marker-key-0123456789abcdef" } as Env;
    const users = Array.from({ length: 16 }, (_, i) => `user-${i}`);
    for (const user of users) {
      for (let i = 0; i < 2; i++) {
        // The random draw would always sample (0 < 50 %): only the user's value decides.
        await send(new Request(`https://edge.example.com/sticky/${i}`, { headers: { "x-user": user } }), keyed);
      }
    }
    const byUser = new Map<string, number>();
    for (const r of (await storedRecords()).records) {
      const user = r.request.headers.find(([name]) => name === "x-user")?.[1] as string;
      byUser.set(user, (byUser.get(user) ?? 0) + 1);
    }
    expect([...byUser.values()].every((n) => n === 2)).toBe(true);
    expect(byUser.size).toBeGreaterThan(0);
    expect(byUser.size).toBeLessThan(users.length);
  });

  it("records a failed primary with the client's error code", async () => {
    const { response } = await send(new Request("https://edge.example.com/down"));
    expect(response.status).toBe(502);
    expect((await storedRecords()).records[0]).toMatchObject({
      route: "down",
      response: null,
      latencyMs: null,
      error: "primary_unreachable",
    });
  });

  it("reads and writes nothing for unsampled requests and routes without capture", async () => {
    const tee = vi.spyOn(ReadableStream.prototype, "tee");
    await send(new Request("https://edge.example.com/never", { method: "POST", body: "x" }));
    await send(new Request("https://edge.example.com/plain"));
    await send(new Request("https://edge.example.com/unmatched", { method: "POST", body: "x" }));
    expect(tee).not.toHaveBeenCalled();
    expect((await storedRecords()).objects).toBe(0);
  });

  it("is off without the MIRROR_CAPTURES binding, says so once, and serves", async () => {
    const { MIRROR_CAPTURES: _bucket, ...unbound } = testEnv;
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    for (let i = 0; i < 3; i++) {
      const { response } = await send(new Request("https://edge.example.com/api/x"), unbound as Env);
      expect(response.status).toBe(200);
    }
    const lines = errors.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("capture_unavailable"));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ msg: "edge-mirror.capture_unavailable", route: "captured" });
  });

  it("keeps nothing the isolate's memory budget cannot hold, says so, and the client gets everything", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const tight = { ...testEnv, MIRROR_MEMORY_BUDGET_BYTES: String(256 * 1024) } as Env;
    const upload = randomBytes(200 * 1024);
    const { response, body } = await send(
      new Request("https://edge.example.com/api/blob", { method: "PUT", body: upload }),
      tight,
    );
    expect(response.status).toBe(200);
    expect(JSON.parse(new TextDecoder().decode(body))).toMatchObject({ path: "/api/blob", method: "PUT" });
    expect(fetches.to(PRIMARY)[0]?.body).toEqual(upload);
    // The body fitted while it was read; its record (base64, two bytes a character) does not.
    expect((await storedRecords()).objects).toBe(0);
    const lost = errors.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("capture_lost"));
    expect(lost.map((l) => JSON.parse(l))).toEqual([
      { msg: "edge-mirror.capture_lost", records: 1, reasons: { memory_budget: 1 } },
    ]);
  });
});

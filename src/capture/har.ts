/**
 * @module capture/har
 * Pure: captured records as HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), the format
 * browsers' devtools, k6 and many other tools read, and back. The request is the entry's request
 * and the primary's answer its response; what HAR has no field for (the route, the request id,
 * truncated, redacted or omitted bodies, the redaction rules) goes under `_edgeMirror`, so that
 * `recordFromHar` gives back the record exactly. A HAR from elsewhere (a browser's) reads too,
 * from its standard fields. A binary request body is base64 with `postData._encoding: "base64"`
 * (HAR has `encoding` for response content only).
 */
import { type CaptureRecord, parseRecord, RECORD_VERSION, type RecordedBody } from "./record.js";
import type { BodyEncoding } from "./text.js";

type NameValue = { name: string; value: string };

/** `_edgeMirror` of an entry: the record's fields that HAR has no place for. */
interface EdgeMirrorFields {
  v: typeof RECORD_VERSION;
  id: string;
  route: string;
  startedAt: number;
  latencyMs: number | null;
  error?: string;
  request: { body: RecordedBody | null; redacted: CaptureRecord["request"]["redacted"] };
  response: { body: RecordedBody | null; redacted: { headers: string[] } } | null;
  redact: CaptureRecord["redact"];
}

export interface HarEntry {
  startedDateTime: string;
  time: number;
  request: {
    method: string;
    url: string;
    httpVersion: string;
    cookies: NameValue[];
    headers: NameValue[];
    queryString: NameValue[];
    postData?: { mimeType: string; text: string; _encoding?: "base64" };
    headersSize: number;
    bodySize: number;
  };
  response: {
    status: number;
    statusText: string;
    httpVersion: string;
    cookies: NameValue[];
    headers: NameValue[];
    content: { size: number; mimeType: string; text?: string; encoding?: "base64" };
    redirectURL: string;
    headersSize: number;
    bodySize: number;
  };
  cache: Record<string, never>;
  timings: { send: number; wait: number; receive: number };
  _edgeMirror?: EdgeMirrorFields;
}

const headerList = (pairs: ReadonlyArray<[string, string]>): NameValue[] =>
  pairs.map(([name, value]) => ({ name, value }));

function headerValue(pairs: ReadonlyArray<[string, string]>, name: string): string | undefined {
  for (const [n, v] of pairs) if (n === name) return v;
  return undefined;
}

function queryList(url: string): NameValue[] {
  const at = url.indexOf("?");
  if (at === -1) return [];
  const hash = url.indexOf("#", at);
  const query = url.slice(at + 1, hash === -1 ? undefined : hash);
  return [...new URLSearchParams(query)].map(([name, value]) => ({ name, value }));
}

export function harEntry(record: CaptureRecord): HarEntry {
  const { request, response } = record;
  const requestType = headerValue(request.headers, "content-type") ?? "";
  const reqBody = request.body;
  const entry: HarEntry = {
    startedDateTime: new Date(record.startedAt).toISOString(),
    time: record.latencyMs ?? 0,
    request: {
      method: request.method,
      url: request.url,
      httpVersion: "HTTP/1.1",
      // Cookies are redacted with the Cookie header they came in.
      cookies: [],
      headers: headerList(request.headers),
      queryString: queryList(request.url),
      headersSize: -1,
      bodySize: reqBody ? (reqBody.size ?? -1) : 0,
    },
    response: {
      status: response?.status ?? 0,
      statusText: "",
      httpVersion: "HTTP/1.1",
      cookies: [],
      headers: response ? headerList(response.headers) : [],
      content: { size: 0, mimeType: response ? (headerValue(response.headers, "content-type") ?? "") : "" },
      redirectURL: response ? (headerValue(response.headers, "location") ?? "") : "",
      headersSize: -1,
      bodySize: response?.body ? (response.body.size ?? -1) : -1,
    },
    cache: {},
    timings: { send: 0, wait: record.latencyMs ?? 0, receive: 0 },
    _edgeMirror: {
      v: RECORD_VERSION,
      id: record.id,
      route: record.route,
      startedAt: record.startedAt,
      latencyMs: record.latencyMs,
      ...(record.error === undefined ? {} : { error: record.error }),
      request: { body: withoutText(reqBody), redacted: request.redacted },
      response: response ? { body: withoutText(response.body), redacted: response.redacted } : null,
      redact: record.redact,
    },
  };
  if (reqBody?.text !== undefined) {
    entry.request.postData = {
      mimeType: requestType,
      text: reqBody.text,
      ...(reqBody.encoding === "base64" ? { _encoding: "base64" as const } : {}),
    };
  }
  const resBody = response?.body;
  if (resBody) {
    entry.response.content.size = resBody.size ?? (resBody.text === undefined ? 0 : -1);
    if (resBody.text !== undefined) {
      entry.response.content.text = resBody.text;
      if (resBody.encoding === "base64") entry.response.content.encoding = "base64";
    }
  }
  return entry;
}

/** A body's fields but the bytes, which HAR carries in its own fields. */
function withoutText(body: RecordedBody | null): RecordedBody | null {
  if (!body) return null;
  const { text: _text, encoding: _encoding, ...rest } = body;
  return rest;
}

export const HAR_CREATOR = { name: "edge-mirror", version: "1" };

/** A HAR document's text up to its first entry: `harHead() + entries.join(",") + harTail(…)`. */
export function harHead(comment?: string): string {
  return `{"log":{"version":"1.2","creator":${JSON.stringify(HAR_CREATOR)},${comment === undefined ? "" : `"comment":${JSON.stringify(comment)},`}"entries":[`;
}

/** What closes a HAR document, with what the export wants to say about itself under `_edgeMirror`. */
export function harTail(summary: object): string {
  return `],"_edgeMirror":${JSON.stringify(summary)}}}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function pairsOf(list: unknown, where: string): Array<[string, string]> {
  if (!Array.isArray(list)) throw new Error(`${where} must be a list`);
  return list.map((item, i) => {
    if (!isObject(item) || typeof item.name !== "string" || typeof item.value !== "string") {
      throw new Error(`${where}[${i}] must have a name and a value`);
    }
    return [item.name.toLowerCase(), item.value];
  });
}

/** A body from HAR's fields, for a HAR that has no `_edgeMirror` (a browser's). */
function foreignBody(text: unknown, encoding: BodyEncoding, size: unknown): RecordedBody | null {
  if (typeof text !== "string") return null;
  return { size: typeof size === "number" && size >= 0 ? size : null, truncated: false, encoding, text };
}

/**
 * The record an entry was made from (or, for a HAR from elsewhere, the closest record to it),
 * or what is wrong with the entry.
 */
export function recordFromHar(entry: unknown): { ok: true; record: CaptureRecord } | { ok: false; error: string } {
  try {
    if (!isObject(entry) || !isObject(entry.request) || !isObject(entry.response)) {
      throw new Error("must have a request and a response");
    }
    const req = entry.request;
    const res = entry.response;
    const ours = isObject(entry._edgeMirror) ? (entry._edgeMirror as unknown as EdgeMirrorFields) : undefined;
    // HTTP/2 pseudo-headers (`:authority`, `:path`) in browsers' HARs are not headers to send.
    const requestHeaders = pairsOf(req.headers, "request.headers").filter(([name]) => !name.startsWith(":"));
    const responseHeaders = pairsOf(res.headers, "response.headers").filter(([name]) => !name.startsWith(":"));
    const postData = isObject(req.postData) ? req.postData : undefined;
    const postEncoding: BodyEncoding = postData?._encoding === "base64" ? "base64" : "utf8";
    const content = isObject(res.content) ? res.content : undefined;
    const contentEncoding: BodyEncoding = content?.encoding === "base64" ? "base64" : "utf8";
    const startedAt = ours?.startedAt ?? Date.parse(String(entry.startedDateTime));
    const status = Number(res.status);
    const record = {
      v: RECORD_VERSION,
      id: ours?.id ?? "",
      route: ours?.route ?? "",
      startedAt,
      latencyMs: ours ? ours.latencyMs : typeof entry.time === "number" && entry.time >= 0 ? entry.time : null,
      request: {
        method: req.method,
        url: req.url,
        headers: requestHeaders,
        body: ours
          ? withText(ours.request.body, postData?.text, postEncoding)
          : foreignBody(postData?.text, postEncoding, req.bodySize),
        redacted: ours?.request.redacted ?? { headers: [], query: [] },
      },
      response:
        status === 0 || (ours && ours.response === null)
          ? null
          : {
              status,
              headers: responseHeaders,
              body: ours
                ? withText(ours.response?.body ?? null, content?.text, contentEncoding)
                : foreignBody(content?.text, contentEncoding, content?.size),
              redacted: ours?.response?.redacted ?? { headers: [] },
            },
      ...(ours?.error === undefined ? {} : { error: ours.error }),
      redact: ours?.redact ?? { headers: [], jsonPaths: [], secrets: false },
    };
    return parseRecord(record);
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

/** `_edgeMirror`'s body fields with the bytes HAR carried put back. */
function withText(body: RecordedBody | null, text: unknown, encoding: BodyEncoding): RecordedBody | null {
  if (!body) return null;
  if (body.omitted !== undefined || typeof text !== "string") return body;
  return { ...body, encoding, text };
}

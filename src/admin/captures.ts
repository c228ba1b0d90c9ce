/**
 * @module admin/captures
 * `GET <ADMIN_PREFIX>/api/captures?route=R&from=…&to=…&limit=N&format=har|ndjson`: one route's
 * captured requests of a time range, read from the `MIRROR_CAPTURES` bucket and streamed as HAR
 * (default) or NDJSON (capture/export). `from` and `to` are ISO 8601 times or epoch milliseconds
 * (default: the last hour); `limit` is 1–100,000 records (default 10,000). One request reads at
 * most `MAX_EXPORT_OBJECTS` objects; a HAR says at its end whether it is complete and where the
 * next page starts (`log._edgeMirror.nextFrom`). `GET …/api/captures/routes` lists the routes that
 * have captures. Behind the admin gate like every `api/` path.
 */
import { Hono } from "hono/tiny";
import { capturedRoutes, exportParams, exportStream } from "../capture/export.js";
import { type AdminEnv, jsonError } from "./http.js";

/** Objects one export reads at most: each read is a subrequest, and a request may make 10,000. */
export const MAX_EXPORT_OBJECTS = 5000;

const unbound = () =>
  jsonError(503, "capture_unavailable", "no MIRROR_CAPTURES R2 binding: add it as in wrangler.toml");

/** The captures API, built once per admin app. */
export function capturesApi(): Hono<AdminEnv> {
  const capturesApi = new Hono<AdminEnv>();
  capturesApi.get("/", (c) => {
    const bucket = c.env.MIRROR_CAPTURES;
    if (!bucket) return unbound();
    const params = exportParams(c.req.query(), Date.now());
    if (!params.ok) return jsonError(400, "invalid_query", params.message);
    const { format, ...query } = params.value;
    const body = exportStream(bucket, { ...query, maxObjects: MAX_EXPORT_OBJECTS }, format);
    return new Response(body, {
      headers: {
        "content-type": format === "har" ? "application/json; charset=utf-8" : "application/x-ndjson; charset=utf-8",
        "content-disposition": `attachment; filename="${query.route}.${format}"`,
        "cache-control": "no-store",
      },
    });
  });

  capturesApi.get("/routes", async (c) => {
    const bucket = c.env.MIRROR_CAPTURES;
    if (!bucket) return unbound();
    const routes = await capturedRoutes(bucket);
    return c.json({ routes }, 200, { "cache-control": "no-store" });
  });
  return capturesApi;
}

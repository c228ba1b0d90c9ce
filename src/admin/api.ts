/**
 * @module admin/api
 * The policy API under `<ADMIN_PREFIX>/api`: list, get, put and delete routes and clusters in
 * KV, with the same validation and cross-checks as `npm run policy`. A write is seen at once by
 * the isolate that made it; elsewhere within the policy cache TTL plus KV's propagation (≤ 60 s).
 */
import { Hono } from "hono";
import { PolicyValidationError } from "../errors/index.js";
import { isolateFor } from "../isolate/index.js";
import { clusterReferences, crossCheck } from "../policy/cross-check.js";
import { ClusterName, parseCluster, parseRoute, type Route } from "../policy/index.js";
import { CLUSTER_PREFIX, getTexts, listKeys, parseStoredRoute, ROUTE_PREFIX } from "../store/index.js";
import { type AdminEnv, jsonError } from "./index.js";

/** Policies are small; anything larger is a mistake, not a policy. */
const MAX_BODY_BYTES = 256 * 1024;

export const policyApi = new Hono<AdminEnv>();

async function readAll(kv: KVNamespace, prefix: string): Promise<Map<string, unknown>> {
  const texts = await getTexts(kv, await listKeys(kv, prefix));
  const out = new Map<string, unknown>();
  for (const [key, text] of texts) {
    if (text === null) continue;
    try {
      out.set(key.slice(prefix.length), JSON.parse(text));
    } catch {
      out.set(key.slice(prefix.length), { invalid: text });
    }
  }
  return out;
}

async function storedRoutes(kv: KVNamespace): Promise<Array<{ route: Route; at: string }>> {
  const texts = await getTexts(kv, await listKeys(kv, ROUTE_PREFIX));
  const routes: Array<{ route: Route; at: string }> = [];
  for (const [key, text] of texts) {
    if (text === null) continue;
    try {
      routes.push({ route: parseStoredRoute(key, text), at: key });
    } catch {
      // An invalid stored route is the worker's to skip and log; it blocks no edit here.
    }
  }
  return routes;
}

/** Reads the JSON body: 413 when too large, 400 when not JSON. */
async function jsonBody(request: Request): Promise<{ ok: true; value: unknown } | { ok: false; response: Response }> {
  const text = await request.text();
  if (text.length > MAX_BODY_BYTES) {
    return {
      ok: false,
      response: jsonError(413, "too_large", `a policy body must be at most ${MAX_BODY_BYTES} bytes`),
    };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return {
      ok: false,
      response: jsonError(400, "invalid_json", `the body is not valid JSON: ${(err as Error).message}`),
    };
  }
}

/** 422 with the error's own `path: rule` message and its issues, as the CLI prints them. */
function invalid(error: PolicyValidationError): Response {
  return Response.json({ error: error.code, message: error.message, issues: error.issues }, { status: 422 });
}

function refuse(path: string, message: string): Response {
  return invalid(new PolicyValidationError([{ path, message }]));
}

type Kind = "route" | "cluster";
const PREFIX: Record<Kind, string> = { route: ROUTE_PREFIX, cluster: CLUSTER_PREFIX };

function notFound(kind: Kind, name: string): Response {
  return jsonError(404, "not_found", `no ${kind} "${name}"`);
}

async function stored(kv: KVNamespace, kind: Kind, name: string): Promise<string | null> {
  return kv.get(`${PREFIX[kind]}${name}`);
}

/** GET of one stored document, as written. */
async function getOne(kv: KVNamespace, kind: Kind, name: string): Promise<Response> {
  const text = await stored(kv, kind, name);
  return text === null ? notFound(kind, name) : Response.json(JSON.parse(text));
}

policyApi.get("/routes", async (c) => {
  const routes = await readAll(c.env.MIRROR_CONFIG, ROUTE_PREFIX);
  return c.json({ routes: [...routes.values()] });
});

policyApi.get("/routes/:id", (c) => getOne(c.env.MIRROR_CONFIG, "route", c.req.param("id")));

policyApi.put("/routes/:id", async (c) => {
  const id = c.req.param("id");
  const body = await jsonBody(c.req.raw);
  if (!body.ok) return body.response;
  let route: Route;
  try {
    route = parseRoute(body.value);
  } catch (err) {
    if (err instanceof PolicyValidationError) return invalid(err);
    throw err;
  }
  if (route.id !== id) return refuse("id", `must equal the id in the URL ("${id}")`);
  const kv = c.env.MIRROR_CONFIG;
  const [clusters, others] = await Promise.all([listKeys(kv, CLUSTER_PREFIX), storedRoutes(kv)]);
  const checks = crossCheck(
    [...others.filter((o) => o.route.id !== id), { route, at: "route" }],
    new Set(clusters.map((k) => k.slice(CLUSTER_PREFIX.length))),
  );
  const mine = (p: { path: string }) => p.path === "route" || p.path.startsWith("route.");
  const errors = checks.errors.filter(mine);
  if (errors.length > 0) {
    return invalid(
      new PolicyValidationError(errors.map((e) => ({ path: e.path.replace(/^route\.?/, ""), message: e.message }))),
    );
  }
  const existed = (await stored(kv, "route", id)) !== null;
  await kv.put(`${ROUTE_PREFIX}${id}`, JSON.stringify(body.value));
  isolateFor(c.env).policies.invalidate();
  return c.json({ route: body.value, warnings: checks.warnings.map((w) => w.message) }, existed ? 200 : 201);
});

policyApi.delete("/routes/:id", async (c) => {
  const id = c.req.param("id");
  if ((await stored(c.env.MIRROR_CONFIG, "route", id)) === null) return notFound("route", id);
  await c.env.MIRROR_CONFIG.delete(`${ROUTE_PREFIX}${id}`);
  isolateFor(c.env).policies.invalidate();
  return c.body(null, 204);
});

policyApi.get("/clusters", async (c) => {
  const clusters = await readAll(c.env.MIRROR_CONFIG, CLUSTER_PREFIX);
  return c.json({ clusters: Object.fromEntries(clusters) });
});

policyApi.get("/clusters/:name", (c) => getOne(c.env.MIRROR_CONFIG, "cluster", c.req.param("name")));

policyApi.put("/clusters/:name", async (c) => {
  const name = c.req.param("name");
  const named = ClusterName.safeParse(name);
  if (!named.success) return refuse("name", named.error.issues[0]?.message ?? "is not a valid cluster name");
  const body = await jsonBody(c.req.raw);
  if (!body.ok) return body.response;
  try {
    parseCluster(body.value);
  } catch (err) {
    if (err instanceof PolicyValidationError) return invalid(err);
    throw err;
  }
  const existed = (await stored(c.env.MIRROR_CONFIG, "cluster", name)) !== null;
  await c.env.MIRROR_CONFIG.put(`${CLUSTER_PREFIX}${name}`, JSON.stringify(body.value));
  isolateFor(c.env).policies.invalidate();
  return c.json({ cluster: body.value }, existed ? 200 : 201);
});

policyApi.delete("/clusters/:name", async (c) => {
  const name = c.req.param("name");
  if ((await stored(c.env.MIRROR_CONFIG, "cluster", name)) === null) return notFound("cluster", name);
  const users = (await storedRoutes(c.env.MIRROR_CONFIG)).filter(({ route }) =>
    clusterReferences(route).some((ref) => ref.cluster === name),
  );
  if (users.length > 0) {
    return jsonError(
      409,
      "cluster_in_use",
      `routes ${users.map((u) => `"${u.route.id}"`).join(", ")} still name cluster "${name}"`,
    );
  }
  await c.env.MIRROR_CONFIG.delete(`${CLUSTER_PREFIX}${name}`);
  isolateFor(c.env).policies.invalidate();
  return c.body(null, 204);
});

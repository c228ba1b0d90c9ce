/**
 * @module admin/api
 * The policy API under `<ADMIN_PREFIX>/api`: list, get, put and delete routes and clusters
 * through the `PolicyStore`, with the same validation and cross-checks as `npm run policy`. A write is seen at once by
 * the isolate that made it; elsewhere within the policy cache TTL plus KV's propagation (≤ 60 s).
 */
import { Hono } from "hono";
import { PolicyValidationError } from "../errors/index.js";
import { isolateFor } from "../isolate/index.js";
import { clusterReferences, crossCheck } from "../policy/cross-check.js";
import { ClusterName, parseCluster, parseRoute, type Route } from "../policy/index.js";
import { clusterKey, type PolicyKind, parsePolicyKey, policyKey, routeKey } from "../store/keys.js";
import { parseStoredPolicies, storedDocument } from "../store/parse.js";
import { kvPolicyStore, type PolicyStore } from "../store/policy-store.js";
import { type AdminEnv, jsonError } from "./index.js";

/** Policies are small; anything larger is a mistake, not a policy. */
const MAX_BODY_BYTES = 256 * 1024;

export const policyApi = new Hono<AdminEnv>();

const storeOf = (env: Env): PolicyStore => kvPolicyStore(env.MIRROR_CONFIG);

/** Every stored document of one kind, as written, by id or name (a null-prototype object). */
async function documents(store: PolicyStore, kind: PolicyKind): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = Object.create(null);
  for (const [key, text] of await store.readAll()) {
    const parsed = parsePolicyKey(key);
    if (parsed?.kind === kind) out[parsed.name] = storedDocument(text);
  }
  return out;
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

function notFound(kind: PolicyKind, name: string): Response {
  return jsonError(404, "not_found", `no ${kind} "${name}"`);
}

/** GET of one stored document, as written. */
async function getOne(store: PolicyStore, kind: PolicyKind, name: string): Promise<Response> {
  const text = await store.get(policyKey(kind, name));
  return text === null ? notFound(kind, name) : Response.json(storedDocument(text));
}

policyApi.get("/routes", async (c) => c.json({ routes: Object.values(await documents(storeOf(c.env), "route")) }));

policyApi.get("/routes/:id", (c) => getOne(storeOf(c.env), "route", c.req.param("id")));

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
  const store = storeOf(c.env);
  const texts = await store.readAll();
  const stored = parseStoredPolicies(texts);
  const others = [...stored.routes].filter(([other]) => other !== id);
  const checks = crossCheck(
    [...others.map(([other, r]) => ({ route: r, at: routeKey(other) })), { route, at: "route" }],
    new Set(stored.clusters.keys()),
  );
  const mine = (p: { path: string }) => p.path === "route" || p.path.startsWith("route.");
  const errors = checks.errors.filter(mine);
  if (errors.length > 0) {
    return invalid(
      new PolicyValidationError(errors.map((e) => ({ path: e.path.replace(/^route\.?/, ""), message: e.message }))),
    );
  }
  const key = routeKey(id);
  await store.put([[key, JSON.stringify(body.value)]]);
  isolateFor(c.env).policies.invalidate();
  return c.json({ route: body.value, warnings: checks.warnings.map((w) => w.message) }, texts.has(key) ? 200 : 201);
});

policyApi.delete("/routes/:id", async (c) => {
  const id = c.req.param("id");
  const store = storeOf(c.env);
  if ((await store.get(routeKey(id))) === null) return notFound("route", id);
  await store.delete([routeKey(id)]);
  isolateFor(c.env).policies.invalidate();
  return c.body(null, 204);
});

policyApi.get("/clusters", async (c) => c.json({ clusters: await documents(storeOf(c.env), "cluster") }));

policyApi.get("/clusters/:name", (c) => getOne(storeOf(c.env), "cluster", c.req.param("name")));

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
  const store = storeOf(c.env);
  const existed = (await store.get(clusterKey(name))) !== null;
  await store.put([[clusterKey(name), JSON.stringify(body.value)]]);
  isolateFor(c.env).policies.invalidate();
  return c.json({ cluster: body.value }, existed ? 200 : 201);
});

policyApi.delete("/clusters/:name", async (c) => {
  const name = c.req.param("name");
  const store = storeOf(c.env);
  if ((await store.get(clusterKey(name))) === null) return notFound("cluster", name);
  const { routes } = parseStoredPolicies(await store.readAll());
  const users = [...routes.values()].filter((route) => clusterReferences(route).some((r) => r.cluster === name));
  if (users.length > 0) {
    return jsonError(
      409,
      "cluster_in_use",
      `routes ${users.map((u) => `"${u.id}"`).join(", ")} still name cluster "${name}"`,
    );
  }
  await store.delete([clusterKey(name)]);
  isolateFor(c.env).policies.invalidate();
  return c.body(null, 204);
});

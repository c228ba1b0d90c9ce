/**
 * @module admin/api
 * The policy API under `<ADMIN_PREFIX>/api`: list, get, put and delete routes and clusters
 * through the `PolicyStore`, with the same validation and cross-checks as `npm run policy`.
 * Handlers throw typed errors; the admin app turns them into statuses. A write is seen at once
 * by the isolate that made it; it is then published (store/publish, inside `waitUntil`), and the
 * other isolates see it within the policy cache TTL plus KV's propagation (≤ 60 s).
 */
import type { Context } from "hono";
import { Hono } from "hono/tiny";
import { clusterReferences, crossCheck } from "../policy/cross-check.js";
import { ClusterName, PolicyValidationError, parseCluster, parseRoute } from "../policy/index.js";
import { clusterKey, type PolicyKind, parsePolicyKey, policyKey, routeKey } from "../store/keys.js";
import { parseStoredPolicies, storedDocument } from "../store/parse.js";
import { kvPolicyStore, type PolicyStore } from "../store/policy-store.js";
import { ConflictError, InvalidJsonError, NotFoundError } from "./errors.js";
import type { AdminEnv } from "./http.js";

const storeOf = (env: Env): PolicyStore => kvPolicyStore(env.MIRROR_CONFIG);

/** The body as JSON; its size was limited before it was read (see createAdminApp). */
async function jsonBody(request: Request): Promise<unknown> {
  const text = await request.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidJsonError(err);
  }
}

/** Every stored document of one kind, as written, by id or name (a null-prototype object). */
async function documents(store: PolicyStore, kind: PolicyKind): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = Object.create(null);
  for (const [key, text] of await store.readAll()) {
    const parsed = parsePolicyKey(key);
    if (parsed?.kind === kind) out[parsed.name] = storedDocument(text);
  }
  return out;
}

async function getOne(store: PolicyStore, kind: PolicyKind, name: string): Promise<Response> {
  const text = await store.get(policyKey(kind, name));
  if (text === null) throw new NotFoundError(`no ${kind} "${name}"`);
  return Response.json(storedDocument(text));
}

async function deleteOne(c: Context<AdminEnv>, kind: PolicyKind, name: string, beforeDelete?: () => Promise<void>) {
  const store = storeOf(c.env);
  const key = policyKey(kind, name);
  if ((await store.get(key)) === null) throw new NotFoundError(`no ${kind} "${name}"`);
  await beforeDelete?.();
  await store.delete([key]);
  written(c, store, key, null);
  return new Response(null, { status: 204 });
}

/** After a write: this isolate serves it from its next request on, and it is published for the others. */
function written(c: Context<AdminEnv>, store: PolicyStore, key: string, text: string | null): void {
  const admin = c.get("admin");
  admin.policies.invalidate();
  admin.publisher.changed(store, key, text, (p) => c.executionCtx.waitUntil(p));
}

/** Issues of the route at `route` only, with their paths relative to the route. */
function ownIssues(issues: ReadonlyArray<{ path: string; message: string }>) {
  return issues
    .filter((issue) => issue.path === "route" || issue.path.startsWith("route."))
    .map((issue) => ({ path: issue.path.replace(/^route\.?/, ""), message: issue.message }));
}

/** The policy API: every route answers from KV, and a write is seen at once by this isolate. */
export function policyApi(): Hono<AdminEnv> {
  const policyApi = new Hono<AdminEnv>();
  policyApi.get("/routes", async (c) => c.json({ routes: Object.values(await documents(storeOf(c.env), "route")) }));

  policyApi.get("/routes/:id", (c) => getOne(storeOf(c.env), "route", c.req.param("id")));

  policyApi.put("/routes/:id", async (c) => {
    const id = c.req.param("id");
    const document = await jsonBody(c.req.raw);
    const route = parseRoute(document);
    if (route.id !== id)
      throw new PolicyValidationError([{ path: "id", message: `must equal the id in the URL ("${id}")` }]);
    const store = storeOf(c.env);
    const texts = await store.readAll();
    const stored = parseStoredPolicies(texts);
    const others = [...stored.routes].filter(([other]) => other !== id);
    const checks = crossCheck(
      [...others.map(([other, r]) => ({ route: r, at: routeKey(other) })), { route, at: "route" }],
      new Set(stored.clusters.keys()),
    );
    const errors = ownIssues(checks.errors);
    if (errors.length > 0) throw new PolicyValidationError(errors);
    const key = routeKey(id);
    const text = JSON.stringify(document);
    await store.put([[key, text]]);
    written(c, store, key, text);
    return c.json({ route: document, warnings: checks.warnings.map((w) => w.message) }, texts.has(key) ? 200 : 201);
  });

  policyApi.delete("/routes/:id", (c) => deleteOne(c, "route", c.req.param("id")));

  policyApi.get("/clusters", async (c) => c.json({ clusters: await documents(storeOf(c.env), "cluster") }));

  policyApi.get("/clusters/:name", (c) => getOne(storeOf(c.env), "cluster", c.req.param("name")));

  policyApi.put("/clusters/:name", async (c) => {
    const name = c.req.param("name");
    const named = ClusterName.safeParse(name);
    if (!named.success) {
      throw new PolicyValidationError([
        { path: "name", message: named.error.issues[0]?.message ?? "is not a valid cluster name" },
      ]);
    }
    const document = await jsonBody(c.req.raw);
    parseCluster(document);
    const store = storeOf(c.env);
    const key = clusterKey(name);
    const existed = (await store.get(key)) !== null;
    const text = JSON.stringify(document);
    await store.put([[key, text]]);
    written(c, store, key, text);
    return c.json({ cluster: document }, existed ? 200 : 201);
  });

  policyApi.delete("/clusters/:name", (c) =>
    deleteOne(c, "cluster", c.req.param("name"), async () => {
      const name = c.req.param("name");
      const { routes } = parseStoredPolicies(await storeOf(c.env).readAll());
      const users = [...routes.values()].filter((route) => clusterReferences(route).some((r) => r.cluster === name));
      if (users.length > 0) {
        throw new ConflictError(
          "cluster_in_use",
          `routes ${users.map((u) => `"${u.id}"`).join(", ")} still name cluster "${name}"`,
        );
      }
    }),
  );
  return policyApi;
}

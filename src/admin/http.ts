/**
 * @module admin/http
 * What every admin handler shares: the Hono environment (the token that opened the surface is
 * a context variable, set once by the gate) and the JSON error body.
 */
export type AdminEnv = { Bindings: Env; Variables: { adminToken: string } };

export function jsonError(status: number, error: string, message: string, headers: HeadersInit = {}): Response {
  return Response.json({ error, message }, { status, headers });
}

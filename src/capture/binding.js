// @ts-check
/**
 * @module capture/binding
 * The R2 binding captured requests are written to (wrangler.toml). Plain JavaScript (typed by
 * binding.d.ts) so that the Node tooling — the capture CLI and the local launchers — shares it
 * without a TypeScript loader.
 */
export const CAPTURES_BINDING = "MIRROR_CAPTURES";

/**
 * @module admin/dashboard/browser (its signature)
 * What the worker sees of the dashboard's browser script: one function, never called in the
 * worker — page.ts serves its source text. The script itself is checked against the browser's
 * libraries (tsconfig.browser.json), which the worker's type check does not have.
 */
export function dashboard(): void;

/** The bench's floor (floor.mjs), as the TypeScript entries that run it see it. */
declare const floor: {
  fetch(request: Request, env: object, ctx: { waitUntil(promise: Promise<unknown>): void }): Promise<Response>;
};
export default floor;

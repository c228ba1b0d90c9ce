import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { policyJsonSchema, SCHEMA_PATH } from "../../scripts/schema.js";

it("schema/policy.schema.json is generated from the current zod schema (run npm run schema)", () => {
  expect(readFileSync(SCHEMA_PATH, "utf8")).toBe(policyJsonSchema());
});

it("describes the policy file's fields, defaults included as optional", () => {
  const schema = JSON.parse(policyJsonSchema());
  const route = schema.properties.routes.items;
  expect(route.required).toEqual(["id"]);
  expect(route.properties.mirrors.items.properties.percent).toMatchObject({ type: "number", minimum: 0, maximum: 100 });
  expect(route.properties.match.properties.path.oneOf ?? route.properties.match.properties.path.anyOf).toHaveLength(3);
  expect(route.additionalProperties).toBe(false);
});

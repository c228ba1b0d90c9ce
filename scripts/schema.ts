/**
 * @module scripts/schema
 * `npm run schema`: writes `schema/policy.schema.json` from the one zod schema, so that editors
 * complete and check policy files (`"$schema": "./schema/policy.schema.json"`). A test fails when
 * the checked-in file is stale.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as z from "zod/mini";
import { editorHints, PolicyFile } from "../src/policy/index.js";

export const SCHEMA_PATH = fileURLToPath(new URL("../schema/policy.schema.json", import.meta.url));

/** The schemas' hints for editors (`editorHints`), which only this file needs. */
for (const [schema, hints] of editorHints()) z.globalRegistry.add(schema, hints);

export function policyJsonSchema(): string {
  const schema = z.toJSONSchema(PolicyFile, { io: "input", unrepresentable: "any", target: "draft-2020-12" });
  const document = {
    ...schema,
    title: "edge-mirror policy file",
    description:
      "Clusters and routes for edge-mirror. Rules that JSON Schema cannot express (regex safety, origin form, exactly one of cluster/origin, cross-references) are checked by `npm run policy -- validate`.",
  };
  return `${JSON.stringify(document, null, 2)}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(SCHEMA_PATH, policyJsonSchema());
  console.log(`wrote ${SCHEMA_PATH}`);
}

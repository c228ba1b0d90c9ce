#!/usr/bin/env node
// The `edge-mirror-policy` command: the TypeScript CLI shares the worker's schema, so it runs through tsx.
import { register } from "tsx/esm/api";

register();
await import("../scripts/policy.ts");

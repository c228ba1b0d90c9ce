/**
 * @module policy/errors
 * Pure: how a policy document is refused. Each broken rule is located by a JSON path, and the
 * error carries the stable `code` the admin API, the CLI and the logs branch on.
 */

/** One broken rule in a policy document, located by a JSON path such as `routes[1].mirrors[0].percent`. */
export interface PolicyIssue {
  path: string;
  message: string;
}

/** A policy document (route, cluster or policy file) broke one or more rules. */
export class PolicyValidationError extends Error {
  readonly code = "invalid_policy";
  constructor(readonly issues: readonly PolicyIssue[]) {
    super(issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join("; "));
    this.name = "PolicyValidationError";
  }
}

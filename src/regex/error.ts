/**
 * @module regex/error
 * Pure: the one error the engine refuses a pattern with, whichever stage refused it.
 */

/**
 * A regular expression that edge-mirror refuses: invalid, unsupported, or too large to match in
 * linear time. `compileCost` is the work spent before it was refused, in `src/regex`'s units.
 */
export class RegexError extends Error {
  readonly code = "invalid_regex";
  constructor(
    message: string,
    readonly compileCost = 0,
  ) {
    super(message);
    this.name = "RegexError";
  }
}

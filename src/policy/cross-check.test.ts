import { describe, expect, it } from "vitest";
import { crossCheck } from "./cross-check.js";
import { parseRoute, type RouteInput } from "./index.js";
import { SNAPSHOT_PATTERN_BUDGET } from "./precedence.js";

const at = (route: RouteInput, where: string) => ({ route: parseRoute(route), at: where });

describe("crossCheck", () => {
  it("accepts routes that name defined clusters", () => {
    const result = crossCheck(
      [
        at(
          {
            id: "a",
            backends: [{ cluster: "p" }],
            mirrors: [{ cluster: "m" }],
            mirrorFromHeader: { header: "x-m", allow: ["m"] },
          },
          "routes[0]",
        ),
      ],
      new Set(["p", "m"]),
    );
    expect(result).toEqual({ errors: [], warnings: [] });
  });

  it("names every reference to an undefined cluster by its path", () => {
    const result = crossCheck(
      [
        at(
          {
            id: "a",
            backends: [{ cluster: "p" }],
            mirrors: [
              { origin: "https://x.test" },
              { cluster: "gone" },
              { origin: "https://y.test", compare: { reference: { cluster: "ref-gone" } } },
            ],
            mirrorFromHeader: {
              header: "x-m",
              allow: ["m", "nope"],
              compare: { reference: { cluster: "header-ref-gone" } },
            },
          },
          "routes[3]",
        ),
      ],
      new Set(["p", "m"]),
    );
    expect(result.errors).toEqual([
      { path: "routes[3].mirrors[1].cluster", message: 'names undefined cluster "gone"' },
      { path: "routes[3].mirrors[2].compare.reference.cluster", message: 'names undefined cluster "ref-gone"' },
      { path: "routes[3].mirrorFromHeader.allow[1]", message: 'names undefined cluster "nope"' },
      {
        path: "routes[3].mirrorFromHeader.compare.reference.cluster",
        message: 'names undefined cluster "header-ref-gone"',
      },
    ]);
  });

  it("refuses duplicate route ids across files", () => {
    const result = crossCheck(
      [at({ id: "a" }, "a.json: routes[0]"), at({ id: "a", priority: 1 }, "b.yaml: routes[4]")],
      new Set(),
    );
    expect(result.errors).toEqual([
      { path: "b.yaml: routes[4].id", message: 'duplicate route id "a" (also at a.json: routes[0])' },
    ]);
  });

  it("warns about a route shadowed by an identical, higher-ranked match", () => {
    const match = { path: { type: "PathPrefix", value: "/api" } } as const;
    const result = crossCheck(
      [
        at({ id: "low", match }, "routes[0]"),
        at({ id: "high", priority: 5, match }, "routes[1]"),
        at({ id: "other", match: { path: { type: "PathPrefix", value: "/x" } } }, "routes[2]"),
      ],
      new Set(),
    );
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([
      {
        path: "routes[0]",
        message: 'route "low" can never match: route "high" (routes[1]) has the same match and wins',
      },
    ]);
  });

  it("warns of the routes the worker would skip, past the snapshot's compile budget", () => {
    const values = ["(?:a?){250}", "(?:b?){250}", "(?:a?){100}", "(?:b?){100}", "(?:c?){100}"];
    const costly = (i: number) =>
      at(
        {
          id: `r${i}`,
          priority: -i,
          match: {
            path: { type: "PathPrefix", value: `/r${i}` },
            headers: values.map((value, n) => ({ name: `x-${n}`, type: "RegularExpression", value })),
          },
        },
        `routes[${i}]`,
      );
    const result = crossCheck([0, 1, 2, 3, 4, 5].map(costly), new Set());
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual(
      [4, 5].map((i) => ({
        path: `routes[${i}]`,
        message: expect.stringMatching(
          new RegExp(
            `^route "r${i}" would not be served: skipped: a policy snapshot's patterns may cost at most ${SNAPSHOT_PATTERN_BUDGET} to compile`,
          ),
        ),
      })),
    );
  });
});

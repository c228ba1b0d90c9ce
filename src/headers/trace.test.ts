import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  childTraceparent,
  copyTracestate,
  MAX_TRACESTATE_CHARS,
  MAX_TRACESTATE_MEMBERS,
  parseTraceparent,
  randomSpanId,
  traceCopy,
} from "./trace.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

describe("parseTraceparent", () => {
  it("reads a valid version 00 value", () => {
    expect(parseTraceparent(PARENT)).toEqual({ traceId: TRACE_ID, parentId: "00f067aa0ba902b7", flags: 1 });
    expect(parseTraceparent(`00-${TRACE_ID}-00f067aa0ba902b7-00`)?.flags).toBe(0);
  });

  it("reads a higher version from its first 55 characters, as the spec asks", () => {
    expect(parseTraceparent(`01-${TRACE_ID}-00f067aa0ba902b7-09`)?.flags).toBe(9);
    expect(parseTraceparent(`cc-${TRACE_ID}-00f067aa0ba902b7-01-what-the-future-adds`)?.traceId).toBe(TRACE_ID);
    expect(parseTraceparent(`cc-${TRACE_ID}-00f067aa0ba902b7-01x`)).toBeUndefined();
  });

  it.each([
    ["version ff", `ff-${TRACE_ID}-00f067aa0ba902b7-01`],
    ["version 00 with more fields", `${PARENT}-extra`],
    ["an upper-case trace id", `00-${TRACE_ID.toUpperCase()}-00f067aa0ba902b7-01`],
    ["an all-zero trace id", `00-${"0".repeat(32)}-00f067aa0ba902b7-01`],
    ["an all-zero parent id", `00-${TRACE_ID}-0000000000000000-01`],
    ["a short parent id", `00-${TRACE_ID}-00f067aa0ba902b-01`],
    ["flags that are not hex", `00-${TRACE_ID}-00f067aa0ba902b7-0g`],
    ["wrong separators", `00_${TRACE_ID}_00f067aa0ba902b7_01`],
    ["two values joined, as two headers read together", `${PARENT}, ${PARENT}`],
    ["nothing", ""],
  ])("refuses %s", (_, value) => {
    expect(parseTraceparent(value)).toBeUndefined();
  });

  it("never throws, whatever a client sends", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (value) => {
        const parsed = parseTraceparent(value);
        if (parsed)
          expect(childTraceparent(parsed, "b7ad6b7169203331")).toMatch(/^00-[0-9a-f]{32}-b7ad6b7169203331-0[0-3]$/);
      }),
    );
  });
});

describe("childTraceparent", () => {
  it("keeps the trace id and the sampled flag, and names the child's span", () => {
    const parent = parseTraceparent(PARENT);
    expect(parent && childTraceparent(parent, "b7ad6b7169203331")).toBe(`00-${TRACE_ID}-b7ad6b7169203331-01`);
  });

  it("keeps sampled and random trace id, clears undefined flags, and writes version 00", () => {
    const parent = parseTraceparent(`7f-${TRACE_ID}-00f067aa0ba902b7-ff`);
    expect(parent && childTraceparent(parent, "b7ad6b7169203331")).toBe(`00-${TRACE_ID}-b7ad6b7169203331-03`);
  });

  it("gets a new random span id each time, never all zero", () => {
    const ids = new Set(Array.from({ length: 1000 }, randomSpanId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(ids.has("0000000000000000")).toBe(false);
  });
});

describe("copyTracestate", () => {
  it("puts edgemirror=copy first and keeps the client's members in order", () => {
    expect(copyTracestate(null)).toBe("edgemirror=copy");
    expect(copyTracestate("")).toBe("edgemirror=copy");
    expect(copyTracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")).toBe(
      "edgemirror=copy,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    );
    // Optional whitespace and empty members, as multiple headers joined give them.
    expect(copyTracestate(" rojo=1 ,\t, congo=2,")).toBe("edgemirror=copy,rojo=1,congo=2");
  });

  it("moves its own member to the front, once, and keeps the leftmost of a repeated key", () => {
    expect(copyTracestate("rojo=1,edgemirror=copy,congo=2,rojo=3")).toBe("edgemirror=copy,rojo=1,congo=2");
  });

  it("drops invalid members rather than pass them on", () => {
    expect(copyTracestate("Rojo=1,=2,congo,vendor@tenant=ok,bad=a,b,x=tab\there,y=has=equals,z=ok")).toBe(
      "edgemirror=copy,vendor@tenant=ok,bad=a,z=ok",
    );
  });

  it("holds at most 32 members and 512 characters, dropping long members first, then from the right", () => {
    const many = Array.from({ length: 40 }, (_, i) => `k${i}=v${i}`).join(",");
    const copied = copyTracestate(many).split(",");
    expect(copied).toHaveLength(MAX_TRACESTATE_MEMBERS);
    expect(copied.slice(0, 3)).toEqual(["edgemirror=copy", "k0=v0", "k1=v1"]);
    expect(copied.at(-1)).toBe("k30=v30");

    const long = `long=${"x".repeat(200)}`;
    const short = Array.from({ length: 20 }, (_, i) => `s${i}=${"y".repeat(12)}`);
    const trimmed = copyTracestate([short[0], long, ...short.slice(1)].join(","));
    expect(trimmed.length).toBeLessThanOrEqual(MAX_TRACESTATE_CHARS);
    expect(trimmed).not.toContain("long=");
    expect(trimmed.split(",")).toHaveLength(21);

    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9]{0,20}$/), fc.stringMatching(/^[!-+--<>-~]{1,256}$/))),
        (pairs) => {
          const state = copyTracestate(pairs.map(([k, v]) => `${k}=${v}`).join(","));
          expect(state.length).toBeLessThanOrEqual(MAX_TRACESTATE_CHARS);
          expect(state.split(",").length).toBeLessThanOrEqual(MAX_TRACESTATE_MEMBERS);
          expect(state.startsWith("edgemirror=copy")).toBe(true);
        },
      ),
    );
  });
});

describe("traceCopy", () => {
  const span = () => "b7ad6b7169203331";

  it("gives a copy a child traceparent and tracestate when the request has a valid traceparent", () => {
    const headers = new Headers({ traceparent: PARENT, tracestate: "congo=t61rcWkgMzE" });
    traceCopy(headers, span);
    expect(Object.fromEntries(headers)).toEqual({
      traceparent: `00-${TRACE_ID}-b7ad6b7169203331-01`,
      tracestate: "edgemirror=copy,congo=t61rcWkgMzE",
    });
  });

  it("leaves an invalid traceparent out, with its tracestate", () => {
    const headers = new Headers({ traceparent: "00-nonsense", tracestate: "congo=1", accept: "*/*" });
    traceCopy(headers, span);
    expect(Object.fromEntries(headers)).toEqual({ accept: "*/*" });
  });

  it("adds nothing without a traceparent, and leaves a lone tracestate as it is", () => {
    const headers = new Headers({ tracestate: "congo=1" });
    traceCopy(headers, span);
    expect(Object.fromEntries(headers)).toEqual({ tracestate: "congo=1" });
  });
});

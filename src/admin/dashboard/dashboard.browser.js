// @ts-check
/**
 * @module admin/dashboard/browser
 * The dashboard's script, run by the browser: it polls `api/stats` every two seconds and draws
 * the routes table, one hand-written SVG chart per route (requests vs mirrored, failures, and the
 * diff rate where a mirror compares), a release verdict area per mirror (the verdict and each
 * check's reason, the primary's status classes and p50/p95/p99 beside the mirror's, and a compared
 * mirror's top divergence signatures), a field table per compared mirror (a field opens to show
 * its own samples from `api/stats/samples`), and the newest diff samples. The verdict is the one
 * `api/stats` gives per mirror, decided as `api/verdict` decides it on the same read of the
 * shards: one read per refresh, where asking `api/verdict` per mirror would read every shard
 * again for each.
 *
 * All of it is one function, `dashboard`, that the worker bundles like any module — minified with
 * the rest — and serves as its own source text, `"use strict";(<dashboard>)();`, at
 * `<prefix>/dashboard.js` under a strict CSP (`script-src 'self'`, no inline script, no eval): a
 * plain ES2022 classic script, no build step, no framework. So it must reach nothing outside its
 * body but the browser's globals: no imports but types. It is type-checked with the browser's
 * libraries (tsconfig.browser.json) against the API's shape (dashboard/wire); the worker sees its
 * signature only (dashboard.browser.d.ts).
 *
 * Everything a client or a mirror could have chosen (route ids, mirror names taken from a request
 * header, field names taken from response bodies, values, headers) reaches the page as text
 * (`textContent`, text nodes) or as an attribute value, and is never parsed as markup: the script
 * builds every element itself and writes no HTML string anywhere. Diff samples carry whatever
 * the origins answered: parsed, they could add elements of their choosing to the signed-in
 * admin's page, and run script there were it not for the CSP, which is the second wall, not the
 * first. Styling is by class.
 */
/** @typedef {import("./wire.js").StatsAnswer} StatsAnswer */
/** @typedef {import("./wire.js").FieldSamplesAnswer} FieldSamplesAnswer */
/** @typedef {import("./wire.js").Route} Route */
/** @typedef {import("./wire.js").Point} Point */
/** @typedef {import("./wire.js").Mirror} Mirror */
/** @typedef {import("./wire.js").Example} Example */
/** @typedef {import("./wire.js").Sample} Sample */
/** @typedef {import("./wire.js").Side} Side */
/** @typedef {import("./wire.js").SideSummary} SideSummary */
/**
 * A built element's child: a node, or text (a number as its decimal text).
 * @typedef {Node | string | number} Child
 */

/** Runs the dashboard on the page that loaded it (page.ts serves it as its own text). */
export function dashboard() {
  const REFRESH_MS = 2000;
  const SHOWN_SAMPLES = 10;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 600;
  const H = 120;
  const NL = "\n";

  /**
   * The page's element for `selector`, of the type this script relies on.
   * @template {Element} E
   * @param {string} selector
   * @param {{ new (): E, prototype: E }} type
   * @returns {E}
   */
  function required(selector, type) {
    const node = document.querySelector(selector);
    if (!(node instanceof type)) throw new Error(`dashboard: the page has no ${type.name} at ${selector}`);
    return node;
  }

  const windowSelect = required("#window", HTMLSelectElement);
  const statusLine = required("#status", HTMLElement);
  const tbody = required("#routes tbody", HTMLTableSectionElement);
  const chartsBox = required("#charts", HTMLElement);
  const verdictsBox = required("#verdicts", HTMLElement);
  const fieldsBox = required("#fields", HTMLElement);
  const samplesBox = required("#samples", HTMLElement);
  /**
   * The field tables' open fields, by `fieldKey`: their samples once fetched, null until then.
   * @type {Map<string, Sample[] | null>}
   */
  const openFields = new Map();
  /**
   * Samples the user opened or closed, by list and request id, where that differs from how a
   * list shows them (its newest open, the rest closed): every refresh draws the lists anew, and
   * must not undo what the user chose.
   * @type {Map<string, boolean>}
   */
  const toggledSamples = new Map();

  /**
   * Sets `attrs` as attribute values and appends `children`, text as text nodes: never markup.
   * @template {Element} E
   * @param {E} node
   * @param {Record<string, string>} attrs
   * @param {Child[]} children
   * @returns {E}
   */
  function fill(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    for (const child of children) {
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  /**
   * @template {keyof HTMLElementTagNameMap} K
   * @param {K} tag
   * @param {Record<string, string>} attrs
   * @param {Child[]} [children]
   */
  const el = (tag, attrs, children = []) => fill(document.createElement(tag), attrs, children);
  /**
   * @template {keyof SVGElementTagNameMap} K
   * @param {K} tag
   * @param {Record<string, string>} attrs
   * @param {Child[]} [children]
   */
  const svg = (tag, attrs, children = []) => fill(document.createElementNS(SVG_NS, tag), attrs, children);
  /** @param {Child} text */
  const code = (text) => el("code", {}, [text]);
  /**
   * Says there is nothing to show, or that a list is shortened.
   * @param {string} text
   */
  const note = (text) => el("p", { class: "empty" }, [text]);
  /**
   * A table of class `cls`: one header row of `headings`, then `rows`.
   * @param {string} cls
   * @param {string[]} headings
   * @param {Child[]} rows
   */
  const table = (cls, headings, rows) =>
    el("table", { class: cls }, [
      el("thead", {}, [
        el(
          "tr",
          {},
          headings.map((h) => el("th", {}, [h])),
        ),
      ]),
      el("tbody", {}, rows),
    ]);
  /** @param {number | null} x a percentage */
  const pct = (x) => (x === null ? "–" : `${Math.round(x * 10) / 10} %`);
  /**
   * One tag per key, sorted, each with its count.
   * @param {Record<string, number>} counts
   * @param {string} [cls]
   * @returns {Child[]}
   */
  function tags(counts, cls) {
    const keys = Object.keys(counts).sort();
    if (keys.length === 0) return ["–"];
    return keys.map((k) => el("span", { class: cls ? `tag ${cls}` : "tag", "data-key": k }, [`${k} ${counts[k]}`]));
  }
  /**
   * @param {string} field
   * @param {Child[] | string | number} content
   * @param {string} [cls]
   */
  const cell = (field, content, cls) =>
    el(
      "td",
      cls ? { "data-field": field, class: cls } : { "data-field": field },
      Array.isArray(content) ? content : [String(content)],
    );
  /**
   * Asks the API, at a path relative to the page, for JSON, with the session's cookie.
   * @param {string} path
   * @param {AbortSignal} [signal]
   */
  const api = (path, signal) =>
    fetch(path, { credentials: "same-origin", headers: { accept: "application/json" }, signal });
  /**
   * An answer's JSON; an answer that is not a success is an error that names its status.
   * @param {Response} res
   */
  function json(res) {
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.json();
  }
  /** @param {unknown} err what a promise was rejected with */
  const reason = (err) => (err instanceof Error ? err.message : String(err));
  /** @param {Record<string, number>} counts */
  const sum = (counts) => Object.values(counts).reduce((n, count) => n + count, 0);
  /** @param {string} iso */
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  /** @param {Mirror} m */
  const compared = (m) => m.compare.match + m.compare.differ + m.compare.error > 0;
  /**
   * A durable mirror's copies after their inline send: spooled · pending · redelivered · dead;
   * "–" for a mirror that spooled nothing in the window (best-effort ones never do).
   * @param {Mirror} m
   * @returns {[string, string | undefined]} the text, and its class
   */
  function durable(m) {
    const d = m.delivery;
    if (d.spooled === 0 && d.pending === 0 && d.redelivered === 0 && d.dead === 0) return ["–", "num"];
    const text = `${d.spooled} · ${d.pending} · ${d.redelivered} · ${d.dead}`;
    return [text, d.dead > 0 ? "num bad" : d.pending > 0 ? "num warn" : "num"];
  }

  /** @param {Route[]} routes */
  function renderRoutes(routes) {
    tbody.replaceChildren();
    if (routes.length === 0) {
      tbody.appendChild(
        el("tr", {}, [el("td", { colspan: "11", class: "empty" }, ["No routes configured and no traffic yet."])]),
      );
      return;
    }
    for (const r of routes) {
      tbody.appendChild(
        el("tr", { class: "route", "data-route": r.route }, [
          cell("route", r.route),
          cell("requests", r.requests, "num"),
          cell("mirrored", pct(r.mirroredPercent), "num"),
          el("td", { colspan: "8" }, []),
        ]),
      );
      for (const m of r.mirrors) {
        const lat = m.latency ? `${m.latency.avgMs} · ${m.latency.p95Ms} · ${m.latency.maxMs} ms` : "–";
        const diff = m.compare.diffRate === null ? "–" : pct(m.compare.diffRate * 100);
        tbody.appendChild(
          el("tr", { class: "mirror", "data-route": r.route, "data-mirror": m.mirror }, [
            cell("mirror", m.mirror),
            cell("requests", ""),
            cell("mirrored", ""),
            cell("sent", m.sent, "num"),
            cell("status", tags(m.status)),
            cell(
              "failed",
              m.failed === 0 ? ["0"] : [String(m.failed), " ", ...tags(m.errors, "bad")],
              m.failed ? "bad" : undefined,
            ),
            cell("skipped", sum(m.skipped) === 0 ? ["0"] : tags(m.skipped, "warn")),
            cell("durable", ...durable(m)),
            cell("latency", lat, "num"),
            cell("compare", compared(m) ? `${m.compare.match} · ${m.compare.differ} · ${m.compare.error}` : "–", "num"),
            cell("diffRate", diff, m.compare.differ ? "num bad" : "num"),
          ]),
        );
      }
    }
  }

  /**
   * One figure per minute, as the API names it; the tip shows each in its own span.
   * @param {Point} p
   * @param {boolean} withDiff
   * @returns {Array<[string, string | number]>}
   */
  function pointFigures(p, withDiff) {
    /** @type {Array<[string, string | number]>} */
    const figures = [
      ["requests", p.requests],
      ["mirrored", p.mirrored],
      ["failed", p.failed],
    ];
    if (withDiff) figures.push(["diffRate", pct(p.diffRate * 100)]);
    return figures;
  }
  /**
   * @param {HTMLElement} tip
   * @param {Point} p
   * @param {boolean} withDiff
   */
  function showPoint(tip, p, withDiff) {
    /** @type {Array<Node | string>} */
    const parts = [el("strong", { "data-field": "minute" }, [clock(p.minute)])];
    for (const [name, value] of pointFigures(p, withDiff)) {
      parts.push(` · ${name} `, el("span", { "data-field": name }, [String(value)]));
    }
    tip.replaceChildren(...parts);
    tip.setAttribute("data-minute", p.minute);
  }
  /**
   * @param {Point} p
   * @param {boolean} withDiff
   */
  const label = (p, withDiff) =>
    `${clock(p.minute)}: ${pointFigures(p, withDiff)
      .map(([name, value]) => `${name} ${value}`)
      .join(", ")}`;
  /**
   * @param {string[]} points
   * @param {string} cls
   */
  const line = (points, cls) => svg("polyline", { class: cls, points: points.join(" ") });

  /** @param {Route} r */
  function chart(r) {
    const series = r.series;
    const withDiff = r.mirrors.some(compared);
    const slot = W / Math.max(series.length, 1);
    const peak = series.reduce((n, p) => Math.max(n, p.requests, p.failed), 0);
    // The bars' scale: a chart without traffic still needs one that is not 0.
    const max = peak || 1;
    /**
     * @param {number} v
     * @param {number} top
     */
    const y = (v, top) => (H - (H * v) / top).toFixed(1);
    /**
     * A bar from the axis up to `value`, at least a pixel wide.
     * @param {string} cls
     * @param {number} left
     * @param {number} width
     * @param {number} value
     */
    const bar = (cls, left, width, value) =>
      svg("rect", {
        class: cls,
        x: left.toFixed(1),
        y: y(value, max),
        width: Math.max(width, 1).toFixed(1),
        height: ((H * value) / max).toFixed(1),
      });
    /** @type {SVGElement[]} */
    const shapes = [svg("line", { class: "axis", x1: "0", y1: String(H), x2: String(W), y2: String(H) })];
    /** @type {string[]} */
    const failed = [];
    /** @type {string[]} */
    const diff = [];
    /** @type {SVGElement[]} */
    const hits = [];
    const tip = el("p", { class: "tip", role: "status", "aria-live": "polite" }, [
      "Point at or focus a minute to see its numbers.",
    ]);
    series.forEach((p, i) => {
      const x = i * slot;
      const mid = (x + slot / 2).toFixed(1);
      shapes.push(
        bar("bar-requests", x + 1, slot - 2, p.requests),
        bar("bar-mirrored", x + slot / 4, slot / 2, p.mirrored),
      );
      failed.push(`${mid},${y(p.failed, max)}`);
      diff.push(`${mid},${y(p.diffRate, 1)}`);
      const hit = svg("rect", {
        class: "hit",
        x: x.toFixed(1),
        y: "0",
        width: slot.toFixed(1),
        height: String(H),
        tabindex: "0",
        "data-route": r.route,
        "data-minute": p.minute,
        "aria-label": label(p, withDiff),
      });
      const show = () => showPoint(tip, p, withDiff);
      hit.addEventListener("focus", show);
      hit.addEventListener("mouseenter", show);
      hits.push(hit);
    });
    shapes.push(line(failed, "line-failed"));
    if (withDiff) shapes.push(line(diff, "line-diff"));
    const legend = ["requests", "mirrored", "failed"].map((key) => el("span", { class: `key key-${key}` }, [key]));
    if (withDiff) legend.push(el("span", { class: "key key-diff" }, ["diff rate (0–100 %)"]));
    legend.push(el("span", { class: "scale" }, [`peak ${peak} per minute`]));
    const first = series[0];
    const last = series[series.length - 1];
    return el("section", { class: "chart", "data-route": r.route }, [
      el("h3", {}, [r.route]),
      svg(
        "svg",
        {
          viewBox: `0 0 ${W} ${H}`,
          preserveAspectRatio: "none",
          role: "group",
          "aria-label": `${r.route}, per minute`,
        },
        [...shapes, ...hits],
      ),
      el("div", { class: "legend" }, [
        ...legend,
        el("span", { class: "range" }, [first && last ? `${clock(first.minute)} – ${clock(last.minute)}` : ""]),
      ]),
      tip,
    ]);
  }

  /** @param {Route[]} routes */
  function renderCharts(routes) {
    const active = document.activeElement;
    const focused = active?.classList.contains("hit")
      ? { route: active.getAttribute("data-route"), minute: active.getAttribute("data-minute") }
      : null;
    chartsBox.replaceChildren(...routes.map(chart));
    if (routes.length === 0) chartsBox.appendChild(note("No routes yet."));
    if (!focused) return;
    // A refresh must not take the keyboard user's place away.
    /** @type {NodeListOf<SVGRectElement>} */
    const hits = chartsBox.querySelectorAll(".hit");
    const again = [...hits].find(
      (h) => h.getAttribute("data-route") === focused.route && h.getAttribute("data-minute") === focused.minute,
    );
    if (again) again.focus();
  }

  /**
   * @param {Example[]} list
   * @param {"primary" | "candidate"} side
   * @returns {Child[]}
   */
  function examples(list, side) {
    if (!list.length) return ["–"];
    return list.map((x) => el("code", { class: "example", title: x.path }, [x[side]]));
  }
  /**
   * @param {string} route
   * @param {string} mirror
   * @param {string} field
   */
  const fieldKey = (route, mirror, field) => route + NL + mirror + NL + field;

  /**
   * @param {Route} r
   * @param {Mirror} m
   */
  function fieldTable(r, m) {
    const comparedCount = m.compare.match + m.compare.differ;
    /** @type {HTMLTableRowElement[]} */
    const rows = [];
    for (const f of m.compare.fields) {
      const key = fieldKey(r.route, m.mirror, f.field);
      const open = openFields.has(key);
      const button = el("button", { type: "button", class: "field", "aria-expanded": String(open) }, [f.field]);
      button.addEventListener("click", () => {
        if (openFields.has(key)) openFields.delete(key);
        else openFields.set(key, null);
        refresh();
      });
      rows.push(
        el("tr", { class: "field-row", "data-field-name": f.field }, [
          cell("field", [button]),
          cell("differ", f.differ, "num"),
          cell("rate", comparedCount ? pct((100 * f.differ) / comparedCount) : "–", "num"),
          cell("noise", f.noise, "num"),
          cell("primary", examples(f.examples, "primary")),
          cell("candidate", examples(f.examples, "candidate")),
        ]),
      );
      if (open) {
        rows.push(
          el("tr", { class: "field-samples" }, [
            el("td", { colspan: "6" }, [fieldSamples(r.route, m.mirror, f.field)]),
          ]),
        );
      }
    }
    const parts = [
      el("h3", {}, [`${r.route} → ${m.mirror}`]),
      table("field-table", ["Field", "Differs", "Rate", "Noise", "Primary", `Mirror (${m.mirror})`], rows),
    ];
    if (m.compare.noise.length) {
      parts.push(
        el("p", { class: "noise-only" }, [
          "Only ever noise: ",
          ...m.compare.noise.map((n) => el("span", { class: "tag", "data-key": n.field }, [`${n.field} ${n.noise}`])),
        ]),
      );
    }
    return el("section", { class: "fields", "data-route": r.route, "data-mirror": m.mirror }, parts);
  }

  const STATUS_KEYS = /** @type {const} */ (["1xx", "2xx", "3xx", "4xx", "5xx", "failed"]);
  const PERCENTILES = /** @type {const} */ (["p50", "p95", "p99"]);
  /** @param {number} ms */
  const ms = (ms) => `${ms} ms`;

  /**
   * One side's row of the side-by-side table: status classes, then p50 · p95 · p99.
   * @param {"primary" | "mirror"} side
   * @param {string} label
   * @param {SideSummary} s
   */
  function sideRow(side, label, s) {
    const lat = s.latencyMs;
    return el("tr", { "data-side": side }, [
      cell("side", label),
      ...STATUS_KEYS.map((key) =>
        cell(key, s.status[key], (key === "5xx" || key === "failed") && s.status[key] > 0 ? "num bad" : "num"),
      ),
      ...PERCENTILES.map((key) => cell(key, lat ? ms(lat[key]) : "–", "num")),
    ]);
  }

  /**
   * @param {Route} r
   * @param {Mirror} m
   */
  function verdictArea(r, m) {
    const v = m.verdict;
    const heading = el("h3", {}, [`${r.route} → ${m.mirror}`]);
    if (v) heading.appendChild(el("span", { class: "verdict-badge", "data-verdict": v.verdict }, [v.verdict]));
    /** @type {HTMLElement[]} */
    const parts = [heading];
    if (v) {
      parts.push(
        el(
          "ul",
          { class: "reasons" },
          v.reasons.map((c) =>
            el("li", { "data-check": c.check, "data-outcome": c.outcome }, [
              el("span", { class: "check" }, [`${c.check}: ${c.outcome}`]),
              ` — ${c.reason}`,
            ]),
          ),
        ),
      );
    }
    parts.push(
      table(
        "sides",
        ["", ...STATUS_KEYS, ...PERCENTILES],
        [
          sideRow("primary", "Primary", m.sideBySide.primary),
          sideRow("mirror", `Mirror (${m.mirror})`, m.sideBySide.mirror),
        ],
      ),
    );
    const sig = m.signatures;
    if (sig?.signatures.length) {
      parts.push(
        table(
          "signatures",
          ["Fields that differ together", "Requests", "Share", "Example request"],
          sig.signatures.map((row) =>
            el("tr", { class: "signature" }, [
              cell(
                "fields",
                row.fields.flatMap((f, i) => (i === 0 ? [code(f)] : [" + ", code(f)])),
              ),
              cell("count", row.exact ? row.count : `≥ ${row.count}`, "num"),
              cell("share", pct(row.share * 100), "num"),
              cell("example", [code(row.exampleRequestId)]),
            ]),
          ),
        ),
      );
      if (sig.other.count > 0) {
        parts.push(
          el("p", { class: "meta" }, [`${sig.other.count} more in other signatures (${pct(sig.other.share * 100)}).`]),
        );
      }
    }
    return el("section", { class: "verdict", "data-route": r.route, "data-mirror": m.mirror }, parts);
  }

  /** @param {Route[]} routes */
  function renderVerdicts(routes) {
    /** @type {HTMLElement[]} */
    const sections = [];
    for (const r of routes) {
      for (const m of r.mirrors) {
        const copies = sum(m.sideBySide.mirror.status) + sum(m.sideBySide.primary.status);
        if (m.verdict || copies > 0) sections.push(verdictArea(r, m));
      }
    }
    if (sections.length === 0) {
      sections.push(note("No mirror has sent a copy in this window."));
    }
    verdictsBox.replaceChildren(...sections);
  }

  /** @param {Route[]} routes */
  function renderFields(routes) {
    /** @type {HTMLElement[]} */
    const sections = [];
    for (const r of routes) {
      for (const m of r.mirrors) {
        if (m.compare.fields.length || m.compare.noise.length) sections.push(fieldTable(r, m));
      }
    }
    if (sections.length === 0) sections.push(note("No field has differed in this window."));
    fieldsBox.replaceChildren(...sections);
  }

  /**
   * Samples of one field: fetched when the field is opened and on every refresh while it is.
   * @param {string} route
   * @param {string} mirror
   * @param {string} field
   */
  function fieldSamples(route, mirror, field) {
    const key = fieldKey(route, mirror, field);
    const box = el("div", { class: "field-sample-list" }, []);
    const known = openFields.get(key);
    if (known) showSamples(box, key, known);
    else box.appendChild(note("loading…"));
    const query = new URLSearchParams({ route, mirror, field, minutes: windowSelect.value });
    api(`api/stats/samples?${query.toString()}`)
      .then(json)
      .then((/** @type {FieldSamplesAnswer} */ data) => {
        if (!openFields.has(key)) return;
        openFields.set(key, data.samples);
        showSamples(box, key, data.samples);
      })
      .catch((err) => {
        box.replaceChildren(el("p", { class: "bad" }, [`samples unavailable: ${reason(err)}`]));
      });
    return box;
  }

  /** @param {string} text */
  const pre = (text) => el("pre", {}, [text]);
  /** @param {Record<string, string>} h */
  const headerText = (h) =>
    Object.keys(h)
      .map((k) => `${k}: ${h[k]}`)
      .join(NL);
  /** @param {Side} s */
  const sideText = (s) =>
    `HTTP ${s.status}${NL}${headerText(s.headers)}${NL}${NL}` +
    (s.excerpt || `(${s.bodyBytes} bytes, compared by SHA-256 ${s.sha256.slice(0, 16)}…)`);
  /**
   * @param {Sample} s
   * @param {string} list which list it is shown in: "latest", or a field's `fieldKey`
   * @param {boolean} openByDefault
   */
  function sampleDetails(s, list, openByDefault) {
    const rows = s.differences.map((d) => {
      const where =
        d.path && d.path !== d.field
          ? [code(d.field), " ", el("span", { class: "path" }, [`(${d.path})`])]
          : [code(d.field)];
      return el("tr", {}, [el("td", {}, where), el("td", {}, [code(d.primary)]), el("td", {}, [code(d.candidate)])]);
    });
    const details = el("details", { class: "sample", "data-request-id": s.requestId }, [
      el("summary", {}, [
        `${new Date(s.at).toLocaleTimeString()}  `,
        el("strong", {}, [s.route]),
        ` → ${s.mirror}  `,
        code(`${s.method} ${s.path}`),
        "  ",
        el("span", { class: "bad" }, [`${s.fields.length} field(s): ${s.fields.slice(0, 4).join(", ")}`]),
      ]),
      el("div", { class: "body" }, [
        el("p", {}, [
          "request id ",
          code(s.requestId),
          s.noise.length ? `  · noise ignored: ${s.noise.join(", ")}` : "",
        ]),
        table("differences", ["Field", "Primary", `Mirror (${s.mirror})`], rows),
        el("div", { class: "side" }, [pre(sideText(s.primary)), pre(sideText(s.candidate))]),
      ]),
    ]);
    const key = list + NL + s.requestId;
    details.open = toggledSamples.get(key) ?? openByDefault;
    details.addEventListener("toggle", () => {
      if (details.open === openByDefault) toggledSamples.delete(key);
      else toggledSamples.set(key, details.open);
    });
    return details;
  }
  /**
   * @param {HTMLElement} box
   * @param {string} list which list `box` holds: "latest", or a field's `fieldKey`
   * @param {Sample[]} samples newest first
   */
  function showSamples(box, list, samples) {
    box.replaceChildren();
    if (samples.length === 0) {
      box.appendChild(note("No differences seen in this window."));
      return;
    }
    if (samples.length > SHOWN_SAMPLES) {
      box.appendChild(note(`Newest ${SHOWN_SAMPLES} of ${samples.length} kept samples.`));
    }
    samples.slice(0, SHOWN_SAMPLES).forEach((s, i) => {
      box.appendChild(sampleDetails(s, list, i === 0));
    });
  }

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  /**
   * The refresh under way, if any. A newer one (the window changed, a field opened or closed)
   * cancels it: answered later than the newer one, it would draw a window no longer chosen.
   * @type {AbortController | undefined}
   */
  let underWay;
  function refresh() {
    clearTimeout(timer);
    underWay?.abort();
    const mine = new AbortController();
    underWay = mine;
    api(`api/stats?minutes=${encodeURIComponent(windowSelect.value)}`, mine.signal)
      .then((res) => {
        if (res.status === 401 || res.status === 403) {
          location.href = "login";
          throw new Error("signed out");
        }
        return json(res);
      })
      .then((/** @type {StatsAnswer} */ data) => {
        // Read in full just before a newer refresh began: stale all the same.
        if (mine.signal.aborted) return;
        renderRoutes(data.routes);
        renderVerdicts(data.routes);
        renderCharts(data.routes);
        renderFields(data.routes);
        showSamples(samplesBox, "latest", data.samples);
        const shards = data.sources.shards;
        const down = shards.filter((s) => !s.answered).length;
        const busiest = shards.reduce((n, s) => Math.max(n, s.flushesPerSecond || 0), 0);
        statusLine.textContent =
          `updated ${new Date().toLocaleTimeString()}` +
          ` · busiest of ${shards.length} stats shards: ${busiest} writes/s` +
          (down ? ` · ${down} did not answer` : "") +
          (data.sources.analyticsEngine ? " · Analytics Engine on" : "");
        statusLine.setAttribute("data-loaded", "true");
      })
      .catch((err) => {
        if (!mine.signal.aborted) statusLine.textContent = `refresh failed: ${reason(err)}`;
      })
      .finally(() => {
        // Only the newest refresh schedules the next: one round of refreshes, never two.
        if (underWay === mine) timer = setTimeout(refresh, REFRESH_MS);
      });
  }
  windowSelect.addEventListener("change", refresh);
  refresh();
}

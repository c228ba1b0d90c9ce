/**
 * @module dashboard/script
 * The dashboard's script, served as a static file under a strict CSP: it polls `api/stats`,
 * draws one hand-written SVG chart per route (requests vs mirrored, failures, and the diff rate
 * where a mirror compares), a field table per compared mirror, and the diff samples. Everything
 * a client or a mirror could have chosen (route ids, mirror names, fields, values) reaches the
 * page through `textContent` or an attribute value only, never as markup; styling is by class.
 */

export const DASHBOARD_JS = `"use strict";
(function () {
  var REFRESH_MS = 2000;
  var SHOWN_SAMPLES = 10;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var W = 600, H = 120;
  var windowSelect = document.getElementById("window");
  var statusLine = document.getElementById("status");
  var tbody = document.querySelector("#routes tbody");
  var chartsBox = document.getElementById("charts");
  var fieldsBox = document.getElementById("fields");
  var samplesBox = document.getElementById("samples");
  var openFields = new Map();
  var NL = String.fromCharCode(10);

  function fill(node, attrs, children) {
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }
  function el(tag, attrs, children) { return fill(document.createElement(tag), attrs, children); }
  function svg(tag, attrs, children) { return fill(document.createElementNS(SVG_NS, tag), attrs, children); }
  function pct(x) { return x === null ? "–" : (Math.round(x * 10) / 10) + " %"; }
  function tags(counts, cls) {
    var keys = Object.keys(counts || {}).sort();
    if (keys.length === 0) return ["–"];
    return keys.map(function (k) { return el("span", { class: "tag " + (cls || ""), "data-key": k }, [k + " " + counts[k]]); });
  }
  function cell(field, content, cls) {
    return el("td", { "data-field": field, class: cls || "" }, Array.isArray(content) ? content : [String(content)]);
  }
  function sum(counts) { return Object.keys(counts).reduce(function (n, k) { return n + counts[k]; }, 0); }
  function clock(iso) { return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  function compared(m) { return m.compare.match + m.compare.differ + m.compare.error > 0; }

  function renderRoutes(routes) {
    tbody.replaceChildren();
    if (routes.length === 0) {
      tbody.appendChild(el("tr", {}, [el("td", { colspan: "10", class: "empty" }, ["No routes configured and no traffic yet."])]));
      return;
    }
    routes.forEach(function (r) {
      tbody.appendChild(el("tr", { class: "route", "data-route": r.route }, [
        cell("route", r.route), cell("requests", r.requests, "num"), cell("mirrored", pct(r.mirroredPercent), "num"),
        el("td", { colspan: "7" }, [])
      ]));
      r.mirrors.forEach(function (m) {
        var lat = m.latency ? m.latency.avgMs + " · " + m.latency.p95Ms + " · " + m.latency.maxMs + " ms" : "–";
        var diff = m.compare.diffRate === null ? "–" : pct(m.compare.diffRate * 100);
        tbody.appendChild(el("tr", { class: "mirror", "data-route": r.route, "data-mirror": m.mirror }, [
          cell("mirror", m.mirror), cell("requests", ""), cell("mirrored", ""),
          cell("sent", m.sent, "num"), cell("status", tags(m.status)),
          cell("failed", m.failed === 0 ? ["0"] : [String(m.failed), " "].concat(tags(m.errors, "bad")), m.failed ? "bad" : ""),
          cell("skipped", sum(m.skipped) === 0 ? ["0"] : tags(m.skipped, "warn")),
          cell("latency", lat, "num"),
          cell("compare", compared(m) ? m.compare.match + " · " + m.compare.differ + " · " + m.compare.error : "–", "num"),
          cell("diffRate", diff, m.compare.differ ? "num bad" : "num")
        ]));
      });
    });
  }

  // One figure per minute; the tip shows the same numbers as the API, each in its own span.
  function pointFigures(p, withDiff) {
    var figures = [["requests", p.requests], ["mirrored", p.mirrored], ["failed", p.failed]];
    if (withDiff) figures.push(["diffRate", pct(p.diffRate * 100)]);
    return figures;
  }
  function showPoint(tip, p, withDiff) {
    var parts = [el("strong", { "data-field": "minute" }, [clock(p.minute)])];
    pointFigures(p, withDiff).forEach(function (f) {
      parts.push(" · " + f[0] + " ", el("span", { "data-field": f[0] }, [String(f[1])]));
    });
    tip.replaceChildren.apply(tip, parts);
    tip.setAttribute("data-minute", p.minute);
  }
  function label(p, withDiff) {
    return clock(p.minute) + ": " + pointFigures(p, withDiff).map(function (f) { return f[0] + " " + f[1]; }).join(", ");
  }
  function line(points, cls) {
    return svg("polyline", { class: cls, points: points.join(" ") });
  }

  function chart(r) {
    var series = r.series;
    var withDiff = r.mirrors.some(compared);
    var slot = W / Math.max(series.length, 1);
    var max = series.reduce(function (n, p) { return Math.max(n, p.requests, p.failed); }, 0) || 1;
    var y = function (v, top) { return (H - (H * v) / top).toFixed(1); };
    var shapes = [svg("line", { class: "axis", x1: "0", y1: String(H), x2: String(W), y2: String(H) })];
    var failed = [], diff = [], hits = [];
    var tip = el("p", { class: "tip", role: "status", "aria-live": "polite" }, ["Point at or focus a minute to see its numbers."]);
    series.forEach(function (p, i) {
      var x = i * slot, mid = (x + slot / 2).toFixed(1);
      shapes.push(svg("rect", { class: "bar-requests", x: (x + 1).toFixed(1), y: y(p.requests, max), width: Math.max(slot - 2, 1).toFixed(1), height: ((H * p.requests) / max).toFixed(1) }));
      shapes.push(svg("rect", { class: "bar-mirrored", x: (x + slot / 4).toFixed(1), y: y(p.mirrored, max), width: Math.max(slot / 2, 1).toFixed(1), height: ((H * p.mirrored) / max).toFixed(1) }));
      failed.push(mid + "," + y(p.failed, max));
      diff.push(mid + "," + y(p.diffRate, 1));
      var hit = svg("rect", { class: "hit", x: x.toFixed(1), y: "0", width: slot.toFixed(1), height: String(H), tabindex: "0", "data-route": r.route, "data-minute": p.minute, "aria-label": label(p, withDiff) });
      var show = function () { showPoint(tip, p, withDiff); };
      hit.addEventListener("focus", show);
      hit.addEventListener("mouseenter", show);
      hits.push(hit);
    });
    shapes.push(line(failed, "line-failed"));
    if (withDiff) shapes.push(line(diff, "line-diff"));
    var legend = [
      el("span", { class: "key key-requests" }, ["requests"]), el("span", { class: "key key-mirrored" }, ["mirrored"]),
      el("span", { class: "key key-failed" }, ["failed"])
    ];
    if (withDiff) legend.push(el("span", { class: "key key-diff" }, ["diff rate (0–100 %)"]));
    legend.push(el("span", { class: "scale" }, ["peak " + max + " per minute"]));
    return el("section", { class: "chart", "data-route": r.route }, [
      el("h3", {}, [r.route]),
      svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none", role: "group", "aria-label": r.route + ", per minute" }, shapes.concat(hits)),
      el("div", { class: "legend" }, legend.concat([
        el("span", { class: "range" }, [series.length ? clock(series[0].minute) + " – " + clock(series[series.length - 1].minute) : ""])
      ])),
      tip
    ]);
  }

  function renderCharts(routes) {
    var active = document.activeElement;
    var focused = active && active.classList && active.classList.contains("hit")
      ? { route: active.getAttribute("data-route"), minute: active.getAttribute("data-minute") } : null;
    chartsBox.replaceChildren.apply(chartsBox, routes.map(chart));
    if (routes.length === 0) chartsBox.appendChild(el("p", { class: "empty" }, ["No routes yet."]));
    if (!focused) return;
    // A refresh must not take the keyboard user's place away.
    var again = Array.prototype.find.call(chartsBox.querySelectorAll(".hit"), function (h) {
      return h.getAttribute("data-route") === focused.route && h.getAttribute("data-minute") === focused.minute;
    });
    if (again) again.focus();
  }

  function examples(list, side) {
    if (!list.length) return ["–"];
    return list.map(function (x) { return el("code", { class: "example", title: x.path }, [x[side]]); });
  }
  function fieldKey(route, mirror, field) { return route + NL + mirror + NL + field; }

  function fieldTable(r, m) {
    var comparedCount = m.compare.match + m.compare.differ;
    var rows = [];
    m.compare.fields.forEach(function (f) {
      var key = fieldKey(r.route, m.mirror, f.field);
      var open = openFields.has(key);
      var button = el("button", { type: "button", class: "field", "aria-expanded": String(open) }, [f.field]);
      button.addEventListener("click", function () {
        if (openFields.has(key)) openFields.delete(key); else openFields.set(key, null);
        refresh();
      });
      rows.push(el("tr", { class: "field-row", "data-field-name": f.field }, [
        el("td", { "data-field": "field" }, [button]),
        cell("differ", f.differ, "num"),
        cell("rate", comparedCount ? pct((100 * f.differ) / comparedCount) : "–", "num"),
        cell("noise", f.noise, "num"),
        el("td", { "data-field": "primary" }, examples(f.examples, "primary")),
        el("td", { "data-field": "candidate" }, examples(f.examples, "candidate"))
      ]));
      if (open) rows.push(el("tr", { class: "field-samples" }, [el("td", { colspan: "6" }, [fieldSamples(r.route, m.mirror, f.field)])]));
    });
    var parts = [
      el("h3", {}, [r.route + " → " + m.mirror]),
      el("table", { class: "field-table" }, [
        el("thead", {}, [el("tr", {}, ["Field", "Differs", "Rate", "Noise", "Primary", "Mirror (" + m.mirror + ")"].map(function (h) { return el("th", {}, [h]); }))]),
        el("tbody", {}, rows)
      ])
    ];
    if (m.compare.noise.length) {
      parts.push(el("p", { class: "noise-only" }, ["Only ever noise: "].concat(m.compare.noise.map(function (n) {
        return el("span", { class: "tag", "data-key": n.field }, [n.field + " " + n.noise]);
      }))));
    }
    return el("section", { class: "fields", "data-route": r.route, "data-mirror": m.mirror }, parts);
  }

  function renderFields(routes) {
    var sections = [];
    routes.forEach(function (r) {
      r.mirrors.forEach(function (m) { if (m.compare.fields.length || m.compare.noise.length) sections.push(fieldTable(r, m)); });
    });
    if (sections.length === 0) sections.push(el("p", { class: "empty" }, ["No field has differed in this window."]));
    fieldsBox.replaceChildren.apply(fieldsBox, sections);
  }

  // Samples of one field: fetched when the field is opened and on every refresh while it is.
  function fieldSamples(route, mirror, field) {
    var key = fieldKey(route, mirror, field);
    var box = el("div", { class: "field-sample-list" }, []);
    var known = openFields.get(key);
    if (known) showSamples(box, known, known.length);
    else box.appendChild(el("p", { class: "empty" }, ["loading…"]));
    var query = new URLSearchParams({ route: route, mirror: mirror, field: field, minutes: windowSelect.value });
    fetch("api/stats/samples?" + query.toString(), { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (res) { if (!res.ok) throw new Error("HTTP " + res.status); return res.json(); })
      .then(function (data) {
        if (!openFields.has(key)) return;
        openFields.set(key, data.samples);
        showSamples(box, data.samples, data.samples.length);
      })
      .catch(function (err) { box.replaceChildren(el("p", { class: "bad" }, ["samples unavailable: " + err.message])); });
    return box;
  }

  function pre(text) { return el("pre", {}, [text]); }
  function headerText(h) { return Object.keys(h).map(function (k) { return k + ": " + h[k]; }).join(NL); }
  function sideText(s) {
    return "HTTP " + s.status + NL + headerText(s.headers) + NL + NL +
      (s.excerpt || "(" + s.bodyBytes + " bytes, compared by SHA-256 " + s.sha256.slice(0, 16) + "…)");
  }
  function sampleDetails(s, open) {
    var rows = s.differences.map(function (d) {
      var where = d.path && d.path !== d.field ? [el("code", {}, [d.field]), " ", el("span", { class: "path" }, ["(" + d.path + ")"])] : [el("code", {}, [d.field])];
      return el("tr", {}, [el("td", {}, where), el("td", {}, [el("code", {}, [d.primary])]), el("td", {}, [el("code", {}, [d.candidate])])]);
    });
    var details = el("details", { class: "sample", "data-request-id": s.requestId }, [
      el("summary", {}, [
        new Date(s.at).toLocaleTimeString() + "  ", el("strong", {}, [s.route]), " → " + s.mirror + "  ",
        el("code", {}, [s.method + " " + s.path]), "  ", el("span", { class: "bad" }, [s.fields.length + " field(s): " + s.fields.slice(0, 4).join(", ")])
      ]),
      el("div", { class: "body" }, [
        el("p", {}, ["request id ", el("code", {}, [s.requestId]), s.noise.length ? "  · noise ignored: " + s.noise.join(", ") : ""]),
        el("table", { class: "differences" }, [
          el("thead", {}, [el("tr", {}, [el("th", {}, ["Field"]), el("th", {}, ["Primary"]), el("th", {}, ["Mirror (" + s.mirror + ")"])])]),
          el("tbody", {}, rows)
        ]),
        el("div", { class: "side" }, [pre(sideText(s.primary)), pre(sideText(s.candidate))])
      ])
    ]);
    if (open) details.open = true;
    return details;
  }
  function showSamples(box, samples, kept) {
    box.replaceChildren();
    if (samples.length === 0) {
      box.appendChild(el("p", { class: "empty" }, ["No differences seen in this window."]));
      return;
    }
    if (kept > SHOWN_SAMPLES) {
      box.appendChild(el("p", { class: "empty" }, ["Newest " + SHOWN_SAMPLES + " of " + kept + " kept samples."]));
    }
    samples.slice(0, SHOWN_SAMPLES).forEach(function (s, i) { box.appendChild(sampleDetails(s, i === 0)); });
  }

  var timer;
  function refresh() {
    clearTimeout(timer);
    fetch("api/stats?minutes=" + encodeURIComponent(windowSelect.value), { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (res) {
        if (res.status === 401 || res.status === 403) { location.href = "login"; throw new Error("signed out"); }
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (data) {
        renderRoutes(data.routes);
        renderCharts(data.routes);
        renderFields(data.routes);
        showSamples(samplesBox, data.samples, data.samples.length);
        var shards = data.sources.shards;
        var down = shards.filter(function (s) { return !s.answered; }).length;
        var busiest = shards.reduce(function (n, s) { return Math.max(n, s.flushesPerSecond || 0); }, 0);
        statusLine.textContent = "updated " + new Date().toLocaleTimeString() +
          " · busiest of " + shards.length + " stats shards: " + busiest + " writes/s" +
          (down ? " · " + down + " did not answer" : "") +
          (data.sources.analyticsEngine ? " · Analytics Engine on" : "");
        statusLine.setAttribute("data-loaded", "true");
      })
      .catch(function (err) { statusLine.textContent = "refresh failed: " + err.message; })
      .finally(function () { timer = setTimeout(refresh, REFRESH_MS); });
  }
  windowSelect.addEventListener("change", refresh);
  refresh();
})();
`;

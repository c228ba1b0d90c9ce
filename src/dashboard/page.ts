/**
 * @module dashboard/page
 * The dashboard's static parts: the page, its stylesheet and its script. No framework and no
 * build step: the script polls `api/stats` and renders with `textContent` only, because diff
 * samples carry values chosen by clients and mirrors and must never become markup.
 */

export const DASHBOARD_CSS = `
:root { color-scheme: light; --fg: #1d232b; --muted: #5b6673; --line: #d8dee4; --bg: #f6f8fa; --bad: #b42318; --ok: #067647; --warn: #b54708; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
header { display: flex; align-items: center; gap: 16px; padding: 12px 24px; border-bottom: 1px solid var(--line); background: var(--bg); }
header h1 { font-size: 18px; margin: 0; }
header .spacer { flex: 1; }
header .meta { color: var(--muted); }
main { padding: 16px 24px 48px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.route td { background: var(--bg); font-weight: 600; }
tr.mirror td:first-child { padding-left: 28px; }
.bad { color: var(--bad); } .ok { color: var(--ok); } .warn { color: var(--warn); }
.tag { display: inline-block; margin: 0 4px 2px 0; padding: 0 6px; border-radius: 8px; background: #eef1f4; font-size: 12px; white-space: nowrap; }
.empty { color: var(--muted); padding: 12px 0; }
details.sample { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; }
details.sample summary { cursor: pointer; padding: 8px 12px; }
details.sample .body { padding: 0 12px 12px; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.side pre { margin: 0; padding: 8px; background: var(--bg); border-radius: 4px; overflow: auto; max-height: 320px; font-size: 12px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
form.login { max-width: 360px; margin: 80px auto; display: grid; gap: 12px; }
form.login input, form.login button, select, button { font: inherit; padding: 6px 10px; }
`;

export function dashboardHtml(prefix: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-mirror dashboard</title>
<link rel="stylesheet" href="${prefix}/dashboard.css">
<script src="${prefix}/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>edge-mirror</h1>
  <label>Window <select id="window"><option value="5">5 min</option><option value="15">15 min</option><option value="60" selected>60 min</option></select></label>
  <span class="spacer"></span>
  <span class="meta" id="status">loading…</span>
  <form method="post" action="${prefix}/logout"><button type="submit">Sign out</button></form>
</header>
<main>
  <h2>Routes and mirrors</h2>
  <table id="routes">
    <thead><tr>
      <th>Route / mirror</th><th>Requests</th><th>Mirrored</th><th>Sent</th><th>Status</th><th>Failed</th>
      <th>Skipped</th><th>Latency avg · p95 · max</th><th>Compared (match · differ · error)</th><th>Diff rate</th>
    </tr></thead>
    <tbody></tbody>
  </table>
  <h2>Latest diffs</h2>
  <div id="samples"><p class="empty">No differences seen in this window.</p></div>
</main>
</body>
</html>`;
}

export function loginHtml(prefix: string, failed: boolean): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-mirror: sign in</title>
<link rel="stylesheet" href="${prefix}/dashboard.css">
</head>
<body>
<form class="login" method="post" action="${prefix}/login">
  <h1>edge-mirror</h1>
  <label for="token">Admin token (the ADMIN_TOKEN secret)</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  ${failed ? '<p class="bad" role="alert">That token does not match ADMIN_TOKEN.</p>' : ""}
  <button type="submit">Sign in</button>
</form>
</body>
</html>`;
}

export const DASHBOARD_JS = `"use strict";
(function () {
  var REFRESH_MS = 2000;
  var SHOWN_SAMPLES = 10;
  var windowSelect = document.getElementById("window");
  var statusLine = document.getElementById("status");
  var tbody = document.querySelector("#routes tbody");
  var samplesBox = document.getElementById("samples");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }
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
        var compared = m.compare.match + m.compare.differ + m.compare.error;
        tbody.appendChild(el("tr", { class: "mirror", "data-route": r.route, "data-mirror": m.mirror }, [
          cell("mirror", m.mirror), cell("requests", ""), cell("mirrored", ""),
          cell("sent", m.sent, "num"), cell("status", tags(m.status)),
          cell("failed", m.failed === 0 ? ["0"] : [String(m.failed), " "].concat(tags(m.errors, "bad")), m.failed ? "bad" : ""),
          cell("skipped", sum(m.skipped) === 0 ? ["0"] : tags(m.skipped, "warn")),
          cell("latency", lat, "num"),
          cell("compare", compared === 0 ? "–" : m.compare.match + " · " + m.compare.differ + " · " + m.compare.error, "num"),
          cell("diffRate", diff, m.compare.differ ? "num bad" : "num")
        ]));
      });
    });
  }

  function pre(text) { return el("pre", {}, [text]); }
  function headerText(h) { return Object.keys(h).map(function (k) { return k + ": " + h[k]; }).join("\\n"); }
  function sideText(s) {
    return "HTTP " + s.status + "\\n" + headerText(s.headers) + "\\n\\n" +
      (s.excerpt || "(" + s.bodyBytes + " bytes, compared by SHA-256 " + s.sha256.slice(0, 16) + "…)");
  }

  function renderSamples(samples) {
    samplesBox.replaceChildren();
    if (samples.length === 0) {
      samplesBox.appendChild(el("p", { class: "empty" }, ["No differences seen in this window."]));
      return;
    }
    if (samples.length > SHOWN_SAMPLES) {
      samplesBox.appendChild(el("p", { class: "empty" }, ["Newest " + SHOWN_SAMPLES + " of " + samples.length + " kept samples."]));
    }
    samples.slice(0, SHOWN_SAMPLES).forEach(function (s, i) {
      var rows = s.differences.map(function (d) {
        return el("tr", {}, [el("td", {}, [el("code", {}, [d.field])]), el("td", {}, [el("code", {}, [d.primary])]), el("td", {}, [el("code", {}, [d.candidate])])]);
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
      if (i === 0) details.open = true;
      samplesBox.appendChild(details);
    });
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
        renderSamples(data.samples);
        statusLine.textContent = "updated " + new Date().toLocaleTimeString() + (data.sources.analyticsEngine ? " · Analytics Engine on" : "");
        statusLine.setAttribute("data-loaded", "true");
      })
      .catch(function (err) { statusLine.textContent = "refresh failed: " + err.message; })
      .finally(function () { timer = setTimeout(refresh, REFRESH_MS); });
  }
  windowSelect.addEventListener("change", refresh);
  refresh();
})();
`;

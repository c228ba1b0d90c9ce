/**
 * @module admin/dashboard/page
 * The dashboard's static parts: the page, its stylesheet and its script (dashboard.browser.js:
 * one function, served as its own source text, so that the bundle's minifier shrinks it with the
 * rest). No framework and no build step: the script polls `api/stats` and renders with
 * `textContent` only, because diff samples carry values chosen by clients and mirrors and must
 * never become markup. Pure strings.
 */
import { dashboard } from "./dashboard.browser.js";

/** A classic script, strict by its first line, that runs the dashboard once the page has loaded it. */
export const DASHBOARD_JS = `"use strict";(${dashboard})();\n`;

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
.bad, [data-verdict="fail"], [data-outcome="fail"] .check { color: var(--bad); }
.warn, [data-verdict="inconclusive"], [data-outcome="inconclusive"] .check { color: var(--warn); }
[data-verdict="pass"], [data-outcome="pass"] .check { color: var(--ok); }
.tag { display: inline-block; margin: 0 4px 2px 0; padding: 0 6px; border-radius: 8px; background: #eef1f4; font-size: 12px; white-space: nowrap; }
.empty { color: var(--muted); padding: 12px 0; }
details.sample { border: 1px solid var(--line); border-radius: 6px; margin: 8px 0; }
details.sample summary { cursor: pointer; padding: 8px 12px; }
details.sample .body { padding: 0 12px 12px; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.side pre { margin: 0; padding: 8px; background: var(--bg); border-radius: 4px; overflow: auto; max-height: 320px; font-size: 12px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 16px; }
section.chart { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
h3 { font-size: 14px; margin: 0 0 6px; }
section.chart svg { display: block; width: 100%; height: 120px; background: var(--bg); border-radius: 4px; }
.axis { stroke: #8c959f; }
.bar-requests { fill: #c9d3dd; }
.bar-mirrored { fill: #3b6ea8; }
.line-failed { fill: none; stroke: var(--bad); stroke-width: 2; vector-effect: non-scaling-stroke; }
.line-diff { fill: none; stroke: var(--warn); stroke-width: 2; stroke-dasharray: 4 3; vector-effect: non-scaling-stroke; }
.hit { fill: #1d232b; fill-opacity: 0; cursor: crosshair; outline: none; }
.hit:hover, .hit:focus { fill-opacity: .12; }
.hit:focus { stroke: #1d232b; stroke-width: 1; vector-effect: non-scaling-stroke; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 6px 0 0; color: var(--muted); font-size: 12px; }
.legend .key::before { content: ""; display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; border-radius: 2px; }
.key-requests::before { background: #c9d3dd; } .key-mirrored::before { background: #3b6ea8; }
.key-failed::before { background: var(--bad); } .key-diff::before { background: var(--warn); }
.legend .range { margin-left: auto; }
.tip { margin: 6px 0 0; min-height: 1.45em; font-size: 13px; font-variant-numeric: tabular-nums; }
section.fields, section.verdict { margin: 12px 0 20px; }
table.field-table td:first-child { width: 28%; }
.verdict-badge { display: inline-block; margin-left: 8px; padding: 0 8px; border-radius: 8px; font-size: 12px; text-transform: uppercase; background: #eef1f4; }
ul.reasons { margin: 4px 0 8px; padding-left: 18px; font-size: 13px; }
table.sides, table.signatures { margin-bottom: 8px; }
button.field { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; padding: 2px 6px; background: none; border: 1px solid var(--line); border-radius: 4px; cursor: pointer; text-align: left; }
button.field[aria-expanded="true"] { background: var(--bg); }
code.example { display: block; margin-bottom: 2px; max-width: 360px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.path { color: var(--muted); font-size: 12px; }
.noise-only { color: var(--muted); }
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
      <th>Skipped</th><th title="Durable copies not delivered inline: spooled to the queue, still pending, redelivered from it, dead (gave up)">Durable (spooled · pending · redelivered · dead)</th><th>Latency avg · p95 · max</th><th>Compared (match · differ · error)</th><th>Diff rate</th>
    </tr></thead>
    <tbody></tbody>
  </table>
  <h2>Release verdict</h2>
  <div id="verdicts"><p class="empty">No mirror has sent a copy in this window.</p></div>
  <h2>Per minute</h2>
  <div id="charts" class="charts"></div>
  <h2>Differing fields</h2>
  <div id="fields"><p class="empty">No field has differed in this window.</p></div>
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

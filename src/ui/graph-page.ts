// The mesh graph page (`/ui/graph` on the admin port): one HTML page and its script, served by
// `mooring serve` itself with cytoscape.js (no CDN: it works with no other server). The script
// reads `/ui/graph/data` every few seconds and draws the workloads and services as nodes and the
// edges with their request rate, 5xx share and p99; a solid edge labelled `mTLS` is mutual TLS,
// a dashed one plain text. The table view shows the same numbers.

export const GRAPH_PATH = '/ui/graph';
export const GRAPH_DATA_PATH = '/ui/graph/data';
export const GRAPH_SCRIPT_PATH = '/ui/graph/app.js';
export const CYTOSCAPE_PATH = '/ui/graph/cytoscape.min.js';

export const GRAPH_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Mooring mesh graph</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; }
  body { margin: 0; background: #f8fafc; }
  header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1rem; background: #0f172a; color: #f8fafc; }
  header h1 { font-size: 1.05rem; margin: 0; font-weight: 600; }
  header .spacer { flex: 1; }
  header select, header button { font: inherit; padding: .2rem .5rem; border-radius: 4px; border: 1px solid #475569; background: #1e293b; color: #f8fafc; }
  header button[aria-pressed="true"] { background: #2563eb; border-color: #2563eb; }
  #status { font-size: .85rem; color: #cbd5e1; }
  #error { display: none; margin: .6rem 1rem; padding: .5rem .8rem; border-radius: 4px; background: #fee2e2; color: #991b1b; }
  #graph { position: absolute; top: 3rem; bottom: 2.2rem; left: 0; right: 0; }
  #table-view { display: none; padding: 1rem; }
  table { border-collapse: collapse; width: 100%; background: white; font-size: .9rem; }
  th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e2e8f0; }
  th { background: #f1f5f9; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  footer { position: absolute; bottom: 0; left: 0; right: 0; height: 2.2rem; display: flex; gap: 1.2rem; align-items: center; padding: 0 1rem; font-size: .8rem; color: #475569; background: #f1f5f9; }
  .sw { display: inline-block; width: 1.4rem; height: 0; border-top: 3px solid #16a34a; vertical-align: middle; margin-right: .3rem; }
  .sw.dash { border-top-style: dashed; border-top-color: #64748b; }
  .sw.err { border-top-color: #dc2626; }
  .sw.warn { border-top-color: #f59e0b; }
  details { margin-top: 1rem; font-size: .8rem; }
  code { white-space: pre-wrap; word-break: break-all; }
</style>
</head>
<body>
<header>
  <h1>Mooring · mesh graph</h1>
  <button id="show-graph" aria-pressed="true">Graph</button>
  <button id="show-table" aria-pressed="false">Table</button>
  <label>window <select id="window"><option>1m</option><option>5m</option><option>15m</option><option>1h</option></select></label>
  <span class="spacer"></span>
  <span id="status">loading…</span>
</header>
<div id="error" role="alert"></div>
<div id="graph" aria-label="mesh graph"></div>
<div id="table-view">
  <table id="edges">
    <thead><tr><th>from</th><th>to</th><th>protocol</th><th>requests/s</th><th>5xx</th><th>p99 (ms)</th><th>bytes/s</th><th>mTLS</th></tr></thead>
    <tbody></tbody>
  </table>
  <details><summary>The PromQL behind these numbers</summary><div id="queries"></div></details>
</div>
<footer>
  <span><span class="sw"></span>mutual TLS (mTLS)</span>
  <span><span class="sw dash"></span>plain text</span>
  <span><span class="sw warn"></span>some 5xx</span>
  <span><span class="sw err"></span>5xx above 5%</span>
  <span>● workload &nbsp; ◆ service</span>
</footer>
<script src="${CYTOSCAPE_PATH}"></script>
<script src="${GRAPH_SCRIPT_PATH}"></script>
</body>
</html>
`;

export const GRAPH_SCRIPT = `'use strict';
(function () {
  var params = new URLSearchParams(location.search);
  var refreshMs = Math.max(1, Number(params.get('refresh') || '5')) * 1000;
  var windowSelect = document.getElementById('window');
  if (params.get('window')) windowSelect.value = params.get('window');
  var statusEl = document.getElementById('status');
  var errorEl = document.getElementById('error');
  var graphEl = document.getElementById('graph');
  var tableEl = document.getElementById('table-view');
  var cy = cytoscape({
    container: graphEl,
    wheelSensitivity: 0.3,
    style: [
      { selector: 'node', style: { 'label': 'data(label)', 'font-size': 12, 'text-valign': 'bottom', 'text-margin-y': 6, 'width': 34, 'height': 34, 'color': '#1f2937', 'text-wrap': 'wrap' } },
      { selector: 'node[kind = "workload"]', style: { 'shape': 'ellipse', 'background-color': '#2563eb' } },
      { selector: 'node[kind = "service"]', style: { 'shape': 'diamond', 'background-color': '#7c3aed' } },
      { selector: 'node[kind = "unknown"]', style: { 'shape': 'round-rectangle', 'background-color': '#94a3b8' } },
      { selector: 'edge', style: { 'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'width': 2.5, 'label': 'data(label)', 'font-size': 10, 'text-rotation': 'autorotate', 'text-background-color': '#f8fafc', 'text-background-opacity': 0.9, 'text-background-padding': 2, 'line-color': 'data(color)', 'target-arrow-color': 'data(color)', 'line-style': 'data(lineStyle)' } }
    ],
    elements: []
  });
  window.mooringGraph = { cy: cy, data: null, refreshes: 0 };

  function fmt(n, digits) { return Number(n).toFixed(digits); }
  function bytes(n) { return n >= 1048576 ? fmt(n / 1048576, 1) + ' MiB/s' : n >= 1024 ? fmt(n / 1024, 1) + ' KiB/s' : fmt(n, 0) + ' B/s'; }
  function mtlsText(e) { return e.mtlsShare >= 0.9999 ? 'mTLS' : e.mtlsShare > 0 ? 'partly mTLS' : 'plain'; }
  function edgeLabel(e) {
    var parts = e.protocol === 'tcp'
      ? ['TCP ' + bytes(e.bytesPerSecond)]
      : [fmt(e.rps, 2) + ' rps', fmt(e.errorRate * 100, 1) + '% 5xx', 'p99 ' + (e.p99Ms === null ? 'n/a' : fmt(e.p99Ms, 1) + ' ms')];
    var lock = mtlsText(e);
    return lock + ' · ' + parts.join(' · ');
  }
  function edgeColor(e) { return e.errorRate > 0.05 ? '#dc2626' : e.errorRate > 0 ? '#f59e0b' : e.mtlsShare > 0 ? '#16a34a' : '#64748b'; }
  function nodeLabel(n) { return n.kind === 'unknown' ? 'unknown (outside the mesh)' : n.name + '\\n' + n.namespace; }

  function draw(data) {
    var ids = {};
    var elements = [];
    data.nodes.forEach(function (n) {
      ids[n.id] = true;
      elements.push({ group: 'nodes', data: { id: n.id, label: nodeLabel(n), kind: n.kind } });
    });
    data.edges.forEach(function (e) {
      elements.push({ group: 'edges', data: { id: e.id, source: e.source, target: e.target, label: edgeLabel(e), color: edgeColor(e), lineStyle: e.mtlsShare > 0 ? 'solid' : 'dashed', rps: e.rps, errorRate: e.errorRate, p99Ms: e.p99Ms, mtlsShare: e.mtlsShare } });
    });
    var same = cy.nodes().length === data.nodes.length && cy.nodes().every(function (n) { return ids[n.id()]; }) && cy.edges().length === data.edges.length;
    if (same) {
      data.edges.forEach(function (e) {
        var el = cy.getElementById(e.id);
        if (el.empty()) { same = false; return; }
        el.data({ label: edgeLabel(e), color: edgeColor(e), lineStyle: e.mtlsShare > 0 ? 'solid' : 'dashed', rps: e.rps, errorRate: e.errorRate, p99Ms: e.p99Ms, mtlsShare: e.mtlsShare });
      });
    }
    if (!same) {
      cy.elements().remove();
      cy.add(elements);
      // Left to right: callers on the left, so that the edges and their labels run across.
      cy.layout({ name: 'breadthfirst', directed: true, spacingFactor: 1.2, padding: 50,
        transform: function (_node, p) { return { x: p.y * 1.8, y: p.x * 0.7 }; } }).run();
    }
    var byId = {};
    data.nodes.forEach(function (n) { byId[n.id] = n; });
    var rows = data.edges.map(function (e) {
      var from = byId[e.source], to = byId[e.target];
      var name = function (n) { return n.kind === 'unknown' ? 'unknown' : n.kind + ' ' + n.namespace + '/' + n.name; };
      return '<tr data-edge="' + e.id.replace(/"/g, '&quot;') + '"><td>' + esc(name(from)) + '</td><td>' + esc(name(to)) + '</td><td>' + e.protocol +
        '</td><td class="num">' + (e.protocol === 'http' ? fmt(e.rps, 2) : '') + '</td><td class="num">' + (e.protocol === 'http' ? fmt(e.errorRate * 100, 1) + '%' : '') +
        '</td><td class="num">' + (e.p99Ms === null ? '' : fmt(e.p99Ms, 1)) + '</td><td class="num">' + (e.protocol === 'tcp' ? bytes(e.bytesPerSecond) : '') +
        '</td><td>' + (e.mtlsShare >= 0.9999 ? 'yes' : e.mtlsShare > 0 ? 'partial' : 'no') + '</td></tr>';
    });
    document.querySelector('#edges tbody').innerHTML = rows.join('') || '<tr><td colspan="8">no traffic in this window</td></tr>';
    document.getElementById('queries').innerHTML = Object.keys(data.queries).map(function (k) {
      return '<p><b>' + esc(k) + '</b><br><code>' + esc(data.queries[k]) + '</code></p>';
    }).join('');
  }
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return '&#' + c.charCodeAt(0) + ';'; }); }

  function refresh() {
    fetch('${GRAPH_DATA_PATH}?window=' + encodeURIComponent(windowSelect.value), { cache: 'no-store' })
      .then(function (res) { return res.json().then(function (body) { return { ok: res.ok, body: body }; }); })
      .then(function (r) {
        if (!r.ok) throw new Error(r.body.message || 'the graph data could not be read');
        errorEl.style.display = 'none';
        window.mooringGraph.data = r.body;
        draw(r.body);
        window.mooringGraph.refreshes++;
        statusEl.textContent = r.body.nodes.length + ' nodes · ' + r.body.edges.length + ' edges · ' + new Date(r.body.generatedAt).toLocaleTimeString();
      })
      .catch(function (err) {
        errorEl.textContent = err.message;
        errorEl.style.display = 'block';
        statusEl.textContent = 'no data';
      })
      .finally(function () { setTimeout(refresh, refreshMs); });
  }
  function show(table) {
    tableEl.style.display = table ? 'block' : 'none';
    graphEl.style.display = table ? 'none' : 'block';
    document.getElementById('show-table').setAttribute('aria-pressed', String(table));
    document.getElementById('show-graph').setAttribute('aria-pressed', String(!table));
    if (!table) cy.resize();
  }
  document.getElementById('show-table').addEventListener('click', function () { show(true); });
  document.getElementById('show-graph').addEventListener('click', function () { show(false); });
  windowSelect.addEventListener('change', function () { cy.elements().remove(); });
  if (params.get('view') === 'table') show(true);
  refresh();
})();
`;

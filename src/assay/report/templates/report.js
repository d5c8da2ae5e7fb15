/* The report's page logic: decode the embedded data, load the inlined Plotly bundle, draw the
 * status, the runs table (sort, filter, paginate: only one page of rows is in the DOM, so 10,000
 * runs stay fast), a run's detail, the metric curves and the statistics chart. In `assay serve`
 * the page polls its server for new data and redraws without losing the table's state.
 * Cells are filled with textContent, never innerHTML, so no run value is ever markup. */
(function () {
  "use strict";
  var LIVE = document.body.dataset.live === "1";
  var REFRESH_MS = Number(document.body.dataset.refreshMs || 2000);
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"];
  var MAX_LINES = 30; // curve groups drawn at once; the group filter picks others
  var NONFINITE = { nan: NaN, inf: Infinity, "-inf": -Infinity };
  var DATA = null;
  var view = { sort: null, dir: 1, filter: [], words: [], state: "", page: 0, size: 50,
    selected: null, metric: null, groups: "", statMetric: null, statLog: false,
    curveStage: "", curveLog: false, smooth: 0, picked: [], allKeys: false,
    compareMetric: null, pcMetric: null, sx: null, sy: null, sc: "" };
  var SECTIONS = null; // the server-rendered sections' HTML (serve: merged with deltas)
  var rowTextCache = null;
  var PLOT_CONFIG = { displaylogo: false, responsive: true };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  async function inflate(id) {
    var b64 = $(id).textContent.trim();
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return await new Response(stream).text();
  }

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      var a = Math.abs(v);
      if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
      return String(Number(v.toPrecision(4)));
    }
    if (typeof v === "boolean") return v ? "true" : "false";
    return String(v);
  }
  function num(v) { // sortable number: nan/inf strings are numbers too
    if (typeof v === "number") return v;
    if (typeof v === "string" && v in NONFINITE) return NONFINITE[v];
    return null;
  }

  // Non-finite values are drawn, not dropped: as marked points at the edge of the plot, on a
  // second y axis that spans [0, 1] over the first (so zoom and log y never move them): -inf at
  // the bottom, +inf and nan at the top (as the engine's summary plots draw them).
  var EDGE = { "-inf": { y: 0.03, symbol: "triangle-down" }, "+inf": { y: 0.97, symbol: "triangle-up" },
    nan: { y: 0.91, symbol: "x-thin-open" } };
  var EDGE_KINDS = ["-inf", "+inf", "nan"];
  var EDGE_AXIS = { overlaying: "y", range: [0, 1], visible: false, fixedrange: true };
  var EDGE_COLOR = "#7b1fa2";
  function kindOf(v) { // "-inf", "+inf", "nan" for a non-finite value, else null
    var x = num(v);
    if (x === null || isFinite(x)) return null;
    return isNaN(x) ? "nan" : (x > 0 ? "+inf" : "-inf");
  }
  function edgeBuckets() { // per kind: x, hover text and (optional) a label beside the marker
    var b = {};
    EDGE_KINDS.forEach(function (k) { b[k] = { x: [], text: [], label: [] }; });
    return b;
  }
  function edgeTraces(buckets, name, color, extra) { // one marker trace per kind that occurs
    var out = [];
    EDGE_KINDS.forEach(function (kind) {
      var b = buckets[kind];
      if (!b.x.length) return;
      out.push(Object.assign({ x: b.x, y: b.x.map(function () { return EDGE[kind].y; }), yaxis: "y2",
        type: "scatter", mode: b.label.length ? "markers+text" : "markers", name: name + " · " + kind,
        meta: "nonfinite " + kind, showlegend: false, text: b.label, textposition: "middle right",
        textfont: { color: color, size: 10 },
        marker: { symbol: EDGE[kind].symbol, size: 10, color: color, line: { color: color, width: 2 } },
        hovertext: b.text, hovertemplate: "%{hovertext}<extra></extra>", cliponaxis: false }, extra || {}));
    });
    return out;
  }
  function lineEdges(name, steps, values) { // a run's own line: its non-finite values, one pass
    var b = null;
    for (var k = 0; k < values.length; k++) {
      var kind = kindOf(values[k]);
      if (!kind) continue;
      b = b || edgeBuckets();
      b[kind].x.push(steps[k]);
      b[kind].text.push(name + "<br>step " + steps[k] + ": " + kind);
    }
    return b;
  }
  function flagsOf(id) { // the flags a run's results declare ("_flags": {metric: text})
    var d = DATA.detail[id];
    return (d && d.results && d.results._flags) || null;
  }
  function flagOf(flags, metric) { // dotted names for nested metrics, or a nested mapping
    if (!flags) return "";
    if (typeof flags[metric] === "string") return flags[metric];
    var v = flags;
    metric.split(".").forEach(function (part) { v = v && typeof v === "object" ? v[part] : undefined; });
    return typeof v === "string" ? v : "";
  }

  // ---------------------------------------------------------------- status
  function renderStatus() {
    var gen = $("generated");
    if (gen) gen.textContent = "generated " + DATA.generated;
    var box = $("status-live");
    box.textContent = "";
    var counts = DATA.counts, total = 0;
    ["done", "failed", "running", "pending"].forEach(function (s) { total += counts[s] || 0; });
    var p = el("p", { id: "counts" });
    ["done", "failed", "running", "pending"].forEach(function (s) {
      var span = el("span", { class: "state " + s, "data-state": s }, (counts[s] || 0) + " " + s);
      p.appendChild(span); p.appendChild(document.createTextNode(" "));
    });
    p.appendChild(document.createTextNode(" of " + total + " run(s)"));
    box.appendChild(p);
    var bar = el("div", { class: "bar" });
    ["done", "failed", "running", "pending"].forEach(function (s) {
      if (!counts[s]) return;
      var seg = el("span", { class: s, title: counts[s] + " " + s });
      seg.style.width = (100 * counts[s] / total) + "%";
      bar.appendChild(seg);
    });
    box.appendChild(bar);
    if (DATA.running.length) {
      var ul = el("ul", { id: "running-list" });
      DATA.running.forEach(function (r) {
        var pr = r.progress, txt = r.id + ": running " + fmt(r.running_s) + " s";
        if (pr && pr.total) txt += ", " + (pr.desc || "") + " " + pr.n + "/" + pr.total;
        else if (pr && pr.n) txt += ", " + (pr.desc || "") + " " + pr.n;
        if (r.heartbeat_age_s !== null) txt += " (heartbeat " + fmt(r.heartbeat_age_s) + " s ago)";
        ul.appendChild(el("li", null, txt));
      });
      box.appendChild(ul);
    }
  }

  // ---------------------------------------------------------------- runs table
  function cols() { return DATA.table.columns; }

  function colIndex(name) {
    var c = cols(), lower = name.toLowerCase(), i;
    for (i = 0; i < c.length; i++) if (c[i].label.toLowerCase() === lower) return i;
    var hits = [];
    for (i = 0; i < c.length; i++) if (c[i].label.toLowerCase().indexOf(lower) === 0) hits.push(i);
    return hits.length === 1 ? hits[0] : -1;
  }

  function parseFilter(text) {
    var terms = [], words = [], errors = [];
    text.trim().split(/\s+/).filter(Boolean).forEach(function (tok) {
      var m = /^([^<>=!~]+)(<=|>=|!=|==|=|<|>|~)(.*)$/.exec(tok);
      if (!m) { words.push(tok.toLowerCase()); return; }
      var i = colIndex(m[1]);
      if (i < 0) {
        errors.push("no column '" + m[1] + "' (columns: " +
          cols().map(function (c) { return c.label; }).join(", ") + ")");
        return;
      }
      terms.push({ col: i, op: m[2] === "==" ? "=" : m[2], value: m[3] });
    });
    return { terms: terms, words: words, errors: errors };
  }

  function matches(row, term) {
    var v = row[term.col], c = cols()[term.col];
    if (term.op === "~") return fmt(v).toLowerCase().indexOf(term.value.toLowerCase()) >= 0;
    var x = num(v), y = Number(term.value);
    if (c.numeric && term.value !== "" && !isNaN(y)) {
      if (x === null) return term.op === "!=";
      switch (term.op) {
        case "=": return x === y; case "!=": return x !== y; case "<": return x < y;
        case ">": return x > y; case "<=": return x <= y; case ">=": return x >= y;
      }
    }
    var s = fmt(v).toLowerCase(), t = term.value.toLowerCase();
    switch (term.op) {
      case "=": return s === t; case "!=": return s !== t; case "<": return s < t;
      case ">": return s > t; case "<=": return s <= t; case ">=": return s >= t;
    }
    return false;
  }

  function visibleRows() {
    var rows = DATA.table.rows, out = [], stateCol = 2;
    if (!rowTextCache) rowTextCache = rows.map(function (r) { // a flag's text is found too
      var f = flagsOf(r[1]);
      return (r.map(fmt).join(" ") + (f ? " " + JSON.stringify(f) : "")).toLowerCase();
    });
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (view.state && r[stateCol] !== view.state) continue;
      if (!view.filter.every(function (t) { return matches(r, t); })) continue;
      var text = rowTextCache[i];
      if (!view.words.every(function (w) { return text.indexOf(w) >= 0; })) continue;
      out.push(i);
    }
    if (view.sort !== null) {
      var j = view.sort, numeric = cols()[j].numeric, dir = view.dir;
      out.sort(function (a, b) {
        var va = rows[a][j], vb = rows[b][j];
        if (numeric) { va = num(va); vb = num(vb); }
        // either direction: numbers (-inf and +inf at their ends), then nan, then missing
        var ra = va === null || va === undefined ? 2 : (numeric && isNaN(va) ? 1 : 0);
        var rb = vb === null || vb === undefined ? 2 : (numeric && isNaN(vb) ? 1 : 0);
        if (ra || rb) return ra === rb ? a - b : ra - rb;
        if (numeric) return va === vb ? a - b : (va < vb ? -dir : dir);
        var c = String(va).localeCompare(String(vb), undefined, { numeric: true });
        return c === 0 ? a - b : c * dir;
      });
    }
    return out;
  }

  function renderHead() {
    var tr = el("tr");
    tr.appendChild(el("th", { class: "pick", title: "tick runs to compare them (section Compare)" }, "cmp"));
    cols().forEach(function (c, j) {
      var th = el("th", { "data-col": c.key, title: c.kind + ": " + c.key }, c.label);
      if (view.sort === j) th.setAttribute("aria-sort", view.dir > 0 ? "ascending" : "descending");
      th.addEventListener("click", function () {
        if (view.sort === j) view.dir = -view.dir; else { view.sort = j; view.dir = 1; }
        view.page = 0; renderHead(); renderBody();
      });
      tr.appendChild(th);
    });
    var thead = $("runs-table").tHead;
    thead.textContent = "";
    thead.appendChild(tr);
  }

  function renderBody() {
    var idx = visibleRows(), rows = DATA.table.rows, c = cols();
    var pages = Math.max(1, Math.ceil(idx.length / view.size));
    if (view.page >= pages) view.page = pages - 1;
    var start = view.page * view.size, end = Math.min(idx.length, start + view.size);
    var tbody = $("runs-table").tBodies[0], frag = document.createDocumentFragment();
    for (var k = start; k < end; k++) {
      var row = rows[idx[k]], tr = el("tr", { "data-id": row[1] }), flags = flagsOf(row[1]);
      if (row[1] === view.selected) tr.className = "selected";
      var pick = el("td", { class: "pick" }), box = el("input", { type: "checkbox", class: "pick", "data-id": row[1], title: "compare" });
      box.checked = isPicked("run", row[1]);
      pick.appendChild(box);
      tr.appendChild(pick);
      for (var j = 0; j < c.length; j++) {
        var v = row[j], td = el("td");
        if (c[j].key === "state") td.appendChild(el("span", { class: "state " + v }, v));
        else td.textContent = fmt(v);
        if (c[j].numeric) {
          td.className = "num";
          if (typeof v === "number") td.title = String(v);
          else if (typeof v === "string" && v in NONFINITE) {
            td.className = "num nonfinite";
            td.title = v + ": not a finite number; counted apart and left out of means and intervals";
          }
        }
        var flag = c[j].kind === "result" ? flagOf(flags, c[j].key.slice(8)) : "";
        if (flag) { // a badge before the number, its text on hover
          td.classList.add("flagged");
          td.insertBefore(el("span", { class: "flag-badge", title: "flag: " + flag, "data-flag": flag }, "\u2691"), td.firstChild);
        }
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    tbody.textContent = "";
    tbody.appendChild(frag);
    var total = rows.length;
    $("page-info").textContent = idx.length
      ? "rows " + (start + 1) + "–" + end + " of " + idx.length +
        (idx.length < total ? " (filtered from " + total + ")" : "") +
        " · page " + (view.page + 1) + "/" + pages
      : "no rows match (of " + total + ")";
    $("prev").disabled = view.page === 0;
    $("next").disabled = view.page >= pages - 1;
  }

  // ---------------------------------------------------------------- run detail
  function renderDetail(scroll) { // scroll: a row was just clicked (never on a refresh)
    var box = $("detail"), id = view.selected;
    if (!id || !DATA.detail[id]) { box.hidden = true; return; }
    var d = DATA.detail[id], row = null, old = $("detail-plot"), keep = null;
    if (old && old.layout && old.dataset.key === id + "|" + view.metric) { // a refresh keeps the zoom
      keep = {};
      ["xaxis", "yaxis"].forEach(function (a) { if (old.layout[a] && old.layout[a].autorange === false) keep[a] = old.layout[a].range.slice(); });
    }
    DATA.table.rows.forEach(function (r) { if (r[1] === id) row = r; });
    box.hidden = false;
    box.textContent = "";
    var head = el("h3", null, "run " + id + " ");
    var close = el("button", { type: "button", id: "detail-close" }, "close");
    close.addEventListener("click", function () { view.selected = null; renderDetail(); renderBody(); });
    head.appendChild(close);
    box.appendChild(head);
    var kv = el("table", { class: "kv" });
    function add(k, v) { var tr = el("tr"); tr.appendChild(el("th", null, k)); tr.appendChild(el("td", null, v)); kv.appendChild(tr); }
    add("stage", d.stage);
    if (row) add("state", row[2]);
    add("folder", d.dir || "");
    var p = d.provenance;
    if (p) {
      add("commit", (p.commit || "(no git)") + (p.dirty ? " (dirty: uncommitted changes)" : ""));
      add("host / python / device", [p.host, p.python, p.device].join(" / "));
      add("started", (p.started || "") + " (attempt " + p.attempt + ")");
    }
    if (d.error) add("error", d.error);
    box.appendChild(kv);
    box.appendChild(el("h4", null, "results"));
    box.appendChild(el("pre", { id: "detail-results" }, JSON.stringify(d.results, null, 2)));
    box.appendChild(el("h4", null, "config"));
    box.appendChild(el("pre", { id: "detail-config" }, JSON.stringify(d.config, null, 2)));
    var own = DATA.curves.runs[id];
    if (own && Object.keys(own).length && window.Plotly) {
      var metric = own[view.metric] ? view.metric : Object.keys(own)[0];
      box.appendChild(el("h4", null, "curve: " + metric + " (this run; the metric switcher above picks it)"));
      var div = el("div", { class: "plot", id: "detail-plot", "data-key": id + "|" + view.metric });
      box.appendChild(div);
      var s = own[metric], layout = { margin: { t: 10, r: 10 }, xaxis: { title: { text: "step" } },
        yaxis: { title: { text: metric }, type: view.curveLog ? "log" : "linear" }, yaxis2: EDGE_AXIS };
      Object.keys(keep || {}).forEach(function (a) { layout[a].range = keep[a]; layout[a].autorange = false; });
      var edges = lineEdges("run " + id, s[0], s[1]);
      Plotly.newPlot(div, [{ x: s[0], y: s[1].map(num), mode: s[0].length > 1 ? "lines+markers" : "markers", name: id }]
        .concat(edges ? edgeTraces(edges, "run " + id, EDGE_COLOR) : []), layout, PLOT_CONFIG);
    }
    if (scroll) box.scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------- curves
  function rgba(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16 & 255) + "," + (n >> 8 & 255) + "," + (n & 255) + "," + a + ")";
  }

  function curveSource() { // the suite's own stage, or an upstream stage's curves
    var up = DATA.curves.upstream || {};
    if (view.curveStage && up[view.curveStage]) return up[view.curveStage];
    return DATA.curves;
  }

  function renderCurveSelect() {
    var stageSel = $("curve-stage"), up = DATA.curves.upstream || {}, stages = Object.keys(up);
    var own = DATA.plan ? DATA.plan.stage : DATA.source.stage;
    if (view.curveStage && !up[view.curveStage]) view.curveStage = "";
    if (!view.curveStage && !DATA.curves.metrics.length && stages.length) view.curveStage = stages[0];
    stageSel.textContent = "";
    stageSel.appendChild(el("option", { value: "" }, own + " (this report's runs)"));
    stages.forEach(function (st) {
      stageSel.appendChild(el("option", { value: st }, st + " (upstream, " + up[st].n_runs + " runs)"));
    });
    stageSel.value = view.curveStage;
    $("curve-stage-label").hidden = !stages.length;
    var sel = $("curve-metric"), metrics = curveSource().metrics;
    if (view.metric === null || metrics.indexOf(view.metric) < 0) view.metric = metrics[0] || null;
    sel.textContent = "";
    metrics.forEach(function (m) { var o = el("option", null, m); if (m === view.metric) o.selected = true; sel.appendChild(o); });
  }

  function ema(ys, w) { // W&B's and TensorBoard's debiased exponential moving average
    if (!w) return ys.map(num);
    var last = 0, k = 0;
    return ys.map(function (y) {
      var v = num(y);
      if (v === null || !isFinite(v)) return v;
      last = last * w + (1 - w) * v; k += 1;
      return last / (1 - Math.pow(w, k));
    });
  }

  function curveLayout(ytitle, key) {
    return { margin: { t: 20, r: 10 }, hovermode: "closest",
      uirevision: key + "|" + view.curveLog, // a live refresh keeps the user's zoom
      xaxis: { title: { text: "step" } },
      yaxis: { title: { text: ytitle }, type: view.curveLog ? "log" : "linear" },
      yaxis2: EDGE_AXIS, legend: { font: { size: 11 } } };
  }

  function groupEdges(l) { // a group line's steps with non-finite values (l.edges: [k, -inf, +inf, nan])
    var b = edgeBuckets();
    l.edges.forEach(function (e) {
      var k = e[0], total = l.n[k] + l.nonfinite[k];
      EDGE_KINDS.forEach(function (kind, i) {
        if (!e[i + 1]) return;
        b[kind].x.push(l.steps[k]);
        b[kind].text.push(l.group + "<br>step " + l.steps[k] + ": " + e[i + 1] + " of " + total + " runs " + kind +
          (l.n[k] ? " (left out of the mean of " + l.n[k] + ")" : " (no finite value at this step)"));
      });
    });
    return b;
  }

  function lineTraces(name, x, y, color, extra) { // raw (faint when smoothed) and smoothed
    var out = [], mode = x.length > 1 ? "lines" : "markers";
    if (view.smooth) {
      out.push(Object.assign({ x: x, y: y.map(num), type: "scatter", mode: mode, showlegend: false,
        hoverinfo: "skip", opacity: 0.3, line: { color: color, width: 1 }, marker: { color: color } }, extra, { name: name + " (raw)" }));
    }
    out.push(Object.assign({ x: x, y: ema(y, view.smooth), name: name, type: "scatter", mode: mode,
      line: { color: color }, marker: { color: color } }, extra));
    return out;
  }

  function renderCurves() {
    var div = $("curve-plot"), info = $("curve-info"), src = curveSource();
    var notes = $("curve-notes");
    notes.textContent = "";
    src.notes.slice(0, 20).forEach(function (n) { notes.appendChild(el("p", { class: "note" }, n)); });
    if (src.notes.length > 20) notes.appendChild(el("p", { class: "note" }, (src.notes.length - 20) + " more note(s)"));
    if (!view.metric) { info.textContent = "no run has logged metrics yet"; div.textContent = ""; return; }
    var lines = src.series[view.metric] || [], g = view.groups.toLowerCase();
    var failed = ((src.failed || {})[view.metric] || []).filter(function (l) { return !g || l.group.toLowerCase().indexOf(g) >= 0; });
    var shown = lines.filter(function (l) { return !g || l.group.toLowerCase().indexOf(g) >= 0; });
    info.textContent = (shown.length > MAX_LINES
      ? "showing " + MAX_LINES + " of " + shown.length + " groups (narrow them with the group filter)"
      : shown.length + " group(s)") + (failed.length ? "; " + failed.length + " failed run(s), dashed" +
        (failed.length > MAX_LINES ? " (the first " + MAX_LINES + " drawn; narrow them with the group filter)" : "") : "");
    shown = shown.slice(0, MAX_LINES);
    var traces = [], marks = [], nonfinite = 0; // marks: the groups' edge markers, drawn on top
    shown.forEach(function (l, i) {
      var color = COLORS[i % COLORS.length], bx = [], bhi = [], blo = [];
      l.steps.forEach(function (s, k) { if (l.lo[k] !== null && l.hi[k] !== null) { bx.push(s); bhi.push(l.hi[k]); blo.push(l.lo[k]); } });
      if (bx.length > 1) {
        traces.push({ x: bx.concat(bx.slice().reverse()), y: bhi.concat(blo.slice().reverse()),
          fill: "toself", fillcolor: rgba(color, 0.18), line: { width: 0 }, hoverinfo: "skip",
          showlegend: false, legendgroup: l.group, type: "scatter" });
      }
      traces = traces.concat(lineTraces(l.group, l.steps, l.mean, color, { legendgroup: l.group, customdata: l.n,
        hovertemplate: "%{fullData.name}<br>step %{x}: %{y:.4g} (n=%{customdata})<extra></extra>" }));
      if (l.edges && l.edges.length) {
        nonfinite += 1;
        marks = marks.concat(edgeTraces(groupEdges(l), l.group, color, { legendgroup: l.group }));
      }
    });
    var groupColor = {};
    shown.forEach(function (l, i) { groupColor[l.group] = COLORS[i % COLORS.length]; });
    var nextColor = shown.length;
    failed.slice(0, MAX_LINES).forEach(function (l) { // a group only failed runs hold: a colour of its own
      if (!(l.group in groupColor)) groupColor[l.group] = COLORS[nextColor++ % COLORS.length];
    });
    failed.slice(0, MAX_LINES).forEach(function (l) {
      var color = groupColor[l.group];
      var name = l.group + " · failed " + l.run, b = lineEdges(name, l.steps, l.values);
      traces = traces.concat(lineTraces(name, l.steps, l.values, color, {
        legendgroup: "failed", line: { color: color, dash: "dash" }, meta: "failed",
        hovertemplate: "%{fullData.name}<br>step %{x}: %{y:.4g} (run failed here)<extra></extra>" }));
      if (b) { nonfinite += 1; traces = traces.concat(edgeTraces(b, name, color, { legendgroup: "failed" })); }
    });
    traces = traces.concat(marks);
    if (nonfinite) info.textContent += "; non-finite values at the plot's edge (\u25bc -inf, \u25b2 +inf, \u2715 nan)";
    Plotly.react(div, traces, curveLayout(view.metric, (view.curveStage || "own") + "|" + view.metric), PLOT_CONFIG);
  }

  // ---------------------------------------------------------------- compare runs and groups
  function isPicked(kind, key) {
    return view.picked.some(function (p) { return p.kind === kind && p.key === key; });
  }
  function togglePick(kind, key) {
    if (isPicked(kind, key)) view.picked = view.picked.filter(function (p) { return !(p.kind === kind && p.key === key); });
    else view.picked.push({ kind: kind, key: key });
    renderBody(); renderCompare();
  }

  function flat(obj, prefix, out) { // {a: {b: 1}} -> {"a.b": 1}, as the table's columns
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k], key = prefix + k;
      if (v !== null && typeof v === "object" && !Array.isArray(v)) flat(v, key + ".", out);
      else out[key] = Array.isArray(v) ? JSON.stringify(v) : v;
    });
    return out;
  }

  function runsOf(p) { // a picked item's run ids
    if (p.kind === "run") return DATA.detail[p.key] ? [p.key] : [];
    return Object.keys(DATA.detail).filter(function (id) { return DATA.detail[id].group === p.key; });
  }

  function itemName(p) { return p.kind === "run" ? "run " + p.key : "group " + p.key; }

  function itemValues(p, what) { // key -> shown text; a group: its one value, or every value it holds
    var ids = runsOf(p), per = {}, out = {};
    ids.forEach(function (id) {
      var f = flat(DATA.detail[id][what] || {}, "", {});
      Object.keys(f).forEach(function (k) { (per[k] = per[k] || []).push(f[k]); });
    });
    Object.keys(per).forEach(function (k) {
      var vals = per[k];
      if (what === "results" && p.kind === "group") {
        var xs = vals.map(num).filter(function (x) { return x !== null && isFinite(x); });
        if (xs.length === vals.length && xs.length) {
          var m = xs.reduce(function (a, b) { return a + b; }, 0) / xs.length;
          out[k] = fmt(m) + " (mean of " + xs.length + ")";
          return;
        }
      }
      var distinct = [];
      vals.forEach(function (v) { var t = fmt(v); if (distinct.indexOf(t) < 0) distinct.push(t); });
      out[k] = distinct.join(" | ");
    });
    return out;
  }

  function compareTable(id, what) {
    var table = $(id), items = view.picked, values = items.map(function (p) { return itemValues(p, what); });
    var keys = [];
    values.forEach(function (v) { Object.keys(v).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
    table.textContent = "";
    var head = el("tr");
    head.appendChild(el("th", null, what === "config" ? "config key" : "result"));
    items.forEach(function (p, i) {
      var th = el("th", { style: "border-top: 3px solid " + COLORS[i % COLORS.length] }, itemName(p) + " ");
      var rm = el("button", { type: "button", class: "unpick", title: "remove from the comparison" }, "×");
      rm.addEventListener("click", function () { togglePick(p.kind, p.key); });
      th.appendChild(rm);
      head.appendChild(th);
    });
    table.appendChild(el("thead")).appendChild(head);
    var body = el("tbody"), n = 0;
    keys.forEach(function (k) {
      var texts = values.map(function (v) { return k in v ? v[k] : "(absent)"; });
      var differs = texts.some(function (t) { return t !== texts[0]; });
      if (!differs && !view.allKeys && what === "config") return;
      var tr = el("tr", { class: differs ? "diff" : "same", "data-key": k });
      tr.appendChild(el("th", null, k));
      texts.forEach(function (t) { tr.appendChild(el("td", null, t)); });
      body.appendChild(tr); n += 1;
    });
    table.appendChild(body);
    return n;
  }

  function renderCompare() {
    var box = $("compare-body"), gsel = $("compare-group");
    var groups = [];
    Object.keys(DATA.detail).forEach(function (id) { var g = DATA.detail[id].group; if (groups.indexOf(g) < 0) groups.push(g); });
    var keep = gsel.value;
    gsel.textContent = "";
    groups.forEach(function (g) { gsel.appendChild(el("option", null, g)); });
    if (groups.indexOf(keep) >= 0) gsel.value = keep;
    view.picked = view.picked.filter(function (p) { return runsOf(p).length; });
    $("compare-info").textContent = view.picked.length
      ? view.picked.length + " picked: " + view.picked.map(itemName).join("; ")
      : "tick runs in the table (column cmp), or add groups, to compare them";
    box.hidden = !view.picked.length;
    if (!view.picked.length) return;
    var nd = compareTable("compare-diff", "config");
    $("compare-diff-note").textContent = nd ? "" : "the picked items have the same config" + (view.allKeys ? "" : " (tick 'every key' to list it)");
    compareTable("compare-results", "results");
    var metrics = DATA.curves.metrics, sel = $("compare-metric");
    if (!view.compareMetric || metrics.indexOf(view.compareMetric) < 0) view.compareMetric = view.metric && metrics.indexOf(view.metric) >= 0 ? view.metric : metrics[0] || null;
    sel.textContent = "";
    metrics.forEach(function (m) { var o = el("option", null, m); if (m === view.compareMetric) o.selected = true; sel.appendChild(o); });
    var div = $("compare-plot"), m = view.compareMetric, traces = [], missing = [];
    if (!m) { div.textContent = ""; return; }
    view.picked.forEach(function (p, i) {
      var color = COLORS[i % COLORS.length], x = null, y = null, extra = {}, edges = null;
      if (p.kind === "group") {
        (DATA.curves.series[m] || []).forEach(function (l) { if (l.group === p.key) { x = l.steps; y = l.mean; if (l.edges && l.edges.length) edges = groupEdges(l); } });
      } else {
        var own = (DATA.curves.runs[p.key] || {})[m];
        if (own) { x = own[0]; y = own[1]; }
        ((DATA.curves.failed || {})[m] || []).forEach(function (l) { if (l.run === p.key) { x = l.steps; y = l.values; extra = { line: { color: color, dash: "dash" } }; } });
        if (x !== null) edges = lineEdges(itemName(p), x, y);
      }
      if (x === null) { missing.push(itemName(p)); return; }
      traces = traces.concat(lineTraces(itemName(p), x, y, color, extra));
      if (edges) traces = traces.concat(edgeTraces(edges, itemName(p), color));
    });
    $("compare-curve-note").textContent = missing.length ? "no " + m + " curve for: " + missing.join("; ") : "";
    Plotly.react(div, traces, curveLayout(m, "compare|" + m), PLOT_CONFIG);
  }

  // ---------------------------------------------------------------- parameters against metrics
  function columnsOf(kinds) {
    return cols().filter(function (c) { return kinds.indexOf(c.kind) >= 0 && c.key !== "id" && c.key !== "index"; });
  }
  function fillSelect(sel, options, value, none) {
    sel.textContent = "";
    if (none) sel.appendChild(el("option", { value: "" }, none));
    options.forEach(function (c) { sel.appendChild(el("option", { value: c.key }, c.label)); });
    var keys = options.map(function (c) { return c.key; });
    sel.value = keys.indexOf(value) >= 0 || (none && value === "") ? value : (none ? "" : keys[0] || "");
    return sel.value;
  }
  function column(key) {
    var j = -1;
    cols().forEach(function (c, i) { if (c.key === key) j = i; });
    return j < 0 ? null : { c: cols()[j], values: DATA.table.rows.map(function (r) { return r[j]; }) };
  }
  function axisOf(col) { // numbers as numbers; anything else as categories, in order of appearance
    if (col.c.numeric) return { values: col.values.map(num), cats: null };
    var cats = [];
    col.values.forEach(function (v) { var t = fmt(v); if (v !== null && cats.indexOf(t) < 0) cats.push(t); });
    return { values: col.values.map(function (v) { return v === null ? null : cats.indexOf(fmt(v)); }), cats: cats };
  }

  function renderParcoords() {
    var results = columnsOf(["result"]).filter(function (c) { return c.numeric; });
    var div = $("parcoords-plot"), info = $("parcoords-info");
    view.pcMetric = fillSelect($("parcoords-metric"), results, view.pcMetric);
    var params = columnsOf(["param"]);
    if (!view.pcMetric || !params.length) { info.textContent = "needs a varying parameter and a numeric result"; div.textContent = ""; return; }
    var metric = column(view.pcMetric), state = column("state").values;
    var keep = [];
    metric.values.forEach(function (v, i) { var x = num(v); if (state[i] === "done" && x !== null && isFinite(x)) keep.push(i); });
    var dims = params.map(function (c) {
      var ax = axisOf(column(c.key)), d = { label: c.label, values: keep.map(function (i) { return ax.values[i]; }) };
      if (ax.cats) { d.tickvals = ax.cats.map(function (_, k) { return k; }); d.ticktext = ax.cats; }
      return d;
    });
    var ys = keep.map(function (i) { return num(metric.values[i]); });
    dims.push({ label: metric.c.label, values: ys });
    info.textContent = keep.length + " finished run(s) with a finite " + metric.c.label + "; drag along an axis to filter";
    Plotly.react(div, [{ type: "parcoords", dimensions: dims,
      line: { color: ys, colorscale: "Viridis", showscale: true, colorbar: { title: { text: metric.c.label } } } }],
      { margin: { t: 40, l: 60, r: 60 }, uirevision: "pc|" + view.pcMetric }, PLOT_CONFIG);
  }

  function renderScatter() {
    var all = columnsOf(["param", "result"]).concat(columnsOf(["meta"]).filter(function (c) { return c.key === "duration_s"; }));
    var results = columnsOf(["result"]);
    view.sx = fillSelect($("scatter-x"), all, view.sx);
    view.sy = fillSelect($("scatter-y"), all, view.sy || (results[0] && results[0].key));
    view.sc = fillSelect($("scatter-color"), all, view.sc, "(none)");
    var div = $("scatter-plot");
    if (!view.sx || !view.sy) { div.textContent = ""; return; }
    var cx = column(view.sx), cy = column(view.sy), ax = axisOf(cx), ay = axisOf(cy), ids = column("id").values;
    var keep = [];
    ax.values.forEach(function (x, i) { if (x !== null && ay.values[i] !== null && isFinite(x) && isFinite(ay.values[i])) keep.push(i); });
    function pick(arr) { return keep.map(function (i) { return arr[i]; }); }
    function shown(a, col) { return a.cats ? pick(col.values).map(fmt) : pick(a.values); }
    var traces = [], base = { type: "scatter", mode: "markers", customdata: pick(ids),
      hovertemplate: "run %{customdata}<br>" + cx.c.label + " %{x}<br>" + cy.c.label + " %{y}<extra>%{fullData.name}</extra>" };
    if (!view.sc) {
      traces.push(Object.assign({ x: shown(ax, cx), y: shown(ay, cy), name: "runs", marker: { color: COLORS[0], size: 8 } }, base));
    } else {
      var cc = column(view.sc), ac = axisOf(cc);
      if (!ac.cats) {
        traces.push(Object.assign({ x: shown(ax, cx), y: shown(ay, cy), name: "runs",
          marker: { color: pick(ac.values), colorscale: "Viridis", showscale: true, size: 8,
            colorbar: { title: { text: cc.c.label } } } }, base));
      } else {
        ac.cats.forEach(function (cat, k) {
          var idx = keep.filter(function (i) { return ac.values[i] === k; });
          var sub = { x: [], y: [], customdata: [] };
          idx.forEach(function (i) {
            sub.x.push(ax.cats ? fmt(cx.values[i]) : ax.values[i]);
            sub.y.push(ay.cats ? fmt(cy.values[i]) : ay.values[i]);
            sub.customdata.push(ids[i]);
          });
          traces.push(Object.assign({}, base, sub, { name: cc.c.label + "=" + cat, marker: { color: COLORS[k % COLORS.length], size: 8 } }));
        });
      }
    }
    $("scatter-info").textContent = keep.length + " run(s) with both values";
    Plotly.react(div, traces, { margin: { t: 20, r: 10 }, hovermode: "closest",
      uirevision: "sc|" + view.sx + "|" + view.sy,
      xaxis: { title: { text: cx.c.label }, type: ax.cats ? "category" : "linear" },
      yaxis: { title: { text: cy.c.label }, type: ay.cats ? "category" : "linear" },
      legend: { title: { text: view.sc ? cc.c.label : "" } } }, PLOT_CONFIG);
  }

  // ---------------------------------------------------------------- statistics chart + family figures
  var FLAG_CHARS = 28; // a flag's text beside a point is cut here; the hover has all of it
  function statTraces(rows) { // one pass over a metric's summary rows
    var groups = [], full = { x: [], y: [], plus: [], minus: [], text: [] }, edges = edgeBuckets();
    var part = { x: [], y: [], plus: [], minus: [], text: [], label: [] };
    var flagAt = { x: [], y: [], text: [], hover: [] }, flagEdge = { x: [], y: [], text: [], hover: [] };
    rows.forEach(function (r) {
      var mean = num(r.mean), lo = num(r.ci_low), hi = num(r.ci_high);
      var bad = r.n_nonfinite || 0, total = r.n + bad, drawn = r.n > 0 && mean !== null && isFinite(mean);
      groups.push(r.group);
      if (drawn) {
        var t = bad ? part : full, ci = r.n > 1 && isFinite(lo) && isFinite(hi);
        t.x.push(r.group); t.y.push(mean);
        t.plus.push(ci ? Math.max(0, hi - mean) : 0); t.minus.push(ci ? Math.max(0, mean - lo) : 0);
        t.text.push(r.group + "<br>mean " + fmt(mean) + (ci ? " [" + fmt(lo) + ", " + fmt(hi) + "]" : "") +
          (bad ? "<br>partial: the mean of the " + r.n + " finite of " + total + " runs (" +
            EDGE_KINDS.map(function (k) { var c = r[{ "-inf": "n_neginf", "+inf": "n_posinf", nan: "n_nan" }[k]]; return c ? c + " " + k : ""; })
              .filter(Boolean).join(", ") + " left out)" : " (n=" + r.n + ")") + (r.note ? "<br>" + r.note : ""));
        if (bad) part.label.push("partial (" + r.n + " of " + total + ")");
      }
      [["-inf", r.n_neginf], ["+inf", r.n_posinf], ["nan", r.n_nan]].forEach(function (kc) {
        if (!kc[1]) return;
        edges[kc[0]].x.push(r.group);
        edges[kc[0]].label.push(kc[1] + " " + kc[0]);
        edges[kc[0]].text.push(r.group + "<br>" + kc[1] + " of " + total + " runs " + kc[0] +
          (r.n ? " (left out of the mean)" : " (no finite value)"));
      });
      if (r.flags) {
        var f = drawn ? flagAt : flagEdge, short = String(r.flags);
        f.x.push(r.group); f.y.push(drawn ? mean : 0.5);
        f.text.push("\u2691 " + (short.length > FLAG_CHARS ? short.slice(0, FLAG_CHARS - 1) + "\u2026" : short));
        f.hover.push(r.group + "<br>flag: " + r.flags);
      }
    });
    function means(t, name, marker, extra) {
      return Object.assign({ x: t.x, y: t.y, name: name, type: "scatter", mode: "markers", marker: marker,
        hovertext: t.text, hovertemplate: "%{hovertext}<extra></extra>",
        error_y: { type: "data", symmetric: false, array: t.plus, arrayminus: t.minus } }, extra || {});
    }
    var traces = [means(full, "mean", { color: COLORS[0], size: 8 }, { meta: "mean" })];
    if (part.x.length) {
      traces.push(means(part, "partial mean (some runs non-finite, left out)",
        { color: "#fff", size: 11, line: { color: "#e65100", width: 2 } },
        { meta: "partial", mode: "markers+text", text: part.label, textposition: "bottom right",
          textfont: { color: "#e65100", size: 11 }, error_y: { type: "data", symmetric: false, array: part.plus,
            arrayminus: part.minus, color: "#e65100" } }));
    }
    traces = traces.concat(edgeTraces(edges, "non-finite", EDGE_COLOR));
    [[flagAt, "y"], [flagEdge, "y2"]].forEach(function (fy) {
      var f = fy[0];
      if (!f.x.length) return;
      traces.push({ x: f.x, y: f.y, yaxis: fy[1], type: "scatter", mode: "text", text: f.text, textposition: "top right",
        textfont: { color: "#b26a00", size: 11 }, name: "flags", meta: "flags", showlegend: false, cliponaxis: false,
        hovertext: f.hover, hovertemplate: "%{hovertext}<extra></extra>" });
    });
    return { traces: traces, groups: groups, partial: part.x.length, edges: EDGE_KINDS.some(function (k) { return edges[k].x.length; }) };
  }

  function renderStats() {
    var sel = $("stat-metric"), div = $("stat-plot");
    if (!sel || !div) return;
    if (view.statMetric && DATA.stats.metrics.indexOf(view.statMetric) >= 0) sel.value = view.statMetric;
    view.statMetric = sel.value;
    var rows = DATA.stats.summary.filter(function (r) { return r.metric === view.statMetric; });
    var chart = statTraces(rows);
    Plotly.react(div, chart.traces,
      { margin: { t: 20, r: 10, b: 120 }, uirevision: view.statMetric + "|" + view.statLog, hovermode: "closest",
        showlegend: chart.partial > 0,
        legend: { orientation: "h", y: 1.08, font: { size: 11 } },
        yaxis: { title: { text: view.statMetric + " (mean, 95% CI)" }, type: view.statLog ? "log" : "linear" },
        yaxis2: EDGE_AXIS,
        xaxis: { automargin: true, type: "category", categoryorder: "array", categoryarray: chart.groups } }, PLOT_CONFIG);
    var info = $("stat-info");
    if (info) {
      info.textContent = chart.edges || chart.partial
        ? "non-finite values at the plot's edge (\u25bc -inf at the bottom, \u25b2 +inf and \u2715 nan at the top; " +
          "hover for counts); a ringed mean is partial: the mean of the finite values only"
        : "";
    }
  }

  function renderFamilyFigures() {
    document.querySelectorAll(".family-figure").forEach(function (div) {
      var fig = DATA.families[Number(div.dataset.section)].figures[Number(div.dataset.figure)];
      Plotly.newPlot(div, fig.data || [], fig.layout || {}, { displaylogo: false, responsive: true });
    });
  }

  function bindSections() {
    var sel = $("stat-metric"), log = $("stat-logy");
    if (sel) sel.addEventListener("change", function () { view.statMetric = sel.value; renderStats(); });
    if (log) {
      log.checked = view.statLog;
      log.addEventListener("change", function () { view.statLog = log.checked; renderStats(); });
    }
    renderStats();
    renderFamilyFigures();
  }

  // ---------------------------------------------------------------- wiring and live refresh
  function renderAll() {
    rowTextCache = null;
    renderStatus();
    renderHead();
    renderBody();
    renderCurveSelect();
    renderCurves();
    renderDetail();
    renderCompare();
    renderExplore();
  }

  // Parallel coordinates of 10,000 runs take seconds to draw without a GPU: the section is
  // drawn when it first scrolls into view, and redrawn on refresh only from then on.
  var exploreSeen = false;
  function renderExplore() {
    if (!exploreSeen) return;
    renderParcoords();
    renderScatter();
    document.body.dataset.explore = "1";
  }
  function watchExplore() {
    if (!("IntersectionObserver" in window)) { exploreSeen = true; renderExplore(); return; }
    var seen = new IntersectionObserver(function (entries) {
      if (exploreSeen || !entries.some(function (e) { return e.isIntersecting; })) return;
      exploreSeen = true;
      seen.disconnect();
      renderExplore();
    });
    seen.observe($("explore"));
  }

  function bind() {
    var timer = null;
    $("filter").addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var f = parseFilter($("filter").value);
        view.filter = f.terms; view.words = f.words; view.page = 0;
        $("filter-error").textContent = f.errors.join("; ");
        renderBody();
      }, 120);
    });
    $("state-filter").addEventListener("change", function () { view.state = this.value; view.page = 0; renderBody(); });
    $("page-size").addEventListener("change", function () { view.size = Number(this.value); view.page = 0; renderBody(); });
    $("prev").addEventListener("click", function () { view.page = Math.max(0, view.page - 1); renderBody(); });
    $("next").addEventListener("click", function () { view.page += 1; renderBody(); });
    $("runs-table").tBodies[0].addEventListener("click", function (ev) {
      if (ev.target.classList.contains("pick")) { togglePick("run", ev.target.dataset.id); return; }
      if (ev.target.closest("td.pick")) return;
      var tr = ev.target.closest("tr");
      if (!tr) return;
      view.selected = tr.dataset.id;
      renderBody(); renderDetail(true);
    });
    $("curve-metric").addEventListener("change", function () { view.metric = this.value; renderCurves(); renderDetail(); });
    $("curve-stage").addEventListener("change", function () { view.curveStage = this.value; view.metric = null; renderCurveSelect(); renderCurves(); });
    $("curve-logy").addEventListener("change", function () { view.curveLog = this.checked; renderCurves(); renderCompare(); renderDetail(); });
    $("curve-smooth").addEventListener("input", function () {
      view.smooth = Number(this.value);
      $("curve-smooth-value").textContent = view.smooth.toFixed(2);
      renderCurves(); renderCompare();
    });
    $("compare-add-group").addEventListener("click", function () { var g = $("compare-group").value; if (g && !isPicked("group", g)) togglePick("group", g); });
    $("compare-clear").addEventListener("click", function () { view.picked = []; renderBody(); renderCompare(); });
    $("compare-all-keys").addEventListener("change", function () { view.allKeys = this.checked; renderCompare(); });
    $("compare-metric").addEventListener("change", function () { view.compareMetric = this.value; renderCompare(); });
    $("parcoords-metric").addEventListener("change", function () { view.pcMetric = this.value; renderParcoords(); });
    ["scatter-x", "scatter-y", "scatter-color"].forEach(function (id) {
      $(id).addEventListener("change", function () {
        view.sx = $("scatter-x").value; view.sy = $("scatter-y").value; view.sc = $("scatter-color").value;
        renderScatter();
      });
    });
    var gt = null;
    $("curve-groups").addEventListener("input", function () {
      clearTimeout(gt);
      var v = this.value;
      gt = setTimeout(function () { view.groups = v; renderCurves(); }, 150);
    });
  }

  function applyDelta(fingerprint, d) { // merge what changed since our build (_delta.py merge)
    var runs = {}, order = [];
    DATA.table.rows.forEach(function (row) {
      var id = row[1];
      order.push(id);
      runs[id] = { row: row, detail: DATA.detail[id], curve: (DATA.curves.runs || {})[id] };
    });
    Object.keys(d.runs).forEach(function (id) { runs[id] = d.runs[id]; if (order.indexOf(id) < 0) order.push(id); });
    d.removed.forEach(function (id) { delete runs[id]; });
    if (d.order) order = d.order; else order = order.filter(function (id) { return id in runs; });
    var next = {};
    Object.keys(DATA).forEach(function (k) { next[k] = DATA[k]; });
    Object.keys(d.blocks).forEach(function (k) { if (k !== "sections_html") next[k] = d.blocks[k]; });
    if ("sections_html" in d.blocks) SECTIONS = d.blocks.sections_html;
    var table = {}, curves = {};
    Object.keys(next.table).forEach(function (k) { if (k !== "rows") table[k] = next.table[k]; });
    Object.keys(next.curves).forEach(function (k) { if (k !== "runs") curves[k] = next.curves[k]; });
    table.rows = order.map(function (id) { return runs[id].row; });
    curves.runs = {};
    next.detail = {};
    order.forEach(function (id) {
      if (runs[id].detail) next.detail[id] = runs[id].detail;
      if (runs[id].curve) curves.runs[id] = runs[id].curve;
    });
    next.table = table; next.curves = curves; next.fingerprint = fingerprint;
    DATA = next;
  }

  async function poll() {
    try {
      var url = "data.json" + (location.search ? location.search + "&" : "?") + "since=" +
        encodeURIComponent(DATA.fingerprint || "");
      var res = await fetch(url, { cache: "no-store" });
      var body = await res.json();
      if (body.error) throw new Error(body.error);
      if (!body.unchanged) {
        if (body.delta) {
          applyDelta(body.fingerprint, body.delta);
          document.body.dataset.deltas = String(Number(document.body.dataset.deltas || 0) + 1);
        } else { DATA = body.data; SECTIONS = body.sections_html; }
        $("sections").innerHTML = SECTIONS; // our own server's template output
        var probs = $("problems");
        probs.textContent = "";
        DATA.problems.forEach(function (p) { probs.appendChild(el("p", { class: "warn" }, p)); });
        renderAll();
        bindSections();
      }
      $("live-indicator").textContent = "live: updated " + new Date().toLocaleTimeString() +
        " (" + (DATA.counts.done || 0) + " done)";
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } catch (e) {
      $("live-indicator").textContent = "live: could not refresh (" + e.message + "); retrying";
    }
    setTimeout(poll, REFRESH_MS);
  }

  async function main() {
    DATA = JSON.parse(await inflate("assay-data"));
    SECTIONS = $("sections").innerHTML;
    var js = await inflate("assay-plotly");
    var s = document.createElement("script");
    s.textContent = js; // the Plotly bundle shipped with the report, run like any inline script
    document.head.appendChild(s);
    bind();
    renderAll();
    bindSections();
    watchExplore();
    document.body.dataset.ready = "1";
    if (LIVE) setTimeout(poll, REFRESH_MS);
  }

  main().catch(function (e) {
    document.body.dataset.ready = "error";
    var p = el("p", { class: "warn" }, "the report could not be drawn: " + e.message +
      " (open it in a current browser: Chrome, Firefox or Safari from 2023 on)");
    document.querySelector("main").prepend(p);
    throw e;
  });
})();

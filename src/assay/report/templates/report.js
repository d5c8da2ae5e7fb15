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
    selected: null, metric: null, groups: "", statMetric: null };
  var rowTextCache = null;

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

  // ---------------------------------------------------------------- status
  function renderStatus() {
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
    if (!rowTextCache) rowTextCache = rows.map(function (r) { return r.map(fmt).join(" ").toLowerCase(); });
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
        var ma = va === null || va === undefined || (numeric && isNaN(va));
        var mb = vb === null || vb === undefined || (numeric && isNaN(vb));
        if (ma || mb) return ma === mb ? a - b : (ma ? 1 : -1); // missing and nan sort last
        if (numeric) return va === vb ? a - b : (va < vb ? -dir : dir);
        var c = String(va).localeCompare(String(vb), undefined, { numeric: true });
        return c === 0 ? a - b : c * dir;
      });
    }
    return out;
  }

  function renderHead() {
    var tr = el("tr");
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
      var row = rows[idx[k]], tr = el("tr", { "data-id": row[1] });
      if (row[1] === view.selected) tr.className = "selected";
      for (var j = 0; j < c.length; j++) {
        var v = row[j], td = el("td");
        if (c[j].key === "state") td.appendChild(el("span", { class: "state " + v }, v));
        else td.textContent = fmt(v);
        if (c[j].numeric) {
          td.className = "num";
          if (typeof v === "number") td.title = String(v);
          else if (typeof v === "string" && v in NONFINITE) td.className = "num nonfinite";
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
  function renderDetail() {
    var box = $("detail"), id = view.selected;
    if (!id || !DATA.detail[id]) { box.hidden = true; return; }
    var d = DATA.detail[id], row = null;
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
      var div = el("div", { class: "plot", id: "detail-plot" });
      box.appendChild(div);
      var s = own[metric];
      Plotly.newPlot(div, [{ x: s[0], y: s[1].map(num), mode: s[0].length > 1 ? "lines+markers" : "markers", name: id }],
        { margin: { t: 10, r: 10 }, xaxis: { title: { text: "step" } }, yaxis: { title: { text: metric } } },
        { displaylogo: false, responsive: true });
    }
    box.scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------- curves
  function rgba(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16 & 255) + "," + (n >> 8 & 255) + "," + (n & 255) + "," + a + ")";
  }

  function renderCurveSelect() {
    var sel = $("curve-metric"), metrics = DATA.curves.metrics;
    if (view.metric === null || metrics.indexOf(view.metric) < 0) view.metric = metrics[0] || null;
    sel.textContent = "";
    metrics.forEach(function (m) { var o = el("option", null, m); if (m === view.metric) o.selected = true; sel.appendChild(o); });
  }

  function renderCurves() {
    var div = $("curve-plot"), info = $("curve-info");
    var notes = $("curve-notes");
    notes.textContent = "";
    DATA.curves.notes.slice(0, 20).forEach(function (n) { notes.appendChild(el("p", { class: "note" }, n)); });
    if (DATA.curves.notes.length > 20) notes.appendChild(el("p", { class: "note" }, (DATA.curves.notes.length - 20) + " more note(s)"));
    if (!view.metric) { info.textContent = "no run has logged metrics yet"; div.textContent = ""; return; }
    var lines = DATA.curves.series[view.metric] || [], g = view.groups.toLowerCase();
    var shown = lines.filter(function (l) { return !g || l.group.toLowerCase().indexOf(g) >= 0; });
    info.textContent = shown.length > MAX_LINES
      ? "showing " + MAX_LINES + " of " + shown.length + " groups (narrow them with the group filter)"
      : shown.length + " group(s)";
    shown = shown.slice(0, MAX_LINES);
    var traces = [];
    shown.forEach(function (l, i) {
      var color = COLORS[i % COLORS.length], bx = [], bhi = [], blo = [];
      l.steps.forEach(function (s, k) { if (l.lo[k] !== null && l.hi[k] !== null) { bx.push(s); bhi.push(l.hi[k]); blo.push(l.lo[k]); } });
      if (bx.length > 1) {
        traces.push({ x: bx.concat(bx.slice().reverse()), y: bhi.concat(blo.slice().reverse()),
          fill: "toself", fillcolor: rgba(color, 0.18), line: { width: 0 }, hoverinfo: "skip",
          showlegend: false, legendgroup: l.group, type: "scatter" });
      }
      traces.push({ x: l.steps, y: l.mean, name: l.group, legendgroup: l.group, customdata: l.n,
        type: "scatter", mode: l.steps.length > 1 ? "lines" : "markers", line: { color: color },
        marker: { color: color },
        hovertemplate: "%{fullData.name}<br>step %{x}: %{y:.4g} (n=%{customdata})<extra></extra>" });
    });
    Plotly.react(div, traces, { margin: { t: 20, r: 10 }, hovermode: "closest",
      xaxis: { title: { text: "step" } }, yaxis: { title: { text: view.metric } },
      legend: { font: { size: 11 } } }, { displaylogo: false, responsive: true });
  }

  // ---------------------------------------------------------------- statistics chart + family figures
  function renderStats() {
    var sel = $("stat-metric"), div = $("stat-plot");
    if (!sel || !div) return;
    if (view.statMetric && DATA.stats.metrics.indexOf(view.statMetric) >= 0) sel.value = view.statMetric;
    view.statMetric = sel.value;
    var rows = DATA.stats.summary.filter(function (r) { return r.metric === view.statMetric; });
    var y = rows.map(function (r) { return num(r.mean); });
    Plotly.react(div, [{ x: rows.map(function (r) { return r.group; }), y: y, type: "scatter", mode: "markers",
      customdata: rows.map(function (r) { return r.n; }),
      error_y: { type: "data", symmetric: false,
        array: rows.map(function (r) { return r.n > 1 ? num(r.ci_high) - num(r.mean) : 0; }),
        arrayminus: rows.map(function (r) { return r.n > 1 ? num(r.mean) - num(r.ci_low) : 0; }) },
      hovertemplate: "%{x}<br>mean %{y:.4g} (n=%{customdata})<extra></extra>" }],
      { margin: { t: 20, r: 10, b: 120 }, yaxis: { title: { text: view.statMetric + " (mean, 95% CI)" } },
        xaxis: { automargin: true } }, { displaylogo: false, responsive: true });
  }

  function renderFamilyFigures() {
    document.querySelectorAll(".family-figure").forEach(function (div) {
      var fig = DATA.families[Number(div.dataset.section)].figures[Number(div.dataset.figure)];
      Plotly.newPlot(div, fig.data || [], fig.layout || {}, { displaylogo: false, responsive: true });
    });
  }

  function bindSections() {
    var sel = $("stat-metric");
    if (sel) sel.addEventListener("change", function () { view.statMetric = sel.value; renderStats(); });
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
      var tr = ev.target.closest("tr");
      if (!tr) return;
      view.selected = tr.dataset.id;
      renderBody(); renderDetail();
    });
    $("curve-metric").addEventListener("change", function () { view.metric = this.value; renderCurves(); renderDetail(); });
    var gt = null;
    $("curve-groups").addEventListener("input", function () {
      clearTimeout(gt);
      var v = this.value;
      gt = setTimeout(function () { view.groups = v; renderCurves(); }, 150);
    });
  }

  async function poll() {
    try {
      var url = "data.json" + (location.search ? location.search + "&" : "?") + "since=" +
        encodeURIComponent(DATA.fingerprint || "");
      var res = await fetch(url, { cache: "no-store" });
      var body = await res.json();
      if (!body.unchanged) {
        DATA = body.data;
        $("sections").innerHTML = body.sections_html; // our own server's template output
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
      $("live-indicator").textContent = "live: server not reachable (" + e.message + "); retrying";
    }
    setTimeout(poll, REFRESH_MS);
  }

  async function main() {
    DATA = JSON.parse(await inflate("assay-data"));
    var js = await inflate("assay-plotly");
    var s = document.createElement("script");
    s.textContent = js; // the Plotly bundle shipped with the report, run like any inline script
    document.head.appendChild(s);
    bind();
    renderAll();
    bindSections();
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

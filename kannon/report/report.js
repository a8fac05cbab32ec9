
"use strict";
// kannon run report. Draws what kannon.report.data computed; every string from the run goes through
// textContent or setAttribute, never parsed as HTML, so task parameters and logs cannot inject markup.
(function () {
  var SVGNS = "http://www.w3.org/2000/svg";
  var STATUS_ORDER = ["failed", "upstream_failed", "cancelled", "running", "pending", "succeeded", "complete"];
  var STATUS_LABEL = {
    failed: "failed", upstream_failed: "upstream failed", cancelled: "cancelled", running: "running",
    pending: "pending", succeeded: "succeeded", complete: "already complete"
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    if (attrs) for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmtDur(s) {
    if (s === null || s === undefined || isNaN(s)) return "–";
    if (s < 10) return s.toFixed(2) + " s";
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), sec = Math.round(s - 60 * m);
    if (m < 60) return m + " m " + (sec < 10 ? "0" : "") + sec + " s";
    var h = Math.floor(m / 60);
    m = m - 60 * h;
    return h + " h " + (m < 10 ? "0" : "") + m + " m";
  }

  // Params arrive already shortened ("parent=TaskD(…)"): never end on a second ellipsis or an unclosed "(…".
  function cut(s, n) {
    s = String(s);
    if (s.length <= n) return s;
    return s.slice(0, n - 1).replace(/[\s,(…]+$/, "") + "…";
  }
  function label(t) { return t.params ? t.family + "(" + t.params + ")" : t.family; }
  function shortId(id) { return String(id).slice(0, 8); }
  function lastAttempt(t) { return t.attempts.length ? t.attempts[t.attempts.length - 1] : null; }
  function whereOf(t) {
    var a = lastAttempt(t);
    return t.placement + (a && a.where && a.where !== t.placement ? " · " + a.where : "");
  }
  function firstLaunch(t) { return t.attempts.length ? t.attempts[0].launched : Infinity; }

  // Past these sizes a browser spends seconds laying out SVG and table rows (10,000 tasks took ~19 s): the graph
  // shows one node per family and layer, the timeline and the task table a page of rows at a time.
  var GRAPH_MAX_NODES = 400, TIMELINE_PAGE = 250, TABLE_PAGE = 500, BLOCKS_MAX = 50;

  var run, tasks, DATA;
  var byId = {};
  var graphNodes = {};
  var selected = null;

  // -- header and totals ------------------------------------------------------------------------------
  function renderHeader() {
    $("title").textContent = "kannon run " + (run.run_id || "?");
    var badges = $("badges");
    badges.appendChild(el("span", "badge " + run.outcome, run.outcome));
    if (run.backend) badges.appendChild(el("span", "badge", "backend: " + run.backend));
    if (run.started_at) badges.appendChild(el("span", "badge", "started " + new Date(run.started_at * 1000).toISOString()));
    STATUS_ORDER.forEach(function (s) {
      if (run.counts[s]) badges.appendChild(el("span", "badge " + s, run.counts[s] + " " + STATUS_LABEL[s]));
    });
    var ctx = DATA.context || {}, box = $("context");
    ["target", "command", "workspace", "kannon"].forEach(function (k) {
      if (!ctx[k]) return;
      var d = el("div");
      d.appendChild(el("dt", null, k === "kannon" ? "kannon version" : k));
      d.appendChild(el("dd", null, ctx[k]));
      box.appendChild(d);
    });
    box.hidden = !box.children.length;
  }

  function renderTotals() {
    var dl = $("totals");
    function add(name, value, title) {
      var d = el("div");
      if (title) d.title = title;
      d.appendChild(el("dt", null, name));
      d.appendChild(el("dd", null, value));
      dl.appendChild(d);
    }
    add("wall time", fmtDur(run.wall), "run start to run end" + (run.finished ? "" : " (the log ends before the run did)"));
    add("total task time", fmtDur(run.task_time), "sum of every attempt's running time (started → finished)");
    add("achieved parallelism", run.parallelism.toFixed(2) + "×", "total task time / wall time");
    add("critical path", fmtDur(run.critical_path) + (run.wall ? " (" + Math.round(100 * run.critical_path / run.wall) + "% of wall)" : ""),
      "heaviest chain of dependent tasks, each counted from first launch to last finish");
    add("waiting time", fmtDur(run.waiting_time), "sum of launched → started over every attempt (scheduling, image pulls, queues)");
    if (run.admission_time) add("admission wait", fmtDur(run.admission_time), "sum of the time launched bullets were held by the cluster's admission queue (Kueue): waiting for quota, not stuck");
    if (run.queue_time) add("queued time", fmtDur(run.queue_time), "sum of queued → launched: ready, but every slot was busy (max parallel) or another master task was running");
    add("tasks", String(tasks.length), "every task in the plan, including already complete ones");
    add("retries", String(run.retries), "attempts that failed and were tried again");
  }

  // -- failures ----------------------------------------------------------------------------------------
  function attemptLine(a) {
    var parts = ["attempt " + a.n];
    if (a.where) parts.push("on " + a.where);
    parts.push(a.outcome);
    if (a.failure_class) parts.push("[" + a.failure_class + "]");
    if (a.exit_code !== null && a.exit_code !== undefined) parts.push("exit code " + a.exit_code);
    return parts.join(" · ");
  }

  function failureBlock(t, full) {
    var box = el("div", "failure");
    box.dataset.taskId = t.id;
    var h = el("h3", null, label(t) + "  [" + shortId(t.id) + "]");
    box.appendChild(h);
    box.appendChild(el("div", "kv", "ran in " + whereOf(t) + ", " + t.attempts.length + " attempt(s)"));
    var reason = t.reason || (lastAttempt(t) && lastAttempt(t).reason) || (t.status === "upstream_failed" ? "something it needs failed" : "unknown");
    box.appendChild(el("div", null, "reason: " + reason));
    t.attempts.forEach(function (a, i) {
      var last = i === t.attempts.length - 1;
      if (a.outcome === "succeeded" || (!full && !last)) return;
      var line = attemptLine(a) + (a.reason && a.reason !== reason ? " — " + a.reason : "");
      box.appendChild(el("div", "kv", line));
      if (a.log_tail && a.log_tail.length) box.appendChild(el("pre", "log", a.log_tail.join("\n")));
    });
    return box;
  }

  function renderFailures() {
    var failed = tasks.filter(function (t) { return t.status === "failed"; });
    var retried = tasks.filter(function (t) {
      return t.status !== "failed" && t.attempts.some(function (a) { return a.outcome === "retried"; });
    });
    var upstream = tasks.filter(function (t) { return t.status === "upstream_failed"; });
    if (!failed.length && !retried.length && !upstream.length) return;
    $("failures-section").hidden = false;
    var box = $("failures");
    failed.slice(0, BLOCKS_MAX).forEach(function (t) { box.appendChild(failureBlock(t, true)); });
    if (failed.length > BLOCKS_MAX) box.appendChild(el("p", "kv", "… and " + (failed.length - BLOCKS_MAX) +
      " more failed task(s): filter the task table below by \"failed\""));
    if (upstream.length) {
      var names = {};
      upstream.forEach(function (t) { names[t.family] = (names[t.family] || 0) + 1; });
      box.appendChild(el("p", null, upstream.length + " task(s) not run because something they need failed: " +
        Object.keys(names).sort().map(function (k) { return k + " ×" + names[k]; }).join(", ")));
    }
    if (retried.length) {
      var det = el("details");
      det.appendChild(el("summary", null, retried.length + " task(s) needed retries"));
      retried.slice(0, BLOCKS_MAX).forEach(function (t) {
        var b = failureBlock(t, true);
        b.classList.add("retried");
        det.appendChild(b);
      });
      if (retried.length > BLOCKS_MAX) det.appendChild(el("p", "kv", "… and " + (retried.length - BLOCKS_MAX) +
        " more (each task's detail lists its attempts)"));
      box.appendChild(det);
    }
  }

  // -- graph -------------------------------------------------------------------------------------------
  var NODE_W = 210, NODE_H = 38, COL_GAP = 70, ROW_GAP = 10, PAD = 16;

  function legend(target, items) {
    items.forEach(function (it) {
      var s = el("span");
      s.appendChild(el("span", "swatch fill-" + it[0]));
      s.appendChild(document.createTextNode(it[1]));
      target.appendChild(s);
    });
  }

  function renderGraph() {
    if (tasks.length > GRAPH_MAX_NODES) return renderGroupGraph();
    var maxLayer = 0, maxRow = 0;
    tasks.forEach(function (t) { maxLayer = Math.max(maxLayer, t.layer); maxRow = Math.max(maxRow, t.y); });
    var width = PAD * 2 + (maxLayer + 1) * NODE_W + maxLayer * COL_GAP;
    var height = Math.ceil(PAD * 2 + (maxRow + 1) * NODE_H + maxRow * ROW_GAP);
    var svg = sv("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "task graph" });
    var edges = sv("g", { "class": "edges" });
    var nodes = sv("g", { "class": "nodes" });
    svg.appendChild(edges);
    svg.appendChild(nodes);
    function pos(t) {
      return { x: PAD + t.layer * (NODE_W + COL_GAP), y: PAD + t.y * (NODE_H + ROW_GAP) };
    }
    var critical = run.critical_tasks;
    var critEdge = {};
    for (var i = 1; i < critical.length; i++) critEdge[critical[i - 1] + ">" + critical[i]] = true;
    tasks.forEach(function (t) {
      var to = pos(t);
      function edge(d, dynamic) {
        var dep = byId[d];
        if (!dep) return;
        var from = pos(dep);
        var x1 = from.x + NODE_W, y1 = from.y + NODE_H / 2, x2 = to.x, y2 = to.y + NODE_H / 2;
        var mid = (x1 + x2) / 2;
        var path = sv("path", { d: "M" + x1 + "," + y1 + " C" + mid + "," + y1 + " " + mid + "," + y2 + " " + x2 + "," + y2,
          "class": "edge" + (dynamic ? " dynamic" : "") + (critEdge[d + ">" + t.id] ? " critical" : "") });
        if (dynamic) path.appendChild(sv("title", null, "yielded by run() (dynamic dependency)"));
        edges.appendChild(path);
      }
      t.deps.forEach(function (d) { edge(d, false); });
      (t.requested || []).forEach(function (d) { edge(d, true); });
    });
    tasks.forEach(function (t) {
      var p = pos(t);
      var g = sv("g", { "class": "node st-" + t.status + (t.critical ? " critical" : ""),
        transform: "translate(" + p.x + "," + p.y + ")", "data-task-id": t.id, tabindex: "0" });
      g.appendChild(sv("title", null, label(t) + "\n" + t.id + "\n" + STATUS_LABEL[t.status] + " · " + whereOf(t) +
        (t.duration !== null ? " · " + fmtDur(t.duration) : "") + (t.reason ? "\n" + t.reason : "")));
      g.appendChild(sv("rect", { width: NODE_W, height: NODE_H, rx: 5, ry: 5, "class": "st-" + t.status }));
      g.appendChild(sv("text", { x: 8, y: 15 }, cut(label(t), 29)));
      var sub = shortId(t.id);
      if (t.duration !== null) sub += " · " + fmtDur(t.duration);
      if (t.attempts.length > 1) sub += " · " + t.attempts.length + " attempts";
      g.appendChild(sv("text", { x: 8, y: 30, "class": "sub" }, cut(sub, 34)));
      g.addEventListener("click", function () { select(t.id); });
      g.addEventListener("keydown", function (ev) { if (ev.key === "Enter") select(t.id); });
      nodes.appendChild(g);
      graphNodes[t.id] = g;
    });
    // A graph a little wider than the page is scaled to fit; a much wider one keeps readable text and pans
    // (the box scrolls). Scaled by CSS to the box's width, so a scrollbar appearing later cannot cut the last node.
    var avail = $("graph").clientWidth - 2;
    if (avail > 0 && width > avail && avail / width >= 0.6) {
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      svg.setAttribute("class", "fit");
    }
    $("graph").appendChild(svg);
    legend($("graph-legend"), STATUS_ORDER.filter(function (s) { return run.counts[s]; }).map(function (s) {
      return [s, STATUS_LABEL[s]];
    }).concat([["critical-path", "outlined: critical path"]]));
  }

  // One node per (layer, family): its task count and statuses; an edge wherever a task of one needs a task of the
  // other. Clicking a group filters the task table to its tasks ("group=LAYER|FAMILY;" in the filter box). When
  // that is still too many nodes (a long chain of one family is one group per layer), one node per family, drawn
  // at its first layer; when even the families are too many, no graph (the table has every task).
  function groupTasks(byFamily) {
    var groups = [], byKey = {}, groupOf = {};
    tasks.forEach(function (t) {
      var key = byFamily ? t.family : t.layer + "|" + t.family, g = byKey[key];
      if (!g) {
        g = byKey[key] = { key: key, family: t.family, layer: t.layer, tasks: 0, counts: {}, critical: false, row: t.row,
          filter: byFamily ? "family=" + t.family + ";" : "group=" + key + ";" };
        groups.push(g);
      }
      g.tasks++;
      g.counts[t.status] = (g.counts[t.status] || 0) + 1;
      g.critical = g.critical || t.critical;
      g.layer = Math.min(g.layer, t.layer);
      g.row = Math.min(g.row, t.row);
      groupOf[t.id] = g;
    });
    return { groups: groups, groupOf: groupOf };
  }

  function renderGroupGraph() {
    var grouped = groupTasks(false), how = "family and layer";
    if (grouped.groups.length > GRAPH_MAX_NODES) {
      grouped = groupTasks(true);
      how = "family";
    }
    var groups = grouped.groups, groupOf = grouped.groupOf;
    if (groups.length > GRAPH_MAX_NODES) {
      $("graph").appendChild(el("p", "kv", tasks.length + " tasks of " + groups.length + " task families: too many to " +
        "draw as a graph. The task table below lists them all (each task's detail names what it needs)."));
      return;
    }
    // columns: the layers that have a group, in order (a family drawn at layer 9,000 must not be 9,000 columns away)
    var column = {}, slot = {}, maxLayer = 0, maxRow = 0;
    groups.forEach(function (g) { column[g.layer] = true; });
    Object.keys(column).map(Number).sort(function (a, b) { return a - b; }).forEach(function (lv, i) { column[lv] = i; });
    groups.sort(function (a, b) { return a.layer - b.layer || a.row - b.row; });
    groups.forEach(function (g) {
      g.col = column[g.layer];
      g.y = slot[g.col] = slot[g.col] === undefined ? 0 : slot[g.col] + 1;
      maxLayer = Math.max(maxLayer, g.col);
      maxRow = Math.max(maxRow, g.y);
    });
    var width = PAD * 2 + (maxLayer + 1) * NODE_W + maxLayer * COL_GAP;
    var height = PAD * 2 + (maxRow + 1) * NODE_H + maxRow * ROW_GAP;
    var svg = sv("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "task graph, grouped by family and layer" });
    var edges = sv("g", { "class": "edges" }), nodes = sv("g", { "class": "nodes" });
    svg.appendChild(edges);
    svg.appendChild(nodes);
    function pos(g) { return { x: PAD + g.col * (NODE_W + COL_GAP), y: PAD + g.y * (NODE_H + ROW_GAP) }; }
    var seen = {};
    tasks.forEach(function (t) {
      function edge(d, dynamic) {
        var from = groupOf[d], to = groupOf[t.id];
        if (!from || from === to) return;
        var k = from.key + ">" + to.key + (dynamic ? ">d" : "");
        if (seen[k]) { seen[k].n++; return; }
        var a = pos(from), b = pos(to);
        var x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2, mid = (x1 + x2) / 2;
        var path = sv("path", { d: "M" + x1 + "," + y1 + " C" + mid + "," + y1 + " " + mid + "," + y2 + " " + x2 + "," + y2,
          "class": "edge" + (dynamic ? " dynamic" : "") + (from.critical && to.critical ? " critical" : "") });
        seen[k] = { n: 1, path: path, from: from, to: to, dynamic: dynamic };
        edges.appendChild(path);
      }
      t.deps.forEach(function (d) { edge(d, false); });
      (t.requested || []).forEach(function (d) { edge(d, true); });
    });
    Object.keys(seen).forEach(function (k) {
      var e = seen[k];
      e.path.appendChild(sv("title", null, e.n + " edge(s) " + e.from.family + " → " + e.to.family +
        (e.dynamic ? " (yielded by run(), dynamic)" : "")));
    });
    groups.forEach(function (g) {
      var p = pos(g), worst = STATUS_ORDER.filter(function (s) { return g.counts[s]; })[0];
      var parts = STATUS_ORDER.filter(function (s) { return g.counts[s]; }).map(function (s) {
        return g.counts[s] + " " + STATUS_LABEL[s];
      });
      var node = sv("g", { "class": "node group st-" + worst + (g.critical ? " critical" : ""), "data-group": g.key,
        transform: "translate(" + p.x + "," + p.y + ")", tabindex: "0" });
      node.appendChild(sv("title", null, g.family + " × " + g.tasks + " (" + (how === "family" ? "from " : "") + "layer " +
        g.layer + ")\n" + parts.join(", ") +
        "\nclick: list them in the task table"));
      node.appendChild(sv("rect", { width: NODE_W, height: NODE_H, rx: 5, ry: 5, "class": "st-" + worst }));
      node.appendChild(sv("text", { x: 8, y: 15 }, cut(g.family + " × " + g.tasks, 29)));
      node.appendChild(sv("text", { x: 8, y: 30, "class": "sub" }, cut(parts.join(" · "), 34)));
      function open() { filterTable(g.filter); }
      node.addEventListener("click", open);
      node.addEventListener("keydown", function (ev) { if (ev.key === "Enter") open(); });
      nodes.appendChild(node);
      graphNodes["group:" + g.key] = node;
    });
    $("graph").appendChild(svg);
    $("graph-legend").appendChild(el("span", "kv", tasks.length + " tasks shown as " + groups.length +
      " groups (" + how + "); click a group to list its tasks below. "));
    legend($("graph-legend"), STATUS_ORDER.filter(function (s) { return run.counts[s]; }).map(function (s) {
      return [s, "worst: " + STATUS_LABEL[s]];
    }).concat([["critical-path", "outlined: holds a critical-path task"]]));
  }

  // "yes": every node is inside the graph's box; "pans": the box scrolls to the rest; "cut": a node is out of reach.
  function graphFit() {
    var box = $("graph"), outer = box.getBoundingClientRect(), right = 0;
    Object.keys(graphNodes).forEach(function (id) {
      right = Math.max(right, graphNodes[id].getBoundingClientRect().right);
    });
    if (right <= outer.right + 0.5) return "yes";
    return box.scrollWidth > box.clientWidth && right - outer.left <= box.scrollWidth + 0.5 ? "pans" : "cut";
  }

  // -- timeline ----------------------------------------------------------------------------------------
  var LABEL_W = 290, ROW_H = 22, BAR_H = 14, AXIS_H = 24;

  function niceStep(span, target) {
    var raw = span / target, mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (raw <= steps[i] * mag) return steps[i] * mag;
    return 10 * mag;
  }

  function renderTimeline() {
    var rows = tasks.filter(function (t) { return t.attempts.length; });
    rows.sort(function (a, b) { return a.attempts[0].launched - b.attempts[0].launched; });
    var host = $("timeline");
    if (!rows.length) {
      host.appendChild(el("p", "kv", "No task ran in this run (everything was already complete or nothing started)."));
      return;
    }
    var end = run.wall;
    rows.forEach(function (t) {
      t.attempts.forEach(function (a) { end = Math.max(end, a.finished !== null ? a.finished : (a.started !== null ? a.started : a.launched)); });
    });
    end = end || 1;
    var chartW = Math.max(700, (host.clientWidth || 1200) - LABEL_W - 40);
    var pages = Math.ceil(rows.length / TIMELINE_PAGE);
    if (pages > 1) {
      // every page keeps the whole run's time axis, so bars on different pages compare directly
      var nav = el("div", "pager"), prev = el("button", null, "‹ earlier"), next = el("button", null, "later ›");
      var info = el("span", "kv"), pick = el("select");
      prev.type = next.type = "button";
      pick.setAttribute("aria-label", "timeline page");
      for (var p = 0; p < pages; p++) {
        var o = el("option", null, "rows " + (p * TIMELINE_PAGE + 1) + "–" + Math.min(rows.length, (p + 1) * TIMELINE_PAGE) +
          " (from +" + fmtDur(rows[p * TIMELINE_PAGE].attempts[0].launched) + ")");
        o.value = String(p);
        pick.appendChild(o);
      }
      info.textContent = " of " + rows.length + " tasks that ran, by first launch ";
      nav.appendChild(prev);
      nav.appendChild(pick);
      nav.appendChild(info);
      nav.appendChild(next);
      host.parentNode.insertBefore(nav, host);
      var page = 0, svgNow = null;
      var show = function (p) {
        page = Math.max(0, Math.min(pages - 1, p));
        pick.value = String(page);
        prev.disabled = page === 0;
        next.disabled = page === pages - 1;
        if (svgNow) host.removeChild(svgNow);
        svgNow = drawTimeline(rows.slice(page * TIMELINE_PAGE, (page + 1) * TIMELINE_PAGE), end, chartW);
        host.appendChild(svgNow);
      };
      prev.addEventListener("click", function () { show(page - 1); });
      next.addEventListener("click", function () { show(page + 1); });
      pick.addEventListener("change", function () { show(Number(pick.value)); });
      show(0);
    } else {
      host.appendChild(drawTimeline(rows, end, chartW));
    }
    legend($("timeline-legend"), [["queued", "queued (ready, no free slot → launched)"], ["waiting", "waiting (launched → started)"], ["succeeded", "ran, succeeded"],
      ["retried", "ran, failed and retried"], ["failed", "ran, failed"], ["running", "still running when the log ends"],
      ["cancelled", "cancelled"], ["yielded", "stopped at a yield of incomplete tasks (dynamic), ran again after"]]);
  }

  function drawTimeline(rows, end, chartW) {
    var width = LABEL_W + chartW + PAD;
    var height = AXIS_H + rows.length * ROW_H + PAD;
    var scale = chartW / end;
    var svg = sv("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "timeline" });
    var step = niceStep(end, 10);
    for (var s = 0; s <= end + 1e-9; s += step) {
      var x = LABEL_W + s * scale;
      svg.appendChild(sv("line", { x1: x, x2: x, y1: AXIS_H - 6, y2: height - PAD, "class": "axis" }));
      svg.appendChild(sv("text", { x: x + 2, y: AXIS_H - 10, "class": "tick" }, fmtDur(s)));
    }
    rows.forEach(function (t, i) {
      var y = AXIS_H + i * ROW_H;
      var g = sv("g", { "class": "row", "data-task-id": t.id });
      g.appendChild(sv("rect", { x: 0, y: y, width: width, height: ROW_H, fill: "transparent", "class": "row-bg" }));
      var where = lastAttempt(t).where;
      var lbl = sv("text", { x: 4, y: y + 15, "class": "row-label" }, cut(label(t), 30) + (where ? " @ " + cut(where, 14) : ""));
      lbl.appendChild(sv("title", null, label(t) + " [" + t.id + "]"));
      g.appendChild(lbl);
      t.attempts.forEach(function (a) {
        var ran = a.started !== null ? a.started : (a.outcome === "succeeded" ? a.launched : null);
        var stop = a.finished !== null ? a.finished : end;
        var waitEnd = ran !== null ? ran : stop;
        var queued = a.queued !== null && a.queued !== undefined && a.queued < a.launched ? a.queued : null;
        var tip = label(t) + " — " + attemptLine(a) +
          (queued !== null ? "\nqueued for a free slot " + fmtDur(a.launched - queued) + "," : "") +
          (a.admission_wait ? "\nheld " + fmtDur(a.admission_wait) + " by the admission queue" +
            (a.admission_reason ? " (" + a.admission_reason + ")" : "") + "," : "") +
          "\nwaiting " + fmtDur(waitEnd - a.launched) + (ran !== null ? ", running " + fmtDur(stop - ran) : "") +
          (a.reason ? "\n" + a.reason : "");
        var by = y + (ROW_H - BAR_H) / 2;
        if (queued !== null) {
          var q = sv("rect", { x: LABEL_W + queued * scale, y: by + 5, width: Math.max(1, (a.launched - queued) * scale),
            height: BAR_H - 10, "class": "fill-queued queue" });
          q.appendChild(sv("title", null, tip));
          g.appendChild(q);
        }
        if (waitEnd > a.launched) {
          var w = sv("rect", { x: LABEL_W + a.launched * scale, y: by + 3, width: Math.max(1, (waitEnd - a.launched) * scale),
            height: BAR_H - 6, "class": "fill-waiting wait" });
          w.appendChild(sv("title", null, tip));
          g.appendChild(w);
        }
        if (ran !== null) {
          var r = sv("rect", { x: LABEL_W + ran * scale, y: by, width: Math.max(2, (stop - ran) * scale), height: BAR_H,
            rx: 2, "class": "fill-" + a.outcome + " run" });
          r.appendChild(sv("title", null, tip));
          g.appendChild(r);
        }
      });
      g.addEventListener("click", function () { select(t.id); });
      svg.appendChild(g);
    });
    return svg;
  }

  // -- resources (kannon.report.usageview) ---------------------------------------------------------------
  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1073741824) return (n / 1073741824).toFixed(2).replace(/\.?0+$/, "") + " GiB";
    return Math.round(n / 1048576) + " MiB";
  }
  function fmtCores(c) { return c === null || c === undefined ? "–" : c.toFixed(2); }
  function spreadText(s, fmt) { return s ? fmt(s.min) + " / " + fmt(s.median) + " / " + fmt(s.max) : "–"; }

  // A strip from 0 to the larger of use and request: the range min..max used, the median, the request (dashed)
  // and the memory limit (red) when it differs from the request.
  function strip(s, request, limit, kind) {
    var W = 200, H = 18;
    var top = Math.max(s ? s.max : 0, request || 0, limit || 0) * 1.05 || 1;
    var x = function (v) { return 2 + (W - 4) * v / top; };
    var svg = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, "class": "strip " + kind, role: "img" });
    svg.appendChild(sv("rect", { x: 0, y: 7, width: W, height: 4, "class": "strip-bg" }));
    if (s) {
      svg.appendChild(sv("rect", { x: x(s.min), y: 4, width: Math.max(2, x(s.max) - x(s.min)), height: 10, rx: 2,
        "class": "strip-range" }));
      svg.appendChild(sv("line", { x1: x(s.median), x2: x(s.median), y1: 2, y2: 16, "class": "strip-median" }));
    }
    if (request) svg.appendChild(sv("line", { x1: x(request), x2: x(request), y1: 0, y2: H, "class": "strip-request" }));
    if (limit && limit !== request) svg.appendChild(sv("line", { x1: x(limit), x2: x(limit), y1: 0, y2: H, "class": "strip-limit" }));
    return svg;
  }

  function renderResources() {
    var classes = DATA.resources || [];
    if (!classes.length) return;
    $("resources-section").hidden = false;
    $("resources-note").textContent = "Per task class, over its measured attempts: peak resident memory and busy " +
      "cores (CPU seconds / wall seconds) as min / median / max, against the request. Over-provisioned: used " +
      "less than 50 % of the request; at risk: peak memory above 90 % of the limit (or OOM-killed). " +
      "`kannon hints suggest EVENTS.jsonl` proposes requests from these figures.";
    legend($("resources-legend"), [["range", "min → max used"], ["median", "median"], ["request", "request"],
      ["limit", "memory limit (when not the request)"]]);
    var table = $("resources");
    var head = el("thead"), hr = el("tr");
    ["task class", "samples", "peak memory min / median / max", "memory", "request", "cpu cores min / median / max",
      "cpu", "request", "flags"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    head.appendChild(hr);
    table.appendChild(head);
    var body = el("tbody");
    classes.forEach(function (c) {
      var tr = el("tr");
      tr.dataset.family = c.family;
      tr.dataset.over = String(c.over_provisioned);
      tr.dataset.risk = String(c.at_risk);
      if (c.at_risk) tr.classList.add("at-risk");
      else if (c.over_provisioned) tr.classList.add("over");
      var name = el("td");
      var det = el("details");
      det.appendChild(el("summary", "params", c.family));
      c.attempts.forEach(function (a) {
        var line = (a.params ? c.family + "(" + a.params + ")" : c.family) + " · attempt " + a.attempt + " " + a.outcome +
          " · peak " + fmtBytes(a.peak) + " · " + fmtCores(a.cores) + " cores" +
          (a.requested && Object.keys(a.requested).length ? " · requested " + Object.keys(a.requested).sort().map(function (k) {
            return k + "=" + a.requested[k]; }).join(" ") : "") +
          (a.oom ? " · OOM-killed" : a.at_risk ? " · AT RISK" : "") + (a.over.length ? " · over-provisioned (" + a.over.join(", ") + ")" : "");
        var d = el("div", "kv attempt-usage" + (a.at_risk ? " at-risk" : a.over.length ? " over" : ""), line);
        d.dataset.taskId = a.task_id;
        det.appendChild(d);
      });
      // kannon.report.usageview lists at most 100 attempts of a class, the flagged ones first
      if (c.samples > c.attempts.length) det.appendChild(el("div", "kv", "… and " + (c.samples - c.attempts.length) +
        " more attempts (at risk and over-provisioned ones are listed first)"));
      name.appendChild(det);
      tr.appendChild(name);
      tr.appendChild(el("td", "num", c.samples + (c.instances !== c.samples ? " (" + c.instances + " tasks)" : "")));
      tr.appendChild(el("td", "num mem-spread", spreadText(c.memory, fmtBytes)));
      var m = el("td");
      m.appendChild(strip(c.memory, c.memory_request, c.memory_limit, "mem"));
      tr.appendChild(m);
      tr.appendChild(el("td", "num mem-request", c.memory_request ? fmtBytes(c.memory_request) : "none"));
      tr.appendChild(el("td", "num cpu-spread", spreadText(c.cpu, fmtCores)));
      var cc = el("td");
      cc.appendChild(strip(c.cpu, c.cpu_request, null, "cpu"));
      tr.appendChild(cc);
      tr.appendChild(el("td", "num cpu-request", c.cpu_request ? fmtCores(c.cpu_request) : "none"));
      var flags = el("td", "flags");
      if (c.at_risk) flags.appendChild(el("span", "badge at-risk", c.at_risk + " at risk"));
      if (c.over_provisioned) flags.appendChild(el("span", "badge over", c.over_provisioned + " over-provisioned"));
      tr.appendChild(flags);
      body.appendChild(tr);
    });
    table.appendChild(body);
  }

  // -- task table and details ----------------------------------------------------------------------------
  function renderTable() {
    var table = $("tasks");
    var head = el("thead");
    var hr = el("tr");
    ["outcome", "task", "id", "where", "attempts", "duration", "reason"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
    head.appendChild(hr);
    table.appendChild(head);
    var body = el("tbody");
    var sorted = tasks.slice().sort(function (a, b) {
      var d = STATUS_ORDER.indexOf(a.status) - STATUS_ORDER.indexOf(b.status);
      return d !== 0 ? d : firstLaunch(a) - firstLaunch(b) || 0;
    });
    sorted.forEach(function (t) {
      t.search = (label(t) + " " + t.id + " " + t.status + " " + whereOf(t) + " group=" + t.layer + "|" + t.family +
        "; family=" + t.family + ";").toLowerCase();
    });
    table.appendChild(body);
    var more = el("button", "more", "");
    more.type = "button";
    table.parentNode.parentNode.appendChild(more);
    var matching = sorted, shown = 0;
    function showMore() {
      var frag = document.createDocumentFragment();
      matching.slice(shown, shown + TABLE_PAGE).forEach(function (t) { frag.appendChild(tableRow(t)); });
      body.appendChild(frag);
      shown = Math.min(matching.length, shown + TABLE_PAGE);
      more.hidden = shown >= matching.length;
      more.textContent = "show " + Math.min(TABLE_PAGE, matching.length - shown) + " more (" + shown + " of " +
        matching.length + " shown)";
    }
    more.addEventListener("click", showMore);
    filterTable = function (q) {
      if ($("filter").value !== q) $("filter").value = q;
      q = q.toLowerCase();
      matching = q ? sorted.filter(function (t) { return t.search.indexOf(q) >= 0; }) : sorted;
      body.textContent = "";
      shown = 0;
      showMore();
      if (q && document.activeElement !== $("filter")) $("tasks-section").scrollIntoView();
    };
    $("filter").addEventListener("input", function (ev) { filterTable(ev.target.value); });
    showMore();
  }

  var filterTable = function () {};

  function tableRow(t) {
    var tr = el("tr");
    tr.dataset.taskId = t.id;
    var st = el("td");
    st.appendChild(el("span", "swatch fill-" + t.status));
    st.appendChild(document.createTextNode(STATUS_LABEL[t.status]));
    tr.appendChild(st);
    tr.appendChild(el("td", "params", label(t)));
    tr.appendChild(el("td", null, shortId(t.id)));
    tr.appendChild(el("td", null, whereOf(t)));
    tr.appendChild(el("td", "num", t.attempts.length));
    tr.appendChild(el("td", "num", t.duration !== null ? fmtDur(t.duration) : "–"));
    var a = lastAttempt(t);
    tr.appendChild(el("td", null, t.reason || (a && a.outcome !== "succeeded" && a.reason) || ""));
    tr.addEventListener("click", function () { select(t.id); });
    return tr;
  }

  function select(id) {
    var t = byId[id];
    if (!t) return;
    if (selected && graphNodes[selected]) graphNodes[selected].classList.remove("selected");
    selected = id;
    if (graphNodes[id]) graphNodes[id].classList.add("selected");
    var body = $("detail-body");
    body.textContent = "";
    body.appendChild(el("h2", "params", label(t)));
    body.appendChild(el("div", "kv", t.id));
    body.appendChild(el("p", null, STATUS_LABEL[t.status] + " · " + whereOf(t) +
      (t.duration !== null ? " · " + fmtDur(t.duration) : "") + (t.critical ? " · on the critical path" : "")));
    if (t.reason) body.appendChild(el("p", null, "reason: " + t.reason));
    if (t.requested_by) {
      var by = byId[t.requested_by];
      var p = el("p", "dynamic", "yielded by " + (by ? label(by) + " [" + shortId(t.requested_by) + "]" : t.requested_by) +
        " (dynamic dependency)");
      p.addEventListener("click", function () { select(t.requested_by); });
      body.appendChild(p);
    }
    if (t.requested && t.requested.length) {
      body.appendChild(el("h3", null, "yielded by its run() (dynamic)"));
      var yl = el("ul");
      t.requested.forEach(function (d) {
        var li = el("li", null, byId[d] ? label(byId[d]) + " [" + shortId(d) + "] — " + STATUS_LABEL[byId[d].status] : d);
        li.addEventListener("click", function () { select(d); });
        yl.appendChild(li);
      });
      body.appendChild(yl);
    }
    if (t.deps.length) {
      body.appendChild(el("h3", null, "needs"));
      var ul = el("ul");
      t.deps.forEach(function (d) {
        var li = el("li", null, byId[d] ? label(byId[d]) + " [" + shortId(d) + "] — " + STATUS_LABEL[byId[d].status] : d);
        li.addEventListener("click", function () { select(d); });
        ul.appendChild(li);
      });
      body.appendChild(ul);
    }
    t.attempts.forEach(function (a) {
      body.appendChild(el("h3", null, attemptLine(a)));
      var timing = (a.queued !== null && a.queued !== undefined ? "queued at +" + fmtDur(a.queued) + ", " : "") +
        "launched at +" + fmtDur(a.launched);
      if (a.started !== null) timing += ", started at +" + fmtDur(a.started);
      if (a.finished !== null) timing += ", finished at +" + fmtDur(a.finished);
      body.appendChild(el("div", "kv", timing));
      if (a.reason) body.appendChild(el("div", null, a.reason));
      if (a.log_tail && a.log_tail.length) body.appendChild(el("pre", "log", a.log_tail.join("\n")));
    });
    $("detail").hidden = false;
  }

  function main() {
    var data = JSON.parse($("kannon-data").textContent);
    DATA = data;
    run = data.run;
    tasks = data.tasks;
    tasks.forEach(function (t) { byId[t.id] = t; });
    renderHeader();
    renderTotals();
    renderFailures();
    renderGraph();
    renderTimeline();
    renderResources();
    renderTable();
    $("detail-close").addEventListener("click", function () { $("detail").hidden = true; });
    document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") $("detail").hidden = true; });
    document.body.dataset.graphFits = graphFit();
    // The marker the browser test waits for: set only once everything above has rendered without throwing.
    document.body.dataset.taskCount = String(tasks.length);
    document.body.dataset.rendered = "ok";
    // milliseconds from navigation start to here (parsing, script, the layouts it forced): bench/bench_report.py
    if (window.performance && performance.now) document.body.dataset.renderMs = String(Math.round(performance.now()));
  }

  try {
    main();
  } catch (err) {
    document.body.dataset.rendered = "error";
    var box = $("error");
    box.hidden = false;
    box.textContent = "The report could not be drawn: " + (err && err.message ? err.message : String(err));
    throw err;
  }
})();

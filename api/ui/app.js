// app.js - the normd dashboard (GET /ui). Plain browser JavaScript, no build step; charts by
// uPlot (vendor/). It polls the server every POLL_MS while the tab is visible:
//   GET /v1/layers                      the list on the left
//   GET /v1/layers/{name}               the chosen layer's facts and version
//   GET /v1/layers/{name}/arrays[/...]  its arrays per channel      } fetched again only when
//   GET /v1/layers/{name}/history       its train-step records      } the version changed
//   GET /metrics                        requests/s and latency (rates between two polls)
// The API key, when the server has one, is typed into the header field and kept in this tab's
// sessionStorage; it goes out as Authorization: Bearer.
//
// What each chart drew is in the DOM for tests and for reading: the chart's <figure> has
// data-drawn="true" once uPlot drew it and data-series with the JSON of the data it drew
// ({"x": [...], "series": [{"label", "values"}]}); <pre id="plotted"> holds all of them.
(function () {
  "use strict";

  const POLL_MS = 1500;
  const KEY_STORE = "normd.apiKey";
  const MAX_POINTS = 240; // server charts keep the last 6 minutes
  const MAX_ARRAY_ELEMENTS = 65536; // larger arrays are not fetched for a chart
  const ARRAY_NAMES = ["Scaling", "Biases", "MovingMean", "MovingVariance"];
  const HEIGHT = 210;

  const $ = (id) => document.getElementById(id);

  const state = {
    layer: new URLSearchParams(location.search).get("layer"),
    shownVersion: null, // the version whose arrays and history are drawn
    charts: {}, // figure id -> {plot, spec, data}
    plotted: {}, // figure id -> what it drew
    prev: null, // the last /metrics sample
    server: {t: [], all: [], forward: [], train: [], errors: [], mean: [], p50: [], p95: [], p99: []},
    timer: null,
    running: false,
    ticks: 0,
  };

  // ---- HTTP ----

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function request(path, json) {
    const headers = {Accept: json ? "application/json" : "text/plain"};
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.Authorization = "Bearer " + key;
    const r = await fetch(path, {headers, cache: "no-store"});
    if (!r.ok) {
      let body = null;
      try {
        body = await r.json();
      } catch (e) {
        body = null;
      }
      const err = body && body.error ? body.error : {};
      throw new ApiError(r.status, err.code || "", err.message || r.status + " " + r.statusText);
    }
    return json ? r.json() : r.text();
  }

  const api = (path) => request(path, true);
  const enc = encodeURIComponent;

  // ---- small DOM helpers ----

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c);
    return e;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString("en-US");
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return v.toLocaleString("en-US", {maximumFractionDigits: digits === undefined ? 3 : digits});
  }

  function fmtBytes(n) {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) n /= 1024, i++;
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function banner(text) {
    const b = $("banner");
    b.hidden = !text;
    b.textContent = text || "";
  }

  function setLive(kind, text) {
    $("live-dot").className = "dot " + kind;
    $("live-text").textContent = text;
  }

  // ---- charts ----

  function colors() {
    const css = getComputedStyle(document.documentElement);
    const v = (n) => css.getPropertyValue(n).trim();
    return {
      axis: v("--axis"),
      grid: v("--grid"),
      text: v("--text"),
      series: [v("--c1"), v("--c2"), v("--c3"), v("--c4"), v("--c5")],
    };
  }

  // A finite number, or null (a gap): the API writes NaN and the infinities as strings.
  function num(v) {
    const n = typeof v === "number" ? v : Number(v);
    return Number.isFinite(n) ? n : null;
  }

  function integerTicks(u, splits) {
    return splits.map((v) => (Number.isInteger(v) ? fmt(v) : ""));
  }

  // spec: {x: label, y: label, time, bars, series: [{label, spanGaps}]}
  function makePlot(fig, spec, data) {
    const c = colors();
    const box = fig.querySelector(".plot");
    box.textContent = "";
    const axis = {
      stroke: c.axis,
      grid: {stroke: c.grid, width: 1},
      ticks: {stroke: c.grid, width: 1},
      font: "12px system-ui, sans-serif",
      labelFont: "12px system-ui, sans-serif",
    };
    const series = [{label: spec.x}];
    spec.series.forEach((s, i) => {
      const color = c.series[i % c.series.length];
      const one = {label: s.label, stroke: color, width: 2, spanGaps: !!s.spanGaps,
                   points: {show: spec.bars ? false : undefined, size: 5}};
      if (spec.bars) {
        one.fill = color + "99";
        one.paths = uPlot.paths.bars({size: [0.7, 48], gap: 1});
      }
      series.push(one);
    });
    const opts = {
      width: Math.max(240, box.clientWidth || 400),
      height: HEIGHT,
      legend: {live: true},
      cursor: {drag: {x: true, y: false}, points: {size: 7}},
      scales: {
        x: spec.time ? {time: true} : {time: false,
          range: spec.bars ? (u, min, max) => [min - 0.5, max + 0.5] : undefined},
        y: {range: spec.bars ? (u, min, max) => uPlot.rangeNum(Math.min(0, min), Math.max(0, max), 0.1, true)
                             : undefined},
      },
      axes: [
        Object.assign({}, axis, spec.time ? {} : {label: spec.x, labelSize: 18,
          values: spec.integerX ? integerTicks : undefined, incrs: spec.integerX ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 1e4, 2e4, 5e4, 1e5] : undefined}),
        Object.assign({}, axis, {size: 64, values: (u, splits) => splits.map((v) => fmt(v, 4))}),
      ],
      series,
      hooks: {draw: [(u) => drawn(fig, u)]},
    };
    return new uPlot(opts, data, box);
  }

  // Called by uPlot after each draw: records what it drew, from its own copy of the data.
  function drawn(fig, u) {
    const x = Array.from(u.data[0] || []);
    const out = {x, series: []};
    for (let i = 1; i < u.series.length; i++)
      out.series.push({label: u.series[i].label, values: Array.from(u.data[i] || [], (v) => num(v))});
    state.plotted[fig.id] = out;
    fig.setAttribute("data-series", JSON.stringify(out));
    fig.setAttribute("data-points", String(x.length));
    fig.setAttribute("data-drawn", "true");
    $("plotted").textContent = JSON.stringify(state.plotted);
  }

  // Draws data ([x, y1, y2, ...]) in the figure, creating its plot when the series changed.
  function plot(fig, spec, data) {
    const key = JSON.stringify(spec);
    let ch = state.charts[fig.id];
    if (ch && ch.key !== key) {
      ch.plot.destroy();
      ch = null;
    }
    fig.setAttribute("data-drawn", "false");
    const empty = fig.querySelector(".empty");
    if (empty) empty.remove();
    if (!ch) {
      ch = state.charts[fig.id] = {key, spec, data, plot: makePlot(fig, spec, data)};
    } else {
      ch.data = data;
      ch.plot.setData(data);
    }
    ch.data = data;
  }

  function placeholder(fig, text) {
    const ch = state.charts[fig.id];
    if (ch) {
      ch.plot.destroy();
      delete state.charts[fig.id];
    }
    delete state.plotted[fig.id];
    fig.removeAttribute("data-series");
    fig.setAttribute("data-drawn", "false");
    const box = fig.querySelector(".plot");
    box.textContent = "";
    box.append(el("div", {class: "empty"}, text));
  }

  function resizeAll() {
    for (const id of Object.keys(state.charts)) {
      const ch = state.charts[id];
      const box = $(id) && $(id).querySelector(".plot");
      if (box && box.clientWidth) ch.plot.setSize({width: box.clientWidth, height: HEIGHT});
    }
  }

  function rebuildAll() { // the colour scheme changed: the canvas colours are baked in
    for (const id of Object.keys(state.charts)) {
      const ch = state.charts[id];
      ch.plot.destroy();
      ch.plot = makePlot($(id), ch.spec, ch.data);
    }
  }

  // ---- layers ----

  function renderLayerList(layers) {
    const ul = $("layers");
    ul.textContent = "";
    $("layer-count").textContent = layers.length ? "(" + layers.length + ")" : "";
    $("no-layers").hidden = layers.length > 0;
    for (const l of layers) {
      const a = el("a", {href: "/ui?layer=" + enc(l.name), class: l.name === state.layer ? "selected" : ""},
        el("span", {class: "name"}, l.name),
        el("span", {class: "meta"}, l.type + " · v" + l.version + (l.initialized ? "" : " · not initialized")));
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        select(l.name);
      });
      ul.append(el("li", {}, a));
    }
  }

  function select(name) {
    if (name === state.layer) return;
    state.layer = name;
    state.shownVersion = null;
    history.replaceState(null, "", "/ui?layer=" + enc(name));
    $("arrays").textContent = "";
    for (const id of Object.keys(state.charts))
      if (id.startsWith("chart-array-")) {
        state.charts[id].plot.destroy();
        delete state.charts[id];
        delete state.plotted[id];
      }
    poll();
  }

  function renderFacts(info) {
    $("layer-name").textContent = info.name;
    const facts = [
      ["type", info.type + (info.type_given ? " (" + info.type_given + ")" : "")],
      ["convention", info.convention],
      ["input", JSON.stringify(info.input)],
      ["version", fmt(info.version)],
      ["forwards", fmt(info.counters && info.counters.forwards)],
      ["train-steps", fmt(info.counters && info.counters.train_steps)],
      ["parameters", fmt(info.parameter_count)],
    ];
    const dl = $("layer-facts");
    dl.textContent = "";
    for (const [k, v] of facts) dl.append(el("div", {}, el("dt", {}, k), el("dd", {}, v)));
  }

  function arrayFigure(name) {
    const id = "chart-array-" + name;
    let fig = $(id);
    if (!fig) {
      fig = el("figure", {class: "chart", id, "data-drawn": "false", "data-array": name},
        el("figcaption", {}, name, " ", el("span", {class: "muted"})), el("div", {class: "plot"}));
      $("arrays").append(fig);
    }
    return fig;
  }

  async function refreshArrays(name) {
    const list = await api("/v1/layers/" + enc(name) + "/arrays");
    const wanted = list.arrays.filter((a) => ARRAY_NAMES.includes(a.name));
    await Promise.all(wanted.map(async (a) => {
      const fig = arrayFigure(a.name);
      const note = fig.querySelector("figcaption .muted");
      const count = a.shape ? a.shape.reduce((p, d) => p * d, 1) : 0;
      note.textContent = a.shape ? "shape " + JSON.stringify(a.shape) + (a.shared ? " · shared " + a.shared : "") : "";
      if (!a.enabled) return placeholder(fig, "disabled for this layer");
      if (!a.shape) return placeholder(fig, "not initialized: its shape is unknown");
      if (count > MAX_ARRAY_ELEMENTS) return placeholder(fig, fmt(count) + " elements: too many to chart");
      const got = await api("/v1/layers/" + enc(name) + "/arrays/" + enc(a.name) + "?output_format=flat");
      const values = got.array.data.map(num);
      const x = values.map((_, i) => i);
      const perChannel = a.shape.length === 1;
      plot(fig, {x: perChannel ? "channel" : "element (row-major)", bars: true, integerX: true,
                 series: [{label: a.name}]}, [x, values]);
    }));
  }

  const HISTORY_CHARTS = [
    ["chart-loss", [["loss", "loss"]]],
    ["chart-norms", [["batch mean norm", "batch_mean_norm"], ["batch variance norm", "batch_variance_norm"]]],
    ["chart-learning-rate", [["learning rate", "learning_rate"]]],
    ["chart-version", [["version", "version"]]],
  ];

  async function refreshHistory(name) {
    let h;
    try {
      h = await api("/v1/layers/" + enc(name) + "/history");
    } catch (e) {
      const text = e.status === 404 && /no route/.test(e.message)
        ? "this server has no history route" : "history: " + e.message;
      $("history-note").textContent = text;
      for (const [id] of HISTORY_CHARTS) placeholder($(id), text);
      if (e.status === 401) throw e;
      return;
    }
    const records = h.records || [];
    $("history-note").textContent = records.length
      ? "last " + fmt(records.length) + " of " + fmt(h.total) + " train-steps (keeps " + fmt(h.capacity) + ")"
      : "no train-steps yet";
    const x = records.map((r) => r.train_step);
    for (const [id, fields] of HISTORY_CHARTS) {
      const fig = $(id);
      if (!records.length) {
        placeholder(fig, "no train-steps yet");
        continue;
      }
      const ys = fields.map(([, f]) => records.map((r) => num(r[f])));
      plot(fig, {x: "train-step", integerX: true, series: fields.map(([label]) => ({label, spanGaps: true}))},
           [x, ...ys]);
    }
  }

  async function refreshLayer() {
    const list = await api("/v1/layers");
    const layers = list.layers || [];
    if (!state.layer && layers.length) {
      state.layer = layers[0].name;
      history.replaceState(null, "", "/ui?layer=" + enc(state.layer));
    }
    renderLayerList(layers);
    const view = $("layer-view");
    if (!state.layer) {
      view.hidden = true;
      return;
    }
    if (!layers.some((l) => l.name === state.layer)) {
      view.hidden = true;
      banner("There is no layer named " + state.layer + ".");
      return;
    }
    const info = await api("/v1/layers/" + enc(state.layer));
    view.hidden = false;
    banner("");
    renderFacts(info);
    if (info.version !== state.shownVersion) {
      await Promise.all([refreshArrays(state.layer), refreshHistory(state.layer)]);
      state.shownVersion = info.version;
    }
  }

  // ---- server metrics ----

  function parseNumber(s) {
    if (s === "+Inf") return Infinity;
    if (s === "-Inf") return -Infinity;
    return Number(s);
  }

  // Prometheus text format 0.0.4: name{label="value",...} number
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2])
        for (const l of m[2].matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
          labels[l[1]] = l[2].replace(/\\(.)/g, (_, ch) => (ch === "n" ? "\n" : ch));
      out.push({name: m[1], labels, value: parseNumber(m[3])});
    }
    return out;
  }

  function summarize(samples) {
    const s = {all: 0, forward: 0, train: 0, errors: 0, count: 0, sum: 0, buckets: new Map(), gauge: {}};
    for (const x of samples) {
      if (x.name === "normd_http_requests_total") {
        s.all += x.value;
        if (/\/forward$|\/infer$/.test(x.labels.route)) s.forward += x.value;
        if (/\/train(-step)?$/.test(x.labels.route)) s.train += x.value;
        if (Number(x.labels.status) >= 400) s.errors += x.value;
      } else if (x.name === "normd_http_request_duration_seconds_bucket") {
        const le = parseNumber(x.labels.le);
        s.buckets.set(le, (s.buckets.get(le) || 0) + x.value);
      } else if (x.name === "normd_http_request_duration_seconds_count") {
        s.count += x.value;
      } else if (x.name === "normd_http_request_duration_seconds_sum") {
        s.sum += x.value;
      } else {
        const k = x.labels.state ? x.name + ":" + x.labels.state : x.name;
        s.gauge[k] = x.value;
      }
    }
    return s;
  }

  // Prometheus' histogram_quantile over the interval's bucket counts (le -> cumulative).
  function quantile(q, buckets) {
    const les = [...buckets.keys()].sort((a, b) => a - b);
    const total = les.length ? buckets.get(les[les.length - 1]) : 0;
    if (!(total > 0)) return null;
    const rank = q * total;
    let prevLe = 0, prevCum = 0;
    for (const le of les) {
      const cum = buckets.get(le);
      if (cum >= rank) {
        if (le === Infinity) return prevLe;
        return cum === prevCum ? le : prevLe + (le - prevLe) * (rank - prevCum) / (cum - prevCum);
      }
      prevLe = le;
      prevCum = cum;
    }
    return prevLe;
  }

  function push(arr, v) {
    arr.push(v);
    if (arr.length > MAX_POINTS) arr.shift();
  }

  function renderTiles(s, rps) {
    const g = s.gauge;
    const used = g["normd_memory_budget_bytes:used"], limit = g["normd_memory_budget_bytes:limit"];
    const tiles = [ // [id, label, shown, raw]
      ["layers", "layers", fmt(g.normd_layers), g.normd_layers],
      ["rps", "requests / s", rps === null ? "–" : fmt(rps, 1), rps],
      ["in-flight", "in flight", fmt(g.normd_http_requests_in_flight), g.normd_http_requests_in_flight],
      ["train-steps", "train-steps", fmt(g.normd_train_steps_total), g.normd_train_steps_total],
      ["memory", "memory used of " + fmtBytes(limit), fmtBytes(used), used],
      ["threads", "engine threads", fmt(g.normd_engine_threads), g.normd_engine_threads],
      ["ready", "ready", g.normd_ready === 1 ? "yes" : "no", g.normd_ready],
    ];
    const box = $("tiles");
    box.textContent = "";
    for (const [id, label, shown, raw] of tiles)
      box.append(el("div", {class: "tile", "data-metric": id, "data-value": JSON.stringify(raw === undefined ? null : raw)},
        el("div", {class: "label"}, label), el("div", {class: "value"}, shown)));
  }

  async function refreshMetrics() {
    const text = await request("/metrics", false);
    const now = Date.now() / 1000;
    const s = summarize(parseMetrics(text));
    const p = state.prev;
    state.prev = {t: now, s};
    let rps = null;
    if (p && now > p.t) {
      const dt = now - p.t, d = (k) => Math.max(0, s[k] - p.s[k]) / dt;
      const srv = state.server;
      rps = d("all");
      push(srv.t, now);
      push(srv.all, rps);
      push(srv.forward, d("forward"));
      push(srv.train, d("train"));
      push(srv.errors, d("errors"));
      const dCount = s.count - p.s.count;
      const delta = new Map();
      for (const [le, v] of s.buckets) delta.set(le, v - (p.s.buckets.get(le) || 0));
      const ms = (v) => (v === null ? null : v * 1000);
      push(srv.mean, dCount > 0 ? (s.sum - p.s.sum) / dCount * 1000 : null);
      push(srv.p50, ms(quantile(0.5, delta)));
      push(srv.p95, ms(quantile(0.95, delta)));
      push(srv.p99, ms(quantile(0.99, delta)));
      plot($("chart-rps"), {x: "time", time: true, series: [{label: "all"}, {label: "forward"},
        {label: "train-step"}, {label: "4xx/5xx"}]}, [srv.t.slice(), srv.all.slice(), srv.forward.slice(),
        srv.train.slice(), srv.errors.slice()]);
      plot($("chart-latency"), {x: "time", time: true, series: [{label: "mean"}, {label: "p50"},
        {label: "p95"}, {label: "p99"}]}, [srv.t.slice(), srv.mean.slice(), srv.p50.slice(),
        srv.p95.slice(), srv.p99.slice()]);
    } else if (!p) {
      placeholder($("chart-rps"), "measuring…");
      placeholder($("chart-latency"), "measuring…");
    }
    renderTiles(s, rps);
  }

  // ---- the loop ----

  async function poll() {
    if (state.running) return;
    state.running = true;
    clearTimeout(state.timer);
    state.timer = null;
    const results = await Promise.allSettled([refreshMetrics(), refreshLayer()]);
    state.running = false;
    state.ticks++;
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason);
    const unauthorized = failed.find((e) => e && e.status === 401);
    document.body.setAttribute("data-auth", unauthorized ? "needed" : "ok");
    if (unauthorized) {
      banner("This server needs an API key: type it in the field above (it stays in this tab only).");
      setLive("down", "API key needed");
    } else if (failed.length) {
      banner("Cannot reach the server: " + failed[0].message);
      setLive("down", "unreachable");
    } else {
      setLive("live", "live");
    }
    document.body.setAttribute("data-ticks", String(state.ticks));
    if (!failed.length) document.body.setAttribute("data-ready", "true");
    if (!failed.length && !$("server-version").textContent)
      api("/v1").then((info) => { $("server-version").textContent = info.version || ""; }, () => {});
    schedule();
  }

  function schedule() {
    if (document.visibilityState !== "visible") {
      setLive("paused", "paused while hidden");
      return;
    }
    if (!state.timer) state.timer = setTimeout(poll, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      poll();
    } else {
      clearTimeout(state.timer);
      state.timer = null;
      setLive("paused", "paused while hidden");
    }
  });

  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    state.shownVersion = null;
    poll();
  });

  // A link /ui#key=KEY (the fragment never reaches a server or its logs) stores the key in this
  // tab and is taken off the address bar at once.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("key")) {
    sessionStorage.setItem(KEY_STORE, fragment.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("interval").textContent = String(POLL_MS / 1000);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", rebuildAll);
  new ResizeObserver(resizeAll).observe(document.querySelector("main"));

  poll();
})();

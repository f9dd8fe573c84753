#!/usr/bin/env python3
"""test_ui.py - the dashboard (GET /ui) in a real browser, Debian's headless chromium.

normd runs with an API key. The test creates two layers, trains one (train-steps with a target,
so that every record has a loss) and reads back, through the API, its arrays, its history and
/metrics. Then:
  - over HTTP: /ui and its files load without the key, with their Content-Type, a strong ETag
    (304 to If-None-Match), Cache-Control, a Content-Security-Policy of 'self' only, the bytes of
    api/ui/; unknown files are 404; the page names no other origin;
  - chromium --dump-dom loads /ui?layer=bn#key=KEY (the page keeps the key in sessionStorage
    and sends it as Authorization: Bearer) until the page has polled three times, and the test
    reads from the DOM what each uPlot chart drew (data-drawn, data-series): the four arrays
    equal GET .../arrays/{array}, the history charts equal GET .../history's records, the
    requests/s and latency charts have points (train-step rate 0, the page's own polling > 0),
    and the tiles equal /metrics;
  - without the key the page says one is needed and draws no layer;
  - chromium --screenshot saves the dashboard as ui-dashboard.png beside the binary
    (build/ui-dashboard.png for build/normd; UI_SCREENSHOT overrides).

  NORMD=build/normd python3 tests/server/test_ui.py

chromium comes from `make deps-browser`. Standard library only. Prints "ui: N passed, M failed".
"""
import html.parser
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import harness  # noqa: E402 (tests/server/harness.py)
from harness import check, summary  # noqa: E402

NORMD = os.environ.get("NORMD", "build/normd")
SCREENSHOT = os.environ.get("UI_SCREENSHOT",
                            os.path.join(os.path.dirname(NORMD) or ".", "ui-dashboard.png"))
LIVENESS = 30.0
KEY = "ui-test-key"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
UI_DIR = os.path.join(ROOT, "api", "ui")
STEPS = 12
WINDOW = (1400, 2000)


class Server(harness.Server):
    """harness.Server with --api-key KEY, started once /readyz answers too; call() sends the key
    unless told not to."""

    def __init__(self):
        super().__init__("--api-key", KEY)
        self.base = "http://127.0.0.1:%d" % self.port

    def ready(self):
        return super().ready() and self.request("GET", "/readyz")[0] == 200

    def call(self, method, path, body=None, headers=None, key=True):
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + KEY
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=LIVENESS) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method, path, body=None):
        status, _, raw = self.call(method, path, body)
        if status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, status, raw[:300]))
        return json.loads(raw)


def metrics(srv):
    """/metrics as {name or name{labels}: value}."""
    out = {}
    for line in srv.call("GET", "/metrics", key=False)[2].decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


# ---- the page's DOM ----

class Dom(html.parser.HTMLParser):
    """The attributes of the elements the test reads: figures, tiles, layer links, <body>."""

    def __init__(self):
        super().__init__()
        self.figures, self.tiles, self.links, self.body = {}, {}, [], {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "figure" and a.get("id"):
            self.figures[a["id"]] = a
        elif tag == "div" and a.get("data-metric"):
            self.tiles[a["data-metric"]] = json.loads(a.get("data-value") or "null")
        elif tag == "a" and (a.get("href") or "").startswith("/ui?layer="):
            self.links.append(a)


def chromium(args, profile):
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars",
                           "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0"] + args,
                          capture_output=True, text=True, timeout=240)


def load_page(url, profile, done):
    """The parsed DOM once done(dom) holds, with chromium's log: longer virtual-time budgets
    until then (nothing depends on the machine's speed)."""
    for budget in (6000, 15000, 40000):
        p = chromium(["--virtual-time-budget=%d" % budget, "--dump-dom", url], profile)
        dom = Dom()
        dom.feed(p.stdout)
        if done(dom):
            return dom, p.stderr
        print("  page not done after %d ms of virtual time: body %s; %r" %
              (budget, dom.body, p.stderr[-400:]), file=sys.stderr)
    raise RuntimeError("chromium never showed the finished dashboard")


def series(fig):
    return json.loads(fig.get("data-series") or "null") or {}


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


def same_values(got, want):
    return len(got) == len(want) and all(close(g, w) for g, w in zip(got, want))


def console_errors(log):
    bad = ("Uncaught", "Refused to", "Content Security Policy", "Failed to load resource")
    return [l for l in log.splitlines() if "CONSOLE" in l and any(b in l for b in bad)]


# ---- the checks ----

def check_files(srv):
    """The page and its files over HTTP, without the key."""
    want_types = {"/ui": "text/html", "/ui/": "text/html", "/ui/app.js": "text/javascript",
                  "/ui/style.css": "text/css", "/ui/vendor/uPlot.iife.min.js": "text/javascript",
                  "/ui/vendor/uPlot.min.css": "text/css", "/ui/vendor/LICENSE": "text/plain"}
    files = {"/ui": "index.html", "/ui/": "index.html", "/ui/app.js": "app.js",
             "/ui/style.css": "style.css", "/ui/vendor/uPlot.iife.min.js": "vendor/uPlot.iife.min.js",
             "/ui/vendor/uPlot.min.css": "vendor/uPlot.min.css", "/ui/vendor/LICENSE": "vendor/LICENSE"}
    etags = {}
    for path, ctype in want_types.items():
        status, h, body = srv.call("GET", path, key=False)
        with open(os.path.join(UI_DIR, files[path]), "rb") as f:
            check(status == 200 and body == f.read(), "GET %s without the key: %d, the bytes of "
                  "api/ui/%s" % (path, status, files[path]))
        check(h.get("Content-Type", "").startswith(ctype), "%s Content-Type %s" %
              (path, h.get("Content-Type")))
        etag = h.get("ETag", "")
        check(etag.startswith('"') and etag.endswith('"') and len(etag) > 4,
              "%s has a strong ETag: %r" % (path, etag))
        check(h.get("Cache-Control") == "no-cache", "%s Cache-Control: %s" %
              (path, h.get("Cache-Control")))
        csp = h.get("Content-Security-Policy", "")
        check("default-src 'self'" in csp and "unsafe" not in csp and "http" not in csp,
              "%s Content-Security-Policy allows only 'self': %r" % (path, csp))
        check(h.get("X-Content-Type-Options") == "nosniff", "%s nosniff" % path)
        etags[path] = etag
    check(etags["/ui"] == etags["/ui/"] and len(set(etags.values())) == 6,
          "one ETag per file, the same for /ui and /ui/: %s" % etags)
    status, h, body = srv.call("GET", "/ui/app.js", headers={"If-None-Match": etags["/ui/app.js"]},
                               key=False)
    check(status == 304 and body == b"" and h.get("ETag") == etags["/ui/app.js"],
          "If-None-Match with the ETag: 304, no body (%d)" % status)
    status, _, _ = srv.call("GET", "/ui/app.js", headers={"If-None-Match": '"0-0", W/' +
                                                          etags["/ui/app.js"]}, key=False)
    check(status == 304, "If-None-Match: a list with the weak form matches (%d)" % status)
    status, _, body = srv.call("GET", "/ui/app.js", headers={"If-None-Match": etags["/ui/style.css"]},
                               key=False)
    check(status == 200 and len(body) > 0, "If-None-Match with another ETag: 200 (%d)" % status)
    status, h, body = srv.call("HEAD", "/ui", key=False)
    check(status == 200 and body == b"" and h.get("ETag") == etags["/ui"], "HEAD /ui: %d" % status)
    for path in ("/ui/nothing.js", "/ui/vendor/nothing.css", "/ui/README.md", "/ui/vendor/README.md",
                 "/ui/vendor/..", "/ui/index.html/x"):
        status, _, body = srv.call("GET", path, key=False)
        code = json.loads(body or b"{}").get("error", {}).get("code") if status == 404 else None
        check(status == 404 and code == "not_found", "GET %s: 404 not_found (%d)" % (path, status))
    status, _, body = srv.call("GET", "/ui?bogus=1", key=False)
    check(status == 422 and b"unknown_field" in body, "GET /ui?bogus=1: 422 (%d)" % status)
    status, _, _ = srv.call("POST", "/ui", body={}, key=False)
    check(status == 405, "POST /ui: 405 (%d)" % status)
    check(srv.call("GET", "/v1/layers", key=False)[0] == 401, "the API itself still needs the key")
    # No other origin: every script and style the page loads is its own, and no file of the
    # page names an http(s) URL.
    for name in ("index.html", "app.js", "style.css"):
        with open(os.path.join(UI_DIR, name), encoding="utf-8") as f:
            text = f.read()
        check("http://" not in text and "https://" not in text and "//cdn" not in text,
              "api/ui/%s names no other origin" % name)
    with open(os.path.join(UI_DIR, "index.html"), encoding="utf-8") as f:
        page = f.read()
    refs = [p.split('"')[1] for p in page.split("src=")[1:] + page.split("href=")[1:]]
    check(refs and all(r.startswith("/ui") for r in refs), "the page loads only /ui files: %s" % refs)


def check_dashboard(dom, want, log):
    """What the charts drew against what the API answered."""
    figs = dom.figures
    check(dom.body.get("data-auth") == "ok", "the page used the key from the link: %s" % dom.body)
    names = [a.get("href") for a in dom.links]
    check(names == ["/ui?layer=bn", "/ui?layer=ln"], "the layer list: %s" % names)
    check(any("selected" in (a.get("class") or "") and a["href"] == "/ui?layer=bn"
              for a in dom.links), "bn is the selected layer")
    for array, data in want["arrays"].items():
        fig = figs.get("chart-array-" + array, {})
        s = series(fig)
        check(fig.get("data-drawn") == "true", "the %s chart was drawn" % array)
        check(s.get("x") == list(range(len(data))), "%s chart x: channels 0..%d: %s" %
              (array, len(data) - 1, s.get("x")))
        got = (s.get("series") or [{}])[0].get("values", [])
        check(same_values(got, data), "%s chart values %s equal GET arrays/%s %s" %
              (array, got, array, data))
    records = want["history"]["records"]
    steps = [r["train_step"] for r in records]
    check(len(records) == STEPS and steps == list(range(1, STEPS + 1)),
          "history has the %d train-steps: %s" % (STEPS, steps))
    for fig_id, fields in (("chart-loss", ["loss"]),
                           ("chart-norms", ["batch_mean_norm", "batch_variance_norm"]),
                           ("chart-learning-rate", ["learning_rate"]),
                           ("chart-version", ["version"])):
        fig = figs.get(fig_id, {})
        s = series(fig)
        check(fig.get("data-drawn") == "true", "%s was drawn" % fig_id)
        check(s.get("x") == steps, "%s x is train_step: %s" % (fig_id, s.get("x")))
        got = [one.get("values", []) for one in s.get("series", [])]
        for i, field in enumerate(fields):
            ref = [r[field] for r in records]
            check(i < len(got) and same_values(got[i], ref),
                  "%s plots %s = GET history's %s" % (fig_id, got[i] if i < len(got) else None,
                                                       ref))
    check(all(r["loss"] is not None and r["loss"] > 0 for r in records),
          "every record has a loss (the steps had a target)")
    losses = [r["loss"] for r in records]
    check(losses[-1] < losses[0], "the loss fell over the steps: %s" % losses)
    for fig_id in ("chart-rps", "chart-latency"):
        fig = figs.get(fig_id, {})
        s = series(fig)
        check(fig.get("data-drawn") == "true" and len(s.get("x", [])) >= 2,
              "%s drawn with >= 2 points: %s" % (fig_id, s.get("x")))
    rps = {one["label"]: one["values"] for one in series(figs.get("chart-rps", {})).get("series", [])}
    check(rps.get("all") and all(v is not None and v > 0 for v in rps["all"]),
          "requests/s counts the page's own polling: %s" % rps.get("all"))
    check(rps.get("train-step") and all(v == 0 for v in rps["train-step"]),
          "no train-steps while the page polled: %s" % rps.get("train-step"))
    lat = {one["label"]: one["values"] for one in series(figs.get("chart-latency", {})).get("series", [])}
    check(lat.get("mean") and all(v is not None and 0 < v < 60000 for v in lat["mean"]),
          "a mean latency per interval in ms: %s" % lat.get("mean"))
    check(lat.get("p50") and all(v is not None and 0 < v <= 1000 for v in lat["p50"]),
          "p50 from the histogram's buckets, within its finite bounds: %s" % lat.get("p50"))
    m = want["metrics"]
    check(dom.tiles.get("layers") == m["normd_layers"] == 2, "layers tile %s" % dom.tiles.get("layers"))
    check(dom.tiles.get("train-steps") == m["normd_train_steps_total"] == STEPS,
          "train-steps tile %s = normd_train_steps_total" % dom.tiles.get("train-steps"))
    check(dom.tiles.get("threads") == m["normd_engine_threads"], "engine threads tile")
    check(dom.tiles.get("ready") == 1, "ready tile")
    errors = console_errors(log)
    check(not errors, "no script error or CSP refusal in the console: %s" % errors[:3])


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def main():
    if not shutil.which("chromium"):
        print("ui: chromium is missing: run `make deps-browser` (Debian's chromium package)",
              file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="normd-ui-")
    srv = Server()
    try:
        srv.json("PUT", "/v1/layers/bn", {"type": "BatchNorm1d", "options": {"num_features": 4},
                                          "input": [4]})
        srv.json("PUT", "/v1/layers/ln", {"type": "LayerNorm",
                                          "options": {"normalized_shape": [3]}, "input": [3]})
        for i in range(STEPS):
            x = [[1, 2, 3, i], [4, 5, 7, 1], [0, 1, 2, 3]]
            srv.json("POST", "/v1/layers/bn/train-step",
                     {"input": x, "target": [[0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]],
                      "loss": "mean_squared",
                      "optimizer": {"type": "adam", "learning_rate": 0.05 if i < 6 else 0.02}})
        want = {"arrays": {}, "history": srv.json("GET", "/v1/layers/bn/history"),
                "metrics": metrics(srv)}
        for a in ("Scaling", "Biases", "MovingMean", "MovingVariance"):
            want["arrays"][a] = srv.json("GET", "/v1/layers/bn/arrays/%s?output_format=flat" % a)[
                "array"]["data"]

        check_files(srv)

        url = srv.base + "/ui?layer=bn#key=" + KEY
        finished = lambda d: (int(d.body.get("data-ticks") or 0) >= 3 and
                              d.body.get("data-ready") == "true" and
                              d.figures.get("chart-rps", {}).get("data-drawn") == "true" and
                              all(d.figures.get(f, {}).get("data-drawn") == "true"
                                  for f in ("chart-loss", "chart-array-Scaling")))
        dom, clog = load_page(url, os.path.join(tmp, "profile1"), finished)
        check_dashboard(dom, want, clog)

        nokey, _ = load_page(srv.base + "/ui?layer=bn", os.path.join(tmp, "profile2"),
                             lambda d: int(d.body.get("data-ticks") or 0) >= 1)
        check(nokey.body.get("data-auth") == "needed", "without the key the page asks for one: %s"
              % nokey.body)
        check(not any(f.get("data-drawn") == "true" for k, f in nokey.figures.items()
                      if k.startswith("chart-array") or k == "chart-loss"),
              "without the key no layer chart is drawn")

        os.makedirs(os.path.dirname(os.path.abspath(SCREENSHOT)), exist_ok=True)
        if os.path.exists(SCREENSHOT):
            os.remove(SCREENSHOT)
        p = chromium(["--virtual-time-budget=8000", "--window-size=%d,%d" % WINDOW,
                      "--screenshot=" + os.path.abspath(SCREENSHOT), url],
                     os.path.join(tmp, "profile3"))
        size = png_size(SCREENSHOT) if os.path.exists(SCREENSHOT) else None
        check(size == WINDOW and os.path.getsize(SCREENSHOT) > 20000,
              "screenshot %s: %s (%s)" % (SCREENSHOT, size, p.stderr[-300:] if not size else ""))
        print("  screenshot: %s" % SCREENSHOT)
    finally:
        code = srv.stop()
        check(code == 0, "normd exits 0 after SIGTERM (%s)" % code)
        shutil.rmtree(tmp, ignore_errors=True)
    return summary("ui")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        summary("ui", extra_failed=1)
        sys.exit(1)

#!/usr/bin/env python3
"""test_grafana.py - docker/grafana/normd-dashboard.json and docker/prometheus/prometheus.yml
against a live normd: every metric the dashboard queries is one that GET /metrics exposes, with
the labels the query selects or groups by; and the files are well formed (unique panel ids,
every panel on the dashboard's data source variable, the scrape config's path and port those of
normd and docker/compose.yaml).

normd starts on a free loopback port, serves a few requests (so that the per-route series and
the latency histogram have samples), and its /metrics is read.

  NORMD=build/normd python3 tests/deploy/test_grafana.py

Standard library only. Prints "grafana: N passed, M failed".
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NORMD = os.environ.get("NORMD", "build/normd")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DASHBOARD = os.path.join(ROOT, "docker", "grafana", "normd-dashboard.json")
PROMETHEUS = os.path.join(ROOT, "docker", "prometheus", "prometheus.yml")
LIVENESS = 30.0
# Labels Prometheus adds to every scraped series, and the histogram's own.
TARGET_LABELS = {"instance", "job", "service"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
                "and", "or", "unless"}

tally = {"passed": 0, "failed": 0}


def check(cond, what):
    tally["passed" if cond else "failed"] += 1
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base, path, data=None):
    req = urllib.request.Request(base + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=LIVENESS) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def exposed(text):
    """{series name: set of label names} of the Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s", line)
        if m:
            labels = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(2) or ""))
            out.setdefault(m.group(1), set()).update(labels)
    return out


def queries(dash):
    """Every PromQL expression of the dashboard, with where it is."""
    out = []
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            out.append(("panel %s (%s) %s" % (p.get("id"), p.get("title"), t.get("refId")),
                        t.get("expr", "")))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            out.append(("variable %s" % v.get("name"), q))
    return out


def check_expr(where, expr, series):
    names = set(re.findall(r"\b(normd_[a-z0-9_]+)\b", expr))
    check(names, "%s queries a normd metric: %s" % (where, expr))
    for name in names:
        check(name in series, "%s: %s is in /metrics" % (where, name))
    # labels in selectors {label="..."} / {label=~"..."} of each metric
    for name, sel in re.findall(r"\b(normd_[a-z0-9_]+)\{([^}]*)\}", expr):
        for label in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)', sel):
            check(label in TARGET_LABELS or label in series.get(name, set()),
                  "%s: %s has the label %s" % (where, name, label))
    # labels grouped by: each must be on the metrics the aggregation reads
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        for label in (l.strip() for l in group.split(",") if l.strip()):
            check(label in TARGET_LABELS or any(label in series.get(n, set()) for n in names)
                  or label == "le" and any(n.endswith("_bucket") for n in names),
                  "%s: grouped by %s, a label of %s" % (where, label, sorted(names)))
    # label_values(metric, label)
    for name, label in re.findall(r"label_values\((normd_[a-z0-9_]+),\s*([A-Za-z_]+)\)", expr):
        check(label in TARGET_LABELS or label in series.get(name, set()),
              "%s: label_values of %s" % (where, label))
    check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
          "%s: balanced brackets" % where)


def check_dashboard(series):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    panels = dash.get("panels", [])
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), "unique panel ids")
    check(dash.get("uid") and dash.get("title"), "the dashboard has a uid and a title")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    check(variables.get("datasource", {}).get("query") == "prometheus",
          "a Prometheus data source variable")
    for p in panels:
        if p.get("type") == "row":
            continue
        check(p.get("datasource", {}).get("uid") == "${datasource}" and p.get("targets"),
              "panel %s (%s) queries the data source variable" % (p.get("id"), p.get("title")))
    qs = queries(dash)
    for where, expr in qs:
        check_expr(where, expr, series)
    used = set(re.findall(r"\b(normd_[a-z0-9_]+)\b", " ".join(e for _, e in qs)))
    # What the issue asks the dashboard to show.
    for want in ("normd_http_requests_total", "normd_http_request_duration_seconds_bucket",
                 "normd_http_requests_in_flight", "normd_train_steps_total", "normd_layers"):
        check(want in used, "the dashboard shows %s" % want)
    check(any("histogram_quantile" in e and "by (route, le)" in e for _, e in qs),
          "latency quantiles per route")
    return len(qs)


def check_prometheus():
    with open(PROMETHEUS) as f:
        text = f.read()
    try:
        import yaml  # Debian's python3-yaml, as tests/deploy/test_manifests.sh uses
    except ImportError:
        yaml = None
    if yaml:
        conf = yaml.safe_load(text)
        jobs = conf.get("scrape_configs", [])
        normd = [j for j in jobs if j.get("job_name") == "normd"]
        check(len(normd) == 1, "one scrape job named normd")
        job = normd[0] if normd else {}
        check(job.get("metrics_path", "/metrics") == "/metrics", "it scrapes /metrics")
        targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    else:
        check("job_name: normd" in text and "metrics_path: /metrics" in text,
              "a normd job scraping /metrics")
        targets = re.findall(r'"([^"]+:\d+)"', text)
    check(targets == ["127.0.0.1:8080"], "the target is normd as compose runs it: %s" % targets)
    with open(os.path.join(ROOT, "docker", "compose.yaml")) as f:
        check("NORMD_PORT:-8080" in f.read(), "compose's normd port default is 8080")


def main():
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([NORMD, "--host", "127.0.0.1", "--port", str(port), "--log-level",
                             "warn"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + LIVENESS
        while True:
            if proc.poll() is not None:
                raise RuntimeError("normd exited %s at start" % proc.returncode)
            try:
                if get(base, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("normd did not become ready")
            time.sleep(0.05)
        body = json.dumps({"name": "g", "type": "BatchNormalization", "input": [2]}).encode()
        check(get(base, "/v1/layers", body)[0] == 201, "create a layer")
        step = json.dumps({"input": [[1, 2], [3, 5]], "target": [[0, 0], [1, 1]]}).encode()
        check(get(base, "/v1/layers/g/train-step", step)[0] == 200, "a train-step")
        check(get(base, "/v1/nothing")[0] == 404, "a 404")
        status, text = get(base, "/metrics")
        check(status == 200, "GET /metrics")
        series = exposed(text)
        n = check_dashboard(series)
        check(n >= 15, "the dashboard has its queries (%d)" % n)
        check_prometheus()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=LIVENESS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    print("grafana: %d passed, %d failed" % (tally["passed"], tally["failed"]))
    return 1 if tally["failed"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, ValueError) as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        print("grafana: %d passed, %d failed" % (tally["passed"], tally["failed"] + 1))
        sys.exit(1)

#!/usr/bin/env python3
"""test_browser.py - a real browser (Debian's headless chromium) calls normd with fetch() from a
page of another origin: CORS as browsers enforce it, not as a test client imagines it.

A static page is served by python3 -m http.server on one loopback port (its origin); normd A
allows that origin (--cors-origins) and has an API key; normd B, on a third port, allows only
another origin. The page's script runs
  - a simple GET of A (no preflight),
  - a JSON POST with Content-Type application/json and Authorization (a preflight, sent
    without the key), reading the exposed X-Request-Id and ETag,
  - a GET without the key (401, readable by the page: the error carries CORS headers),
  - a GET of B, which the browser must block (B answers, but not for this origin),
and writes the results into the DOM; chromium --dump-dom prints it. The page marks the end
("done"), and the dump is retried with a longer virtual-time budget until it is there, so
nothing depends on timing. normd A's log must show the preflight (OPTIONS, 204).

  NORMD=build/normd python3 tests/server/test_browser.py

chromium comes from `make deps-browser` (Debian's package); without it this test fails and says
so. Standard library only. Prints "browser: N passed, M failed".
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import Server, check, free_port, summary  # noqa: E402 (tests/server/harness.py)

LIVENESS = 30.0
KEY = "browser-key"


def wait_http(url, proc, headers=None):
    deadline = time.time() + LIVENESS
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited %s at start" % (proc.args[0], proc.returncode))
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                        timeout=5) as r:
                return r.status
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not answer" % url)


def start(args, log):
    return subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=LIVENESS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>normd from a browser</title></head>
<body><pre id="out">running</pre>
<script>
const A = "http://127.0.0.1:%(a)d", B = "http://127.0.0.1:%(b)d", KEY = "%(key)s";
const out = {};
async function step(name, fn) {
  try { out[name] = await fn(); } catch (e) { out[name] = {error: e.name + ": " + e.message}; }
}
async function run() {
  await step("get", async () => {
    const r = await fetch(A + "/healthz");
    return {status: r.status, body: await r.json(), rid: r.headers.get("X-Request-Id")};
  });
  await step("post", async () => {
    const r = await fetch(A + "/v1/layers/bn/forward", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + KEY,
                "X-Request-Id": "from-the-page-1"},
      body: JSON.stringify({input: [[1, 2], [3, 5]], mode: "train"})});
    return {status: r.status, body: await r.json(), rid: r.headers.get("X-Request-Id"),
            etag: r.headers.get("ETag")};
  });
  await step("put", async () => {
    const r = await fetch(A + "/v1/layers/bn/arrays/Biases", {
      method: "PUT",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + KEY,
                "If-Match": "*"},
      body: JSON.stringify({array: [0.5, -0.5]})});
    return {status: r.status, etag: r.headers.get("ETag")};
  });
  await step("nokey", async () => {
    const r = await fetch(A + "/v1/layers");
    return {status: r.status, body: await r.json()};
  });
  await step("blocked", async () => {
    const r = await fetch(B + "/healthz");
    return {status: r.status};
  });
  await step("opaque", async () => {  // B is up: without CORS the page gets an opaque answer
    const r = await fetch(B + "/healthz", {mode: "no-cors"});
    return {type: r.type};
  });
  out.done = true;
  document.getElementById("out").textContent = JSON.stringify(out);
}
run();
</script></body></html>
"""


def dump_dom(url, profile):
    """The page's results: chromium --dump-dom until the script marked them done."""
    for budget in (5000, 20000, 60000):
        p = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + profile,
                            "--virtual-time-budget=%d" % budget, "--dump-dom", url],
                           capture_output=True, text=True, timeout=180)
        text = p.stdout
        start_at = text.find('<pre id="out">')
        end_at = text.find("</pre>", start_at)
        if start_at >= 0 and end_at > start_at:
            inner = text[start_at + len('<pre id="out">'):end_at]
            inner = inner.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">") \
                         .replace("&amp;", "&")
            try:
                res = json.loads(inner)
                if res.get("done"):
                    return res
            except ValueError:
                pass
        print("  dump without results (budget %d ms): %r %r" % (budget, text[-300:], p.stderr[-300:]),
              file=sys.stderr)
    raise RuntimeError("chromium never showed the page's results")


def main():
    if not shutil.which("chromium"):
        print("browser: chromium is missing: run `make deps-browser` (Debian's chromium package)",
              file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="normd-browser-")
    page_port = free_port()
    origin = "http://127.0.0.1:%d" % page_port
    page_log = open(os.path.join(tmp, "page.log"), "w+")
    page, servers = None, []
    try:
        a = Server("--log-level", "info", "--api-key", KEY, "--cors-origins",
                   "https://elsewhere.test," + origin)
        servers.append(a)
        b = Server("--log-level", "info", "--cors-origins", "http://127.0.0.1:1")
        servers.append(b)
        a_port, b_port = a.port, b.port
        with open(os.path.join(tmp, "index.html"), "w") as f:
            f.write(PAGE % {"a": a_port, "b": b_port, "key": KEY})
        page = start([sys.executable, "-m", "http.server", str(page_port), "--bind",
                      "127.0.0.1", "--directory", tmp], page_log)
        wait_http(origin + "/index.html", page)
        check(wait_http("http://127.0.0.1:%d/healthz" % b_port, b.proc) == 200,
              "normd B answers a direct request (so a block is CORS, not a dead server)")
        req = urllib.request.Request("http://127.0.0.1:%d/v1/layers/bn" % a_port, method="PUT",
                                     data=b'{"type": "BatchNormalization", "input": [2]}',
                                     headers={"Authorization": "Bearer " + KEY,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=LIVENESS) as r:
            check(r.status == 201, "create bn: %s" % r.status)

        res = dump_dom(origin + "/index.html", os.path.join(tmp, "profile"))
        print("  page results: %s" % json.dumps(res))

        get = res.get("get", {})
        check(get.get("status") == 200 and get.get("body") == {"status": "ok"} and get.get("rid"),
              "simple GET from the page: %s" % get)
        post = res.get("post", {})
        out = (post.get("body") or {}).get("output")
        want = [[-1 / math.sqrt(1 + 1e-3), -1.5 / math.sqrt(2.25 + 1e-3)],
                [1 / math.sqrt(1 + 1e-3), 1.5 / math.sqrt(2.25 + 1e-3)]]
        check(post.get("status") == 200 and out is not None and
              all(abs(o - w) < 1e-4 for ro, rw in zip(out, want) for o, w in zip(ro, rw)),
              "JSON POST (preflighted) from the page: %s" % post)
        check(post.get("rid") == "from-the-page-1", "the page reads X-Request-Id: %s" % post.get("rid"))
        check(post.get("etag") == '"1"', "the page reads ETag: %s" % post.get("etag"))
        put = res.get("put", {})
        check(put.get("status") == 200 and put.get("etag") == '"2"',
              "PUT with If-Match (preflighted) from the page: %s" % put)
        nokey = res.get("nokey", {})
        check(nokey.get("status") == 401 and
              (nokey.get("body") or {}).get("error", {}).get("code") == "unauthorized",
              "the page reads a 401 without the key: %s" % nokey)
        blocked = res.get("blocked", {})
        check("error" in blocked and "TypeError" in blocked["error"],
              "the browser blocks normd B (origin not allowed): %s" % blocked)
        check(res.get("opaque", {}).get("type") == "opaque",
              "normd B was reachable (no-cors fetch): %s" % res.get("opaque"))

        a.log.flush()
        a.log.seek(0)
        lines = []
        for line in a.log.read().decode("utf-8", "replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        pre = [l for l in lines if l.get("method") == "OPTIONS" and
               l.get("route") == "/v1/layers/{name}/forward"]
        check(pre and all(l.get("status") == 204 for l in pre),
              "normd A answered the forward's preflight 204: %s" % pre)
        check(any(l.get("method") == "OPTIONS" and l.get("route") == "/v1/layers/{name}/arrays/{array}"
                  for l in lines), "normd A saw the PUT's preflight")
        check(any(l.get("method") == "POST" and l.get("status") == 200 for l in lines),
              "normd A answered the POST itself")
    finally:
        if page is not None:
            stop(page)
        for srv in reversed(servers):
            code = srv.stop()
            check(code == 0, "normd exits 0 after SIGTERM (%s)" % code)
        page_log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return summary("browser")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        print("FAIL: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        summary("browser", extra_failed=1)
        sys.exit(1)

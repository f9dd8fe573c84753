#!/usr/bin/env python3
"""test_http_more.py - HTTP as clients and browsers expect it (issue 9 section 2), against the real
binary on loopback: HEAD and OPTIONS on every route, CORS (--cors-origins), query parameters as
fields, trailing slashes, absolute-form targets and the Host rules of RFC 9112.

  NORMD=build/normd python3 tests/server/test_http_more.py [-k NAME]

Standard library only; raw sockets, so that what goes on the wire is what is checked. Prints
"http_more: N passed, M failed".
"""
import math
import os
import struct
import subprocess
import sys

import harness  # noqa: E402 (tests/server/harness.py)
from harness import LIVENESS, Conn, check, raw, run, summary  # noqa: E402

NORMD = os.environ.get("NORMD", "build/normd")
GOOD = "http://good.test:8123"
EXPOSE = "X-Request-Id, ETag, X-Tensor-Shape, traceparent, Inference-Header-Content-Length"
PREFLIGHT_HEADERS = ["Content-Type", "Authorization", "X-Request-Id", "X-Tensor-Shape", "If-Match",
                     "Content-Encoding"]


# ---- the server ----


class Server(harness.Server):
    """harness.Server that remembers its --api-key for auth()."""

    def __init__(self, *flags, env=None):
        self.key = flags[flags.index("--api-key") + 1] if "--api-key" in flags else None
        super().__init__(*flags, env=env)

    def auth(self, headers=None):
        h = dict(headers or {})
        if self.key:
            h.setdefault("Authorization", "Bearer " + self.key)
        return h


def ask(srv, method, target, body=None, headers=None, **kw):
    c = Conn(srv.port)
    try:
        return c.ask(method, target, body, srv.auth(headers), **kw)
    finally:
        c.close()


def make_layer(srv, name="bn", channels=2):
    r = ask(srv, "PUT", "/v1/layers/" + name, {"type": "BatchNormalization", "input": [channels]})
    check(r.status in (200, 201), "create %s: %s %s" % (name, r.status, r.body[:200]))


def close_to(a, b, tol=1e-5):
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close_to(x, y, tol) for x, y in zip(a, b))
    return abs(a - b) <= tol * max(1.0, abs(b))


# ---- 1. HEAD and OPTIONS ----


def test_head(srv):
    make_layer(srv)
    c = Conn(srv.port)
    try:
        for path in ("/healthz", "/v1", "/v1/layers", "/v1/layers/bn", "/v1/layers/bn/arrays/Scaling",
                     "/v1/layers/bn/arrays/Scaling?output_format=flat", "/v1/layers/none", "/metrics"):
            get = c.ask("GET", path, headers=srv.auth())
            head = c.ask("HEAD", path, headers=srv.auth())
            check(head.status == get.status, "HEAD %s: %s, GET %s" % (path, head.status, get.status))
            check(head.header("Content-Length") == str(len(get.body)) or path == "/metrics",
                  "HEAD %s: Content-Length %s, the GET's body has %d bytes"
                  % (path, head.header("Content-Length"), len(get.body)))
            check(head.header("Content-Type") == get.header("Content-Type"),
                  "HEAD %s: Content-Type %s vs %s" % (path, head.header("Content-Type"),
                                                      get.header("Content-Type")))
            check(head.header("ETag") == get.header("ETag"), "HEAD %s: ETag" % path)
        # no body went out: the next answer on the connection parses cleanly
        after = c.ask("GET", "/healthz")
        check(after.status == 200 and after.json() == {"status": "ok"},
              "the answer after the HEADs: %s %r" % (after.status, after.body[:80]))
    finally:
        c.close()
    r = ask(srv, "HEAD", "/v1/layers/bn/forward")
    check(r.status == 405 and r.header("Allow") == "POST, OPTIONS",
          "HEAD on a POST route: %s Allow %s" % (r.status, r.header("Allow")))


def test_options(srv):
    make_layer(srv)
    want = {
        "/v1/layers": "GET, HEAD, POST, OPTIONS",
        "/v1/layers/bn": "GET, HEAD, PUT, DELETE, OPTIONS",
        "/v1/layers/bn/forward": "POST, OPTIONS",
        "/v1/layers/bn/arrays/Scaling": "GET, HEAD, PUT, OPTIONS",
        "/healthz": "GET, HEAD, OPTIONS",
        "/v1/layers/": "GET, HEAD, POST, OPTIONS",
    }
    c = Conn(srv.port)
    try:
        for path, allow in want.items():
            r = c.ask("OPTIONS", path)  # no key: OPTIONS needs none
            check(r.status == 204 and r.header("Allow") == allow and r.body == b"",
                  "OPTIONS %s: %s Allow %s, want 204 %s" % (path, r.status, r.header("Allow"), allow))
            check(r.header("Content-Length") is None, "OPTIONS %s: a 204 has no Content-Length" % path)
        check(not c.closed(), "OPTIONS keeps the connection open")
    finally:
        c.close()
    r = ask(srv, "OPTIONS", "/nope")
    check(r.status == 404 and r.error()[0] == "not_found", "OPTIONS /nope: %s" % r.status)
    r = raw(srv.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    check(r.status == 204 and r.header("Allow") == "GET, HEAD, POST, PUT, DELETE, OPTIONS",
          "OPTIONS *: %s Allow %s" % (r.status, r.header("Allow")))
    for method, path, allow in (("DELETE", "/v1/layers", "GET, HEAD, POST, OPTIONS"),
                                ("PATCH", "/v1/layers/bn", "GET, HEAD, PUT, DELETE, OPTIONS"),
                                ("GET", "/v1/layers/bn/train-step", "POST, OPTIONS")):
        r = ask(srv, method, path)
        check(r.status == 405 and r.header("Allow") == allow and r.error()[0] == "method_not_allowed",
              "%s %s: %s Allow %s, want 405 %s" % (method, path, r.status, r.header("Allow"), allow))
    # OPTIONS with a body is answered at once, the body never read
    r = raw(srv.port, b"OPTIONS /v1/layers HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
    check(r.status == 204 and r.closed, "OPTIONS with a body: %s closed %s" % (r.status, r.closed))


def test_head_options_with_key():
    srv = Server("--api-key", "sekret")
    try:
        r = ask(srv, "OPTIONS", "/v1/layers", headers={"Authorization": ""})
        check(r.status == 204, "OPTIONS without the key: %s" % r.status)
        c = Conn(srv.port)
        r = c.ask("HEAD", "/v1/layers")
        check(r.status == 401 and r.header("WWW-Authenticate") == "Bearer",
              "HEAD without the key: %s" % r.status)
        c.close()
        r = ask(srv, "HEAD", "/v1/layers")
        check(r.status == 200, "HEAD with the key: %s" % r.status)
    finally:
        check(srv.stop() == 0, "normd (api key) exits 0")


# ---- 2. CORS ----


def preflight(srv, origin, path, method="POST", headers="content-type,authorization"):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        h["Access-Control-Request-Headers"] = headers
    c = Conn(srv.port)
    try:
        return c.ask("OPTIONS", path, headers=h)  # a browser sends no Authorization here
    finally:
        c.close()


def test_cors():
    srv = Server("--api-key", "k1", "--cors-origins", "https://other.test, " + GOOD)
    try:
        make_layer(srv)
        r = ask(srv, "GET", "/v1/layers/bn", headers={"Origin": GOOD})
        check(r.status == 200 and r.header("Access-Control-Allow-Origin") == GOOD,
              "allowed origin: %s ACAO %s" % (r.status, r.header("Access-Control-Allow-Origin")))
        check(r.header("Access-Control-Expose-Headers") == EXPOSE,
              "Expose-Headers: %s" % r.header("Access-Control-Expose-Headers"))
        check("Origin" in r.all("Vary"), "Vary: Origin on an allowed answer: %s" % r.all("Vary"))
        check(r.header("Access-Control-Allow-Credentials") is None, "no Allow-Credentials")
        upper = GOOD.upper()
        r = ask(srv, "GET", "/v1/layers", headers={"Origin": upper})
        check(r.header("Access-Control-Allow-Origin") == upper,
              "origins compare case-insensitively, echoed as sent: %s" % r.header("Access-Control-Allow-Origin"))
        # a disallowed origin: the answer itself, but no CORS header (the browser blocks it)
        for bad in ("http://evil.test:8123", GOOD + "0", "http://good.test", "null"):
            r = ask(srv, "GET", "/v1/layers", headers={"Origin": bad})
            check(r.status == 200 and r.cors() == [] and "Origin" in r.all("Vary"),
                  "disallowed %s: %s CORS headers %s" % (bad, r.status, r.cors()))
        r = ask(srv, "GET", "/v1/layers")
        check(r.cors() == [] and "Origin" in r.all("Vary"), "no Origin: no CORS headers, Vary")
        # the preflight needs no key and names the path's methods and the headers a page sends
        r = preflight(srv, GOOD, "/v1/layers/bn/forward")
        check(r.status == 204, "preflight without a key: %s %r" % (r.status, r.body[:100]))
        check(r.header("Access-Control-Allow-Origin") == GOOD, "preflight ACAO")
        check(r.header("Access-Control-Allow-Methods") == "POST, OPTIONS",
              "preflight Allow-Methods: %s" % r.header("Access-Control-Allow-Methods"))
        allow_headers = [h.strip().lower() for h in (r.header("Access-Control-Allow-Headers") or "").split(",")]
        check(all(h.lower() in allow_headers for h in PREFLIGHT_HEADERS),
              "preflight Allow-Headers: %s" % allow_headers)
        check(r.header("Access-Control-Max-Age") == "600", "Max-Age %s" % r.header("Access-Control-Max-Age"))
        r = preflight(srv, GOOD, "/v1/layers/bn", method="PUT", headers="if-match,content-type")
        check(r.status == 204 and r.header("Access-Control-Allow-Methods") == "GET, HEAD, PUT, DELETE, OPTIONS",
              "preflight of a PUT: %s %s" % (r.status, r.header("Access-Control-Allow-Methods")))
        r = preflight(srv, "http://evil.test", "/v1/layers/bn/forward")
        check(r.status == 204 and r.cors() == [], "preflight from a disallowed origin: %s %s" % (r.status, r.cors()))
        r = preflight(srv, GOOD, "/nope")
        check(r.status == 404 and r.header("Access-Control-Allow-Methods") is None,
              "preflight of no route: %s" % r.status)
        # the real request still needs the key; its 401 is readable by the page
        c = Conn(srv.port)
        r = c.ask("POST", "/v1/layers/bn/forward", {"input": [[1, 2]]}, {"Origin": GOOD})
        c.close()
        check(r.status == 401 and r.header("Access-Control-Allow-Origin") == GOOD,
              "a request without the key: %s ACAO %s" % (r.status, r.header("Access-Control-Allow-Origin")))
        r = ask(srv, "POST", "/v1/layers/bn/forward", {"input": [[1, 2]]}, {"Origin": GOOD})
        check(r.status == 200 and r.header("Access-Control-Allow-Origin") == GOOD and r.header("ETag"),
              "a forward from the page: %s" % r.status)
        # the server's own answers carry them too (a 413 before the body)
        r = raw(srv.port, ("POST /v1/layers/bn/forward HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\n"
                           "Authorization: Bearer k1\r\nContent-Length: 99999999999\r\n\r\n" % GOOD).encode())
        check(r.status == 413 and r.header("Access-Control-Allow-Origin") == GOOD,
              "a 413 from the server: %s ACAO %s" % (r.status, r.header("Access-Control-Allow-Origin")))
    finally:
        check(srv.stop() == 0, "normd (cors) exits 0")


def test_cors_any_and_off():
    srv = Server(env={"NORMD_CORS_ORIGINS": "*"})
    try:
        r = ask(srv, "GET", "/v1/layers", headers={"Origin": "http://anything.test:1"})
        check(r.header("Access-Control-Allow-Origin") == "*", "--cors-origins *: ACAO %s"
              % r.header("Access-Control-Allow-Origin"))
        r = preflight(srv, "http://anything.test:1", "/v1/layers")
        check(r.status == 204 and r.header("Access-Control-Allow-Methods") == "GET, HEAD, POST, OPTIONS",
              "preflight with *: %s" % r.header("Access-Control-Allow-Methods"))
        r = ask(srv, "GET", "/v1/layers")
        check(r.header("Access-Control-Allow-Origin") is None, "no Origin: no ACAO even with *")
    finally:
        check(srv.stop() == 0, "normd (cors *) exits 0")
    srv = Server()
    try:
        r = ask(srv, "GET", "/v1/layers", headers={"Origin": GOOD})
        check(r.cors() == [] and r.all("Vary") == [], "CORS off by default: %s %s" % (r.cors(), r.all("Vary")))
        r = preflight(srv, GOOD, "/v1/layers")
        check(r.status == 204 and r.cors() == [], "a preflight with CORS off: %s %s" % (r.status, r.cors()))
    finally:
        check(srv.stop() == 0, "normd (cors off) exits 0")


def test_cors_config():
    for value, why in (("http://a.test/", "no path"), ("a.test", "scheme"), ("null", "null"),
                       ("http://a.test,,http://b.test", "empty"), ("http://a.test:0", "port"),
                       ("http://a.test:99999", "port"), ("http://", "host"), ("http://a b", "character")):
        p = subprocess.run([NORMD, "--cors-origins", value], capture_output=True, text=True,
                           timeout=LIVENESS)
        check(p.returncode == 2 and "--cors-origins" in p.stderr and why in p.stderr,
              "--cors-origins %r: exit %s, %r" % (value, p.returncode, p.stderr.strip()))
    p = subprocess.run([NORMD], capture_output=True, text=True, timeout=LIVENESS,
                       env=dict(os.environ, NORMD_CORS_ORIGINS="https://x.test/app"))
    check(p.returncode == 2 and "NORMD_CORS_ORIGINS" in p.stderr,
          "a bad NORMD_CORS_ORIGINS: exit %s %r" % (p.returncode, p.stderr.strip()))
    p = subprocess.run([NORMD, "--help"], capture_output=True, text=True, timeout=LIVENESS)
    check(p.returncode == 0 and "--cors-origins" in p.stdout and "NORMD_CORS_ORIGINS" in p.stdout,
          "--help lists --cors-origins")


# ---- 3. query parameters ----


def test_query(srv):
    make_layer(srv)
    x = [[1, 2], [3, 5]]
    inference = ask(srv, "POST", "/v1/layers/bn/forward", {"input": x}).json()["output"]
    body_train = ask(srv, "POST", "/v1/layers/bn/forward", {"input": x, "mode": "train"}).json()["output"]
    # batch statistics: channel means 2 and 3.5, biased variances 1 and 2.25
    want = [[-1 / math.sqrt(1 + 1e-3), -1.5 / math.sqrt(2.25 + 1e-3)],
            [1 / math.sqrt(1 + 1e-3), 1.5 / math.sqrt(2.25 + 1e-3)]]
    check(close_to(body_train, want, 1e-4), "mode train in the body: %s, want %s" % (body_train, want))
    r = ask(srv, "POST", "/v1/layers/bn/forward?mode=train", {"input": x})
    check(r.status == 200 and close_to(r.json()["output"], body_train),
          "?mode=train on a JSON forward is applied: %s %s" % (r.status, r.body[:200]))
    check(not close_to(inference, body_train), "inference and train differ (the check can fail)")
    r = ask(srv, "POST", "/v1/layers/bn/forward?output_format=flat", {"input": x})
    check(r.status == 200 and r.json()["output"].get("shape") == [2, 2],
          "?output_format=flat on a JSON forward: %s" % r.body[:200])
    r = ask(srv, "POST", "/v1/layers/bn/forward?batch=false", {"input": [1, 2]})
    check(r.status == 200 and close_to(r.json()["output"], inference[0]),
          "?batch=false (one example): %s, want %s" % (r.body[:200], inference[0]))
    cases = [
        ("POST", "/v1/layers/bn/forward?bogus=1", {"input": x}, 422, "unknown_field", "bogus"),
        ("POST", "/v1/layers/bn/forward?mode=train", {"input": x, "mode": "inference"}, 422,
         "invalid_value", "mode"),
        ("POST", "/v1/layers/bn/forward?mode=train&mode=inference", {"input": x}, 422,
         "invalid_value", "mode"),
        ("POST", "/v1/layers/bn/forward?mode=eval", {"input": x}, 422, "invalid_value", "mode"),
        ("POST", "/v1/layers/bn/forward?batch=maybe", {"input": x}, 400, "invalid_type", "batch"),
        ("POST", "/v1/layers/bn/train-step?mode=train", {"input": x}, 422, "unknown_field", "mode"),
        ("POST", "/v1/layers/bn/extract?keys=All", {"keys": ["Scaling"]}, 422, "unknown_field", "keys"),
        ("GET", "/v1/layers?limit=3", None, 422, "unknown_field", "limit"),
        ("GET", "/v1/layers/bn?output_format=flat", None, 422, "unknown_field", "output_format"),
        ("GET", "/healthz?verbose", None, 422, "unknown_field", "verbose"),
        ("PUT", "/v1/layers/q2?force=1", {"type": "BatchNormalization", "input": [2]}, 422,
         "unknown_field", "force"),
    ]
    for method, target, body, status, code, field in cases:
        r = ask(srv, method, target, body)
        check((r.status, r.error()) == (status, (code, field)),
              "%s %s: %s %s, want %s %s %s" % (method, target, r.status, r.error(), status, code, field))
    check(ask(srv, "GET", "/v1/layers/q2").status == 404, "the refused PUT created nothing")
    r = ask(srv, "POST", "/v1/layers/bn/extract?output_format=flat", {"keys": ["MovingVariance"]})
    check(r.status == 200 and r.json()["MovingVariance"] == {"shape": [2], "data": [1, 1]},
          "?output_format=flat on extract: %s" % r.body[:200])
    r = ask(srv, "GET", "/v1/layers/bn/arrays/MovingVariance?output_format=flat")
    check(r.status == 200 and r.json()["array"] == {"shape": [2], "data": [1, 1]},
          "?output_format on GET array: %s" % r.body[:200])
    r = ask(srv, "GET", "/v1/layers/bn/arrays/MovingVariance?output_format=flat",
            headers={"Accept": "application/octet-stream"})
    check((r.status, r.error()) == (422, ("invalid_value", "output_format")),
          "output_format with a binary Accept: %s %s" % (r.status, r.error()))
    # binary bodies: mode and batch from the query as before; output_format refused
    data = struct.pack("<4f", 1, 2, 3, 5)
    binh = {"Content-Type": "application/octet-stream", "X-Tensor-Shape": "2,2"}
    r = ask(srv, "POST", "/v1/layers/bn/forward?mode=train", data, binh)
    got = list(struct.unpack("<4f", r.body)) if r.status == 200 and len(r.body) == 16 else None
    check(got is not None and close_to(got, [v for row in body_train for v in row]),
          "binary ?mode=train: %s %s" % (r.status, got))
    for target, status, code, field in (("?output_format=flat", 422, "invalid_value", "output_format"),
                                        ("?bogus=2", 422, "unknown_field", "bogus"),
                                        ("?batch=2", 400, "invalid_type", "batch")):
        r = ask(srv, "POST", "/v1/layers/bn/forward" + target, data, binh)
        check((r.status, r.error()) == (status, (code, field)),
              "binary forward %s: %s %s" % (target, r.status, r.error()))


def test_query_auth_first():
    srv = Server("--api-key", "k2")
    try:
        c = Conn(srv.port)
        r = c.ask("GET", "/v1/layers?bogus=1")
        c.close()
        check(r.status == 401, "an unknown query parameter without the key: 401 first, got %s" % r.status)
    finally:
        check(srv.stop() == 0, "normd (query auth) exits 0")


# ---- 4. request targets and Host ----


def test_targets(srv):
    make_layer(srv)
    base = ask(srv, "GET", "/v1/layers")
    for target in ("/v1/layers/", "http://127.0.0.1:%d/v1/layers" % srv.port, "HTTP://x/v1/layers",
                   "https://elsewhere.test/v1/layers/"):
        r = ask(srv, "GET", target)
        check(r.status == 200 and r.json() == base.json(), "GET %s: %s %s" % (target, r.status, r.body[:100]))
    r = ask(srv, "GET", "/v1/layers/bn/")
    check(r.status == 200 and r.json().get("name") == "bn", "GET /v1/layers/bn/: %s" % r.status)
    r = ask(srv, "POST", "/v1/layers/", {"name": "slash", "type": "BatchNormalization", "input": [2]})
    check(r.status == 201 and r.header("Location") == "/v1/layers/slash",
          "POST /v1/layers/: %s Location %s" % (r.status, r.header("Location")))
    r = ask(srv, "POST", "/v1/layers/bn/forward/", {"input": [[1, 2]]})
    check(r.status == 200, "POST .../forward/: %s" % r.status)
    r = ask(srv, "GET", "http://x/v1/layers/bn/arrays/MovingMean?output_format=flat")
    check(r.status == 200 and r.json()["array"] == {"shape": [2], "data": [0, 0]},
          "absolute-form with a query: %s %s" % (r.status, r.body[:100]))
    r = ask(srv, "GET", "http://x")
    check(r.status == 404 and r.error()[0] == "not_found", "http://x is the path /: %s" % r.status)
    for target in ("/v1/layers//", "/v1//layers", "/v1/layers/bn//"):
        r = ask(srv, "GET", target)
        check(r.status == 404, "GET %s: %s" % (target, r.status))
    for req, what in ((b"GET v1/layers HTTP/1.1\r\nHost: x\r\n\r\n", "a relative target"),
                      (b"GET http:///v1/layers HTTP/1.1\r\nHost: x\r\n\r\n", "an absolute target without host"),
                      (b"GET http://a%2Fb/v1/layers HTTP/1.1\r\nHost: x\r\n\r\n", "an escape in the authority"),
                      (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", "* for GET"),
                      (b"GET ftp://x/v1/layers HTTP/1.1\r\nHost: x\r\n\r\n", "an ftp target"),
                      (b"GET /v1/layers HTTP/1.1\r\n\r\n", "HTTP/1.1 without Host"),
                      (b"GET /v1/layers HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "two Hosts"),
                      (b"GET /v1/layers HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", "two equal Hosts"),
                      (b"GET /v1/layers HTTP/1.1\r\nHost: a/b\r\n\r\n", "a Host with a path"),
                      (b"GET /v1/layers HTTP/1.1\r\nHost:\r\n\r\n", "an empty Host")):
        r = raw(srv.port, req)
        check(r.status == 400 and r.error()[0] == "malformed_body" and r.closed,
              "%s: %s %s closed %s" % (what, r.status, r.error(), r.closed))
    for req, what in ((b"GET /v1/layers HTTP/1.0\r\n\r\n", "HTTP/1.0 without Host"),
                      (b"GET /v1/layers HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n", "an IPv6 Host"),
                      (b"GET /v1/layers HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n", "host:port")):
        r = raw(srv.port, req)
        check(r.status == 200, "%s: %s" % (what, r.status))


# ---- main ----


def main():
    srv = Server()
    try:
        for test in (test_head, test_options, test_query, test_targets):
            run(test, srv)
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")
    for test in (test_head_options_with_key, test_cors, test_cors_any_and_off, test_cors_config,
                 test_query_auth_first):
        run(test)
    return summary("http_more")


if __name__ == "__main__":
    sys.exit(main())

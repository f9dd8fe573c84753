#!/usr/bin/env python3
"""test_trace.py - W3C traceparent against the real binary (issue 10, section 4).

A valid traceparent comes back with the same trace id, normd's own span id and the same flags,
and the request's log line carries the trace id; an invalid or repeated one is ignored without
an error, on every kind of route (a /v1 route, a probe, an error answer).

  NORMD=build/normd tests/server/test_trace.py

Standard library only. Prints "trace: N passed, M failed".
"""
import http.client
import json
import re
import sys

from harness import LIVENESS, Server, check, summary  # noqa: E402 (tests/server/harness.py)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GOOD = "00-%s-00f067aa0ba902b7-01" % TRACE


def call(port, method, path, headers, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=LIVENESS)
    try:
        c.putrequest(method, path)
        for k, v in headers:  # a list: the same header may be sent twice
            c.putheader(k, v)
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            c.putheader("Content-Type", "application/json")
            c.putheader("Content-Length", str(len(data)))
        c.endheaders(data)
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("traceparent"), r.getheader("X-Request-Id")
    finally:
        c.close()


def check_echo(port, method, path, body, what):
    st, tp, rid = call(port, method, path, [("traceparent", GOOD)], body)
    m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", tp or "")
    check(m is not None and m.group(1) == TRACE and m.group(3) == "01"
          and m.group(2) not in ("0" * 16, "00f067aa0ba902b7"),
          "%s (%d): traceparent %r carries the trace id, a span of its own, the flags"
          % (what, st, tp))
    return rid, m.group(2) if m else None


def main():
    srv = Server("--log-level", "info")  # after the harness's warn: the request lines too
    port = srv.port
    try:
        rid, span1 = check_echo(port, "PUT", "/v1/layers/bn",
                                {"type": "BatchNormalization", "input": [2]}, "PUT a layer")
        _, span2 = check_echo(port, "POST", "/v1/layers/bn/forward", {"input": [[1, 2]]},
                              "forward")
        check(span1 != span2, "each request has its own span id")
        check_echo(port, "GET", "/healthz", None, "a probe")
        check_echo(port, "GET", "/v1/layers/missing", None, "a 404")
        later = "cc-%s-00f067aa0ba902b7-00-future" % TRACE
        st, tp, _ = call(port, "GET", "/v1/layers", [("traceparent", later)])
        check(tp is not None and tp.startswith("00-" + TRACE) and tp.endswith("-00"),
              "a later version is answered as version 00: %r" % tp)
        for bad in ("00-%s-00f067aa0ba902b7-01" % TRACE.upper(),
                    "00-%s-0000000000000000-01" % TRACE, "ff" + GOOD[2:], GOOD + "-x",
                    "garbage"):
            st, tp, _ = call(port, "GET", "/v1/layers", [("traceparent", bad)])
            check(st == 200 and tp is None, "invalid %r: served (%d), no traceparent (%r)"
                  % (bad, st, tp))
        st, tp, _ = call(port, "GET", "/v1/layers", [("traceparent", GOOD)] * 2)
        check(st == 200 and tp is None, "two traceparents: ignored (%d, %r)" % (st, tp))
        st, tp, _ = call(port, "GET", "/v1/layers", [])
        check(st == 200 and tp is None, "no traceparent: none answered (%r)" % tp)
    finally:
        srv.stop()
    srv.log.seek(0)
    lines = [json.loads(x) for x in srv.log.read().decode().splitlines() if x.startswith("{")]
    reqs = [x for x in lines if x.get("msg") == "request"]
    put = [x for x in reqs if x.get("request_id") == rid]
    check(len(put) == 1 and put[0].get("trace_id") == TRACE,
          "the PUT's log line carries its trace id: %s" % put)
    untraced = [x for x in reqs if x.get("path") == "/v1/layers" and "trace_id" not in x]
    check(len(untraced) >= 7, "requests without a valid traceparent log no trace_id: %d"
          % len(untraced))
    return summary("trace")


if __name__ == "__main__":
    sys.exit(main())

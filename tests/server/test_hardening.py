#!/usr/bin/env python3
"""test_hardening.py - hostile clients against the real binary (loopback only).

Each attack must get a 4xx or a closed connection, and meanwhile a fresh client must still get
/healthz and a small forward (a liveness check with a generous bound, never a speed goal).
Every attack here once took normd down, stalled it or made it spend gigabytes (issue 8); each
prints the server's RSS after it, for the record.

  NORMD=build/normd tests/server/test_hardening.py [-k NAME]

Standard library only. Prints "hardening: N passed, M failed".
"""
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

import harness  # noqa: E402 (tests/server/harness.py)
from harness import LIVENESS, check, free_port, run, summary  # noqa: E402

NORMD = os.environ.get("NORMD", "build/normd")


# ---- the server ----


class Server(harness.Server):
    """harness.Server, on a second free port for the admin listener when asked."""

    def __init__(self, *flags, admin=False):
        self.admin = free_port() if admin else 0
        super().__init__(*((("--admin-port", str(self.admin)) if admin else ()) + flags))

    def rss_kb(self, field="VmRSS"):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None


# ---- raw HTTP ----


def connect(port, timeout=LIVENESS):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s):
    """One response: (status, headers dict lower-cased, body bytes); status 0 when closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = s.recv(max(65536, n - len(body)))
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw(port, data, timeout=LIVENESS):
    """Sends bytes, reads one response; then whether the server closed the connection."""
    with connect(port, timeout) as s:
        s.sendall(data)
        status, headers, body = read_response(s)
        s.settimeout(2.0)
        try:
            closed = s.recv(1) == b""
        except socket.timeout:
            closed = False
        except OSError:
            closed = True
        return status, headers, body, closed


def request(port, method, path, body=None, headers=None, timeout=LIVENESS):
    """One request on its own connection (Connection: close): (status, headers, body)."""
    hs = {"Connection": "close"}
    hs.update(headers or {})
    data = harness.request_bytes(method, path, body, hs)
    status, h, b, _ = raw(port, data, timeout)
    return status, h, b


def error_code(body):
    try:
        return json.loads(body.decode("utf-8"))["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def valid_json(body):
    try:
        json.loads(body.decode("utf-8", errors="strict"))
        return True
    except ValueError:
        return False


# ---- liveness ----


def live(srv, what):
    """A fresh client gets /healthz and a small forward while (or after) an attack runs."""
    ok = srv.alive()
    try:
        ok = ok and request(srv.port, "GET", "/healthz")[0] == 200
        st, _, body = request(srv.port, "POST", "/v1/layers/live/forward", {"input": [[1, 2, 3]]})
        ok = ok and st == 200 and "output" in json.loads(body)
    except (OSError, ValueError) as e:
        print("liveness after %s: %s" % (what, e), file=sys.stderr)
        ok = False
    check(ok, "liveness after " + what)
    print("  %-40s RSS %6.1f MiB (peak %6.1f)" % (what, srv.rss_kb() / 1024.0,
                                                  srv.rss_kb("VmHWM") / 1024.0))


def refused(status, closed, what, statuses):
    check(status in statuses or (status == 0 and closed),
          "%s: status %s (closed %s), want one of %s or a close" % (what, status, closed, statuses))


def setup_layer(srv):
    st = request(srv.port, "PUT", "/v1/layers/live", {"type": "BatchNormalization", "input": [3]})[0]
    check(st in (200, 201), "create the liveness layer: %s" % st)


# ---- attacks on bodies ----


def attack_deep_nesting(srv):
    body = b'{"input": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    st, _, b = request(srv.port, "POST", "/v1/layers/live/forward", body,
                       {"Content-Type": "application/json"})
    check(st == 400 and error_code(b) == "malformed_body", "100,000 levels of '[': %s %s" % (st, b[:120]))
    live(srv, "deep nesting")


def attack_huge_layer(srv):
    st, _, b = request(srv.port, "PUT", "/v1/layers/huge",
                       {"type": "BatchNormalization", "input": [1000000000]})
    check(st == 413, "input [1000000000]: %s %s" % (st, b[:120]))
    live(srv, "a layer of input [1000000000]")


def attack_empty_shape(srv):
    st, _, b = request(srv.port, "POST", "/v1/layers/live/forward",
                       {"input": {"shape": [300000000, 3, 0], "data": []}})
    check(st == 413, "zero elements in 1.2 billion lists: %s %s" % (st, b[:120]))
    live(srv, "a zero-element tensor of a huge shape")


def attack_many_objects(srv):
    body = b'{"input": [' + b",".join([b"{}"] * 1300000) + b"]}"  # about 4 MB
    st, _, b = request(srv.port, "POST", "/v1/layers/live/forward", body,
                       {"Content-Type": "application/json"})
    check(st == 413, "4 MB of [{},{},...]: %s %s" % (st, b[:120]))
    live(srv, "4 MB of empty objects")


def attack_empty_body(srv):
    st, _, b = request(srv.port, "POST", "/v1/layers/live/forward", b"",
                       {"Content-Type": "application/json"})
    check(st == 400, "an empty POST body: %s" % st)
    st, _, b, _ = raw(srv.port, b"GET /metrics HTTP/1.0\r\n\r\n")
    check(st == 200, "GET /metrics with no header: %s" % st)
    live(srv, "empty bodies, no headers")


def attack_invalid_utf8(srv):
    st, _, b = request(srv.port, "GET", "/v1/layers/%FF%FEbad")
    check(st in (404, 422) and valid_json(b), "a path of invalid UTF-8: %s %r" % (st, b[:120]))
    st, _, b = request(srv.port, "POST", "/v1/layers/live/forward", b'{"\xff\xfe": 1}',
                       {"Content-Type": "application/json"})
    check(400 <= st < 500 and valid_json(b), "a key of invalid UTF-8: %s %r" % (st, b[:120]))
    live(srv, "invalid UTF-8")


# ---- attacks on framing ----

FRAMING = [
    ("two different Content-Lengths",
     b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 18\r\nContent-Length: 19\r\n\r\n"),
    ("Content-Length with Transfer-Encoding",
     b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 18\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("whitespace before the colon",
     b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length : 18\r\n\r\n"),
    ("an unknown transfer coding",
     b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ("obs-fold",
     b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b c\r\n"
     b"Content-Length: 18\r\n\r\n"),
    ("obs-fold of Transfer-Encoding",
     b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n"
     b"\r\n"),
    ("an encoded NUL in the path", b"GET /v1/layers/live%00evil HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("an invalid percent-escape", b"GET /v1/layers/live%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
]


def attack_framing(srv):
    smuggled = b'{"input": [1,2,3]}GET /v1/layers/live HTTP/1.1\r\nHost: x\r\n\r\n'
    for what, head in FRAMING:
        st, h, b, closed = raw(srv.port, head + smuggled)
        check(st == 400 and closed, "%s: status %s, closed %s, want 400 and a close" % (what, st, closed))
        check(h.get("connection", "").lower() == "close" or st == 400 and "connection" not in h,
              "%s: Connection: close" % what)
    live(srv, "ambiguous framing")


def attack_counts(srv):
    query = "&".join("p%d=1" % i for i in range(40))
    st, _, b = request(srv.port, "POST", "/v1/layers/live/forward?" + query, {"input": [[1, 2, 3]]})
    check(st == 414, "40 query parameters: %s %s" % (st, b[:120]))
    headers = {"X-H%d" % i: "v" for i in range(70)}
    st, _, b = request(srv.port, "GET", "/healthz", headers=headers)
    check(st == 431, "70 headers: %s %s" % (st, b[:120]))
    live(srv, "too many parameters or headers")


def attack_pipelined_garbage(srv):
    with connect(srv.port) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfegarbage \x01\r\n\r\n")
        st, _, _ = read_response(s)
        check(st == 200, "the valid request before the garbage: %s" % st)
        try:
            st2, _, _ = read_response(s)
        except OSError:
            st2 = 0
        check(st2 == 0 or 400 <= st2 < 500, "garbage after it: %s" % st2)
    live(srv, "garbage pipelined after a request")


def attack_reset_mid_reply(srv):
    n = 1 << 20
    payload = struct.pack("<%df" % n, *([1.0, 2.0, 3.0] * (n // 3) + [0.0] * (n % 3)))
    shape = "%d,3" % (n // 3)
    for _ in range(5):
        s = connect(srv.port)
        head = ("POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nContent-Type: "
                "application/octet-stream\r\nX-Tensor-Shape: %s\r\nContent-Length: %d\r\n\r\n"
                % (shape, (n // 3) * 3 * 4)).encode()
        s.sendall(head + payload[: (n // 3) * 3 * 4])
        s.recv(100)  # the reply has begun
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST in the middle of a 4 MB reply
    live(srv, "resets in the middle of large replies")


# ---- attacks on connections ----


def attack_auth_before_body():
    srv = Server("--api-key", "k" * 300)  # keys past 255 characters are fine now
    try:
        with connect(srv.port) as s:
            s.sendall(b"POST /v1/layers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 50000000\r\n\r\n{")
            st, _, b = read_response(s)  # answered without the 50 MB
        check(st == 401, "an unauthenticated 50 MB body is refused from its head: %s" % st)
        st, _, _ = request(srv.port, "GET", "/v1", headers={"Authorization": "Bearer " + "k" * 300})
        check(st == 200, "a 300-character key works: %s" % st)
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")
    key = "s3cr3t-" + "x" * 5000
    p = subprocess.run([NORMD, "--api-key", key], capture_output=True, text=True, timeout=LIVENESS)
    check(p.returncode == 2 and "s3cr3t" not in p.stderr + p.stdout,
          "an over-long key exits 2 without printing it: %s %r" % (p.returncode, p.stderr[:200]))


def hold(port, n):
    """n connections that send nothing."""
    held = []
    for _ in range(n):
        held.append(connect(port))
    return held


def attack_connection_limit():
    srv = Server("--max-connections", "8", "--http-threads", "2", admin=True)
    try:
        held = hold(srv.port, 8)
        time.sleep(0.3)
        with connect(srv.port) as s:  # the ninth: closed at once, not left waiting
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                got = s.recv(100)
            except OSError:
                got = b""
        check(got == b"", "a connection over --max-connections is closed: %r" % got[:40])
        st, _, _ = request(srv.admin, "GET", "/healthz")
        check(st == 200, "the admin port answers /healthz while clients hold every connection")
        st, _, b = request(srv.admin, "GET", "/metrics")
        check(st == 200 and b"normd_http_requests_total" in b, "and /metrics: %s" % st)
        st, _, b = request(srv.admin, "GET", "/v1")
        check(st == 404, "the admin port serves nothing else: GET /v1 is %s" % st)
        for s in held:
            s.close()
        time.sleep(0.3)
        check(request(srv.port, "GET", "/healthz")[0] == 200, "places come back when they close")
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")


def attack_slowloris():
    srv = Server("--idle-timeout", "2", "--request-timeout", "3", "--max-connections", "400")
    setup_layer(srv)
    try:
        conns, start = [], time.time()
        for _ in range(200):
            s = connect(srv.port)
            s.sendall(b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n")
            conns.append(s)
        idle = hold(srv.port, 100)  # and some that never send a byte
        live(srv, "200 slow heads and 100 silent connections")
        open_ = list(conns)
        while open_ and time.time() - start < 60:  # a byte at a time until the server closes
            for s in list(open_):
                try:
                    s.sendall(b"X")
                except OSError:
                    open_.remove(s)
            time.sleep(0.25)
        check(not open_, "every slow head is closed by --request-timeout (%d left)" % len(open_))
        closed = 0
        for s in idle:
            s.settimeout(LIVENESS)
            try:
                closed += s.recv(1) == b""
            except OSError:
                closed += 1
        check(closed == len(idle), "every silent connection is closed by --idle-timeout")
        for s in conns + idle:
            s.close()
        live(srv, "slowloris")
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")


def budget_used(srv):
    return srv.budget_used()


def settle(srv, want):
    """Waits (a liveness bound) until the budget holds want bytes: a request's bytes come back
    when the server completes it, a moment after the client has its answer."""
    deadline = time.time() + LIVENESS
    while budget_used(srv) != want and time.time() < deadline:
        time.sleep(0.05)


def chunked_past_budget(srv):
    """Sends a 40 MiB forward (15.7 M values, within --max-elements) in 1 MiB chunks, with no
    Content-Length, so the buffer grows as it comes, to a 32 MiB budget: True when the server
    closes the connection as the buffer outgrows the budget (libmicrohttpd cannot answer in
    the middle of a body). A whole body would have been answered instead (413)."""
    body = b'{"input": [' + b"[1,2,3]," * (5 << 20)
    body = body[:-1] + b"]}"
    with connect(srv.port) as s:
        try:
            s.sendall(b"POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            for at in range(0, len(body), 1 << 20):
                part = body[at:at + (1 << 20)]
                s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            return read_response(s)[0] == 0
        except OSError:
            return True


def binary_forward_head(n_floats):
    return ("POST /v1/layers/live/forward HTTP/1.1\r\nHost: x\r\nContent-Type: "
            "application/octet-stream\r\nX-Tensor-Shape: %d,3\r\nContent-Length: %d\r\n\r\n"
            % (n_floats // 3, n_floats // 3 * 12)).encode()


def attack_memory_budget():
    srv = Server("--max-memory", "32M", "--max-body-bytes", "64M", "--max-elements", "16M")
    setup_layer(srv)
    try:
        layers = budget_used(srv)  # the layer's arrays stay counted
        check(layers > 0, "a layer's arrays count in the budget: %d" % layers)
        n = 6 * 1024 * 1024  # 24 MiB of floats: with its copy and output, past 32 MiB
        with connect(srv.port) as s:
            s.sendall(binary_forward_head(n) + b"\0" * (n // 3 * 12))
            st, _, b = read_response(s)
        check(st == 413 and error_code(b) == "payload_too_large",
              "a forward that could never fit in --max-memory: %s %s" % (st, b[:160]))
        settle(srv, layers)  # the refused request's body is given back when it completes
        holders = [connect(srv.port) for _ in range(3)]
        try:  # 3 x 12 MiB bodies declared, 1 byte sent: one of them cannot fit
            for s in holders:
                s.sendall(binary_forward_head(3 * 1024 * 1024) + b"\0")
            ready, _, _ = select.select(holders, [], [], LIVENESS)  # the one refused
            st, _, b = read_response(ready[0]) if ready else (0, {}, b"")
            check(len(ready) == 1 and st == 503 and error_code(b) == "unavailable",
                  "a body the budget cannot hold now is 503 (%d answered): %s %s"
                  % (len(ready), st, b[:160]))
            live(srv, "bodies holding the memory budget")
        finally:
            for s in holders:
                s.close()
        settle(srv, layers)
        check(chunked_past_budget(srv), "a chunked body that outgrows the budget is closed")
        settle(srv, layers)
        check(budget_used(srv) == layers,
              "every request's byte goes back to the budget: %d, the layer %d" % (budget_used(srv), layers))
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")


def body_attacks():
    srv = Server("--max-body-bytes", "8M", "--max-elements", "4M")
    setup_layer(srv)
    try:
        for attack in (attack_deep_nesting, attack_huge_layer, attack_empty_shape,
                       attack_many_objects, attack_empty_body, attack_invalid_utf8,
                       attack_framing, attack_counts, attack_pipelined_garbage,
                       attack_reset_mid_reply):
            run(attack, srv)
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")


def main():
    body_attacks()
    for attack in (attack_auth_before_body, attack_connection_limit, attack_memory_budget,
                   attack_slowloris):
        run(attack)
    return summary("hardening")


if __name__ == "__main__":
    sys.exit(main())

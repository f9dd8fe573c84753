#!/usr/bin/env python3
"""test_large_body.py - bodies at the size limit against the real binary (issue 12): a 64 MiB
float32 forward (the default --max-body-bytes, exactly) answered whole and right, a chunked body
that grows past the huge-page threshold, a forward the memory budget can never hold, and a
declared 64 MiB body sent too slowly, closed by --request-timeout with its budget given back.

  NORMD=build/normd python3 tests/server/test_large_body.py [-k NAME]

Standard library only. Timing is never asserted: LIVENESS bounds are for hangs. Prints
"large_body: N passed, M failed".
"""
import array
import json
import math
import random
import sys
import time

from harness import LIVENESS, Conn, Server, check, run, summary  # noqa: E402 (tests/server/harness.py)

FEATURES = 1024
BLOCK_ROWS = 16  # the body repeats one random block of rows: cheap to build and to check
EPSILON = 0.001  # BatchNormalization's default: a fresh layer computes x / sqrt(1 + epsilon)
LIMIT = 64 << 20  # the default --max-body-bytes


def block():
    rng = random.Random(12)
    return array.array("f", [rng.uniform(-3, 3) for _ in range(BLOCK_ROWS * FEATURES)]).tobytes()


def body_of(rows):
    one = block()
    return one * (rows // BLOCK_ROWS)


def near_reference(x_bytes, y_bytes):
    """y is x through a fresh BatchNormalization: within float32 rounding of x / sqrt(1 + eps).
    A server returning x itself is off by 5e-4 relative and fails."""
    x, y = array.array("f"), array.array("f")
    x.frombytes(x_bytes)
    y.frombytes(y_bytes)
    scale = 1.0 / math.sqrt(1.0 + EPSILON)
    return len(x) == len(y) and all(abs(b - a * scale) <= 1e-6 * abs(a) + 1e-7
                                    for a, b in zip(x, y))


def blocks_equal(data, first):
    """Every block-sized slice of data equals first (the rows repeat, so must the outputs)."""
    view, n = memoryview(data), len(first)
    return len(data) % n == 0 and all(view[i:i + n] == first for i in range(0, len(data), n))


def create_layer(srv):
    st = srv.request("PUT", "/v1/layers/wide", {"type": "BatchNormalization",
                                                "input": [FEATURES]})[0]
    check(st in (200, 201), "create a %d-feature layer: %s" % (FEATURES, st))


def forward(srv, body, rows):
    return srv.request("POST", "/v1/layers/wide/forward", body,
                       {"Content-Type": "application/octet-stream",
                        "X-Tensor-Shape": "%d,%d" % (rows, FEATURES)})


def budget_used(srv):
    return srv.budget_used()


def settle(srv, want):
    """Waits (a liveness bound) until the budget holds want bytes: a request gives its bytes
    back when the server completes it, a moment after the client has the answer."""
    deadline = time.time() + LIVENESS
    while budget_used(srv) != want and time.time() < deadline:
        time.sleep(0.05)
    return budget_used(srv)


def alive(srv, what):
    st, _, b = srv.request("POST", "/v1/layers/wide/forward", {"input": [0.5] * FEATURES})
    ok = st == 200 and len(json.loads(b)["output"]) == FEATURES
    check(ok, "a small forward still answers after %s: %s" % (what, st))


# ---- tests ----


def test_limit_sized_forward(srv):
    rows = LIMIT // (4 * FEATURES)
    small_st, _, small = forward(srv, block(), BLOCK_ROWS)  # the same rows, a small request
    check(small_st == 200 and near_reference(block(), small),
          "a %d-row binary forward is the reference: %s" % (BLOCK_ROWS, small_st))
    baseline = budget_used(srv)
    body = body_of(rows)
    check(len(body) == LIMIT, "the body is exactly --max-body-bytes: %d" % len(body))
    st, hdrs, out = forward(srv, body, rows)
    check(st == 200, "a 64 MiB binary forward is answered: %s %s" % (st, out[:200]))
    check(hdrs.get("x-tensor-shape") == "%d,%d" % (rows, FEATURES),
          "its X-Tensor-Shape: %s" % hdrs.get("x-tensor-shape"))
    check(len(out) == LIMIT, "its reply is 64 MiB: %d bytes" % len(out))
    check(st == 200 and blocks_equal(out, small),
          "every row of the 64 MiB reply equals the small forward's")
    del body, out
    used = settle(srv, baseline)
    check(used == baseline, "its bytes go back to the budget: %d, before %d" % (used, baseline))
    c = Conn(srv.port)
    try:
        c.send(forward_head(rows, "Content-Length: %d" % (LIMIT + 1)))
        r = c.read()  # the head alone: the answer comes before any byte of the body
    finally:
        c.close()
    check(r.status == 413 and r.error()[0] == "payload_too_large",
          "a Content-Length one past --max-body-bytes is 413: %s %r" % (r.status, r.body[:60]))


def forward_head(rows, framing, more=""):
    """The head of a raw binary forward of rows: framing is its Content-Length or
    Transfer-Encoding line."""
    return ("POST /v1/layers/wide/forward HTTP/1.1\r\nHost: x\r\n%sContent-Type: "
            "application/octet-stream\r\nX-Tensor-Shape: %d,%d\r\n%s\r\n\r\n"
            % (more, rows, FEATURES, framing)).encode()


def chunked(srv, body, rows, part=512 << 10):
    """A binary forward sent chunked (no Content-Length): the buffer grows as it comes."""
    c = Conn(srv.port)
    try:
        c.send(forward_head(rows, "Transfer-Encoding: chunked", "Connection: close\r\n"))
        for at in range(0, len(body), part):
            piece = body[at:at + part]
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.read()
    finally:
        c.close()
    return r.status, r.body


def test_chunked_growth(srv):
    rows = 2048  # 8 MiB: the buffer doubles past the huge-page threshold (4 MiB)
    st, small = forward(srv, block(), BLOCK_ROWS)[0::2]
    status, out = chunked(srv, body_of(rows), rows)
    check(status == 200 and len(out) == rows * FEATURES * 4 and blocks_equal(out, small),
          "an 8 MiB chunked binary forward is answered right: %s, %d bytes" % (status, len(out)))


def test_budget_never_fits():
    srv = Server("--max-memory", "160M")
    try:
        create_layer(srv)
        baseline = budget_used(srv)
        rows = LIMIT // (4 * FEATURES)  # body, input and output: past 160 MiB
        st, _, b = forward(srv, body_of(rows), rows)
        code = json.loads(b)["error"]["code"] if st >= 400 else None
        check(st == 413 and code == "payload_too_large",
              "a 64 MiB forward that can never fit in --max-memory 160M: %s %s" % (st, b[:160]))
        used = settle(srv, baseline)
        check(used == baseline, "the refused body's bytes go back: %d, before %d" % (used, baseline))
        alive(srv, "a forward past the budget")
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")


def test_slow_large_body():
    srv = Server("--request-timeout", "2", "--idle-timeout", "2")
    try:
        create_layer(srv)
        baseline = budget_used(srv)
        rows = LIMIT // (4 * FEATURES)
        c = Conn(srv.port)
        closed, start = False, time.time()
        try:
            # 1 MiB at once, then a byte at a time
            c.send(forward_head(rows, "Content-Length: %d" % LIMIT) + block() * 16)
            time.sleep(0.3)
            held = budget_used(srv)
            check(held >= baseline + LIMIT,
                  "the declared body holds its place in the budget: %d, before %d" % (held, baseline))
            while time.time() - start < 3 * LIVENESS:
                try:
                    c.send(b"\0")
                except OSError:
                    closed = True
                    break
                time.sleep(0.2)
        finally:
            c.close()
        check(closed, "a 64 MiB body sent a byte at a time is closed by --request-timeout "
              "(after %.1f s)" % (time.time() - start))
        used = settle(srv, baseline)
        check(used == baseline, "its 64 MiB go back to the budget: %d, before %d" % (used, baseline))
        alive(srv, "a slow large body")
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")


def main():
    srv = Server()
    try:
        create_layer(srv)
        for test in (test_limit_sized_forward, test_chunked_growth):
            run(test, srv)
        alive(srv, "the large forwards")
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")
    for test in (test_budget_never_fits, test_slow_large_body):
        run(test)
    return summary("large_body")


if __name__ == "__main__":
    sys.exit(main())

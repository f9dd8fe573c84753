#!/usr/bin/env python3
"""test_encoding.py - content codings against the real binary (loopback only).

Request bodies sent with Content-Encoding gzip, x-gzip or deflate (zlib-wrapped or raw) give the
same answers as plain ones; another coding is 415 before the body is read; corrupt or truncated
data is 400; a bomb (1 GiB of zeros in about 1 MB) is 413 without the server inflating it or
growing past its body limit, while /healthz keeps answering. Replies are gzip'd when the client
accepts gzip and the reply is at least 1400 bytes, with Vary: Accept-Encoding; never below that,
never for gzip;q=0, never binary tensors.

  NORMD=build/normd tests/server/test_encoding.py

Standard library only. Prints "encoding: N passed, M failed".
"""
import base64
import gzip
import json
import random
import socket
import struct
import sys
import threading
import time
import zlib

import harness  # noqa: E402 (tests/server/harness.py)
from harness import LIVENESS, check, summary  # noqa: E402

MIN_BYTES = 1400  # SRV_GZIP_MIN_BYTES
BODY_LIMIT = 8 << 20  # --max-body-bytes of the server under test
MiB = 1 << 20


class Server(harness.Server):
    """harness.Server whose call() asks for identity unless told otherwise: bodies come back as
    sent on the wire."""

    def call(self, method, path, body=None, headers=None):
        """(status, headers lower-cased, body bytes as sent on the wire)."""
        hs = {"Accept-Encoding": "identity"}
        hs.update(headers or {})
        return self.request(method, path, body, hs)

    def hwm_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def steady(self):
        """The budget once no request is completing (two readings 0.2 s apart agree)."""
        last, deadline = self.budget_used(), time.time() + LIVENESS
        while time.time() < deadline:
            time.sleep(0.2)
            now = self.budget_used()
            if now == last:
                return now
            last = now
        return last

    def settle(self, want):
        """Waits (a liveness bound) until the budget holds want bytes again. A reading may
        include the previous /metrics reply, given back a moment after the client has it."""
        deadline = time.time() + LIVENESS
        while True:
            now = self.budget_used()
            if now == want or time.time() > deadline:
                return now
            time.sleep(0.05)


def error_code(body):
    try:
        return json.loads(body.decode())["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# ---- the codings ----


def pack(data, coding):
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data, 6)
    wbits = {"deflate": 15, "deflate-raw": -15}[coding]
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(data) + c.flush()


# (Content-Encoding header, how the body is packed)
CODINGS = [("gzip", "gzip"), ("x-gzip", "x-gzip"), ("deflate", "deflate"),
           ("deflate", "deflate-raw"), ("GZip, identity", "gzip"), ("identity", None)]


def encoded(data, header, how):
    return (pack(data, how) if how else data), {"Content-Encoding": header}


def bomb(mib=1024, raw=False):
    """A gzip member (or a raw deflate stream) of mib MiB of zeros, about 1 KB per
    MiB: one full-flushed deflate block of 1 MiB of zeros, repeated, then an empty final block.
    A valid stream: only its size is hostile."""
    zeros = bytes(MiB)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    stream = block * mib + end
    if raw:
        return stream
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + stream +
            struct.pack("<II", crc, (mib * MiB) & 0xffffffff))


# ---- requests ----


def forward_body(rows=32, cols=256, seed=1):
    rng = random.Random(seed)
    return {"input": [[round(rng.gauss(0, 1), 4) for _ in range(cols)] for _ in range(rows)]}


def test_forward_bodies(srv):
    plain = json.dumps(forward_body()).encode()
    want = srv.call("POST", "/v1/layers/bn/forward", plain,
                    {"Content-Type": "application/json"})
    check(want[0] == 200 and b'"output"' in want[2], "a plain forward: %s" % want[0])
    for header, how in CODINGS:
        body, hs = encoded(plain, header, how)
        hs["Content-Type"] = "application/json"
        got = srv.call("POST", "/v1/layers/bn/forward", body, hs)
        check(got[0] == 200 and got[2] == want[2],
              "a forward sent as %s (%s, %d bytes) answers as the plain one: %s %s"
              % (header, how, len(body), got[0], got[2][:120]))


def test_binary_body(srv):
    rng = random.Random(2)
    floats = struct.pack("<%df" % (32 * 256), *[rng.uniform(-3, 3) for _ in range(32 * 256)])
    hs = {"Content-Type": "application/octet-stream", "X-Tensor-Shape": "32,256",
          "Accept-Encoding": "gzip"}
    want = srv.call("POST", "/v1/layers/bn/forward", floats, hs)
    check(want[0] == 200 and len(want[2]) == len(floats), "a binary forward: %s" % want[0])
    check("content-encoding" not in want[1],
          "a binary (octet-stream) reply is not compressed: %s" % want[1])
    got = srv.call("POST", "/v1/layers/bn/forward", gzip.compress(floats),
                   dict(hs, **{"Content-Encoding": "gzip"}))
    check(got[0] == 200 and got[2] == want[2],
          "a gzip'd binary forward answers as the plain one: %s" % got[0])


def layer_info(srv, name):
    st, _, body = srv.call("GET", "/v1/layers/" + name)
    info = json.loads(body)
    info.pop("name", None)
    return st, info


def test_put_layer(srv):
    definition = {"type": "BatchNormalization", "input": [4],
                  "options": {"epsilon": 0.01, "momentum": 0.5}}
    plain = json.dumps(definition).encode()
    st = srv.call("PUT", "/v1/layers/put_plain", plain, {"Content-Type": "application/json"})[0]
    check(st in (200, 201), "PUT a layer, plain: %s" % st)
    want = layer_info(srv, "put_plain")
    for i, (header, how) in enumerate(CODINGS):
        body, hs = encoded(plain, header, how)
        hs["Content-Type"] = "application/json"
        name = "put_%d" % i
        st, _, b = srv.call("PUT", "/v1/layers/" + name, body, hs)
        got = layer_info(srv, name)
        check(st == 201 and got == want,
              "PUT a layer sent as %s (%s): %s %s, same layer %s" % (header, how, st, b[:120],
                                                                    got == want))


def raw_head(srv, head):
    """Sends a request head (no body) and reads the answer: the server must answer without it."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=LIVENESS) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head_text, _, body = data.partition(b"\r\n\r\n")
        status = int(head_text.split()[1]) if head_text else 0
        n = 0
        for line in head_text.decode("latin-1").split("\r\n")[1:]:
            if line.lower().startswith("content-length:"):
                n = int(line.split(":")[1])
        while len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, body


def test_unsupported(srv):
    plain = json.dumps(forward_body(2, 256)).encode()
    for header in ("br", "gzip, gzip", "deflate, gzip", "compress", "gzip;level=1", "zstd"):
        st, _, body = srv.call("POST", "/v1/layers/bn/forward", pack(plain, "gzip"),
                               {"Content-Type": "application/json", "Content-Encoding": header})
        msg = json.loads(body)["error"]["message"] if st == 415 else ""
        check(st == 415 and error_code(body) == "unsupported_media_type" and
              "Content-Encoding" in msg,
              "Content-Encoding %r: %s %s" % (header, st, body[:160]))
    st, body = raw_head(srv, b"POST /v1/layers/bn/forward HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nContent-Encoding: br\r\n"
                             b"Content-Length: 1000000\r\n\r\n")
    check(st == 415 and b"br" in body,
          "an unsupported coding is refused before the body is read: %s %s" % (st, body[:160]))


def test_corrupt(srv):
    plain = json.dumps(forward_body(4, 256)).encode()
    gz = pack(plain, "gzip")
    flipped = bytearray(gz)
    flipped[-6] ^= 0x40  # the CRC-32
    zl = pack(plain, "deflate")
    cases = [("gzip", bytes(flipped), "a wrong CRC"),
             ("gzip", gz[:len(gz) // 2], "truncated in the middle"),
             ("gzip", gz[:-4], "truncated before ISIZE"),
             ("gzip", plain, "plain JSON labelled gzip"),
             ("deflate", zl[:-2], "zlib, truncated"),
             ("deflate", zl + b"tail", "bytes after the stream"),
             ("deflate", b"\x78\x9c" + b"\xff" * 40, "a zlib header and garbage")]
    for header, body, what in cases:
        st, _, b = srv.call("POST", "/v1/layers/bn/forward", body,
                            {"Content-Type": "application/json", "Content-Encoding": header})
        check(st == 400 and error_code(b) == "malformed_body",
              "%s (%s): %s %s" % (what, header, st, b[:160]))


def send_bomb(srv, body, header, results):
    t0 = time.time()
    try:
        st, _, b = srv.call("POST", "/v1/layers/bn/forward", body,
                            {"Content-Type": "application/json", "Content-Encoding": header})
        results.append((st, error_code(b), time.time() - t0))
    except OSError as e:
        results.append((0, str(e), time.time() - t0))


def test_bombs(srv):
    base = srv.steady()
    gz, raw = bomb(), bomb(raw=True)
    hwm0 = srv.hwm_kb()
    for body, header in ((gz, "gzip"), (raw, "deflate")):
        results = []
        send_bomb(srv, body, header, results)
        st, code, took = results[0]
        check(st == 413 and code == "payload_too_large",
              "a %d-byte %s bomb of 1 GiB: %s %s (%.2f s)" % (len(body), header, st, code, took))
    grown = (srv.hwm_kb() - hwm0) / 1024.0
    print("  bombs: peak RSS grew %.1f MiB (body limit %d MiB)" % (grown, BODY_LIMIT >> 20))
    check(grown < 6 * (BODY_LIMIT >> 20),
          "inflating stops at the body limit: peak RSS grew %.1f MiB for 1 GiB bombs" % grown)
    used = srv.settle(base)
    check(used == base, "every bomb's bytes go back to the budget: %d, before %d" % (used, base))
    # Liveness: /healthz answers while bombs are inflated on workers.
    results, threads = [], []
    for _ in range(4):
        t = threading.Thread(target=lambda: [send_bomb(srv, gz, "gzip", results)
                                             for _ in range(3)])
        t.start()
        threads.append(t)
    probes = 0
    while any(t.is_alive() for t in threads):
        t0 = time.time()
        st = srv.call("GET", "/healthz")[0]
        check(st == 200 and time.time() - t0 < LIVENESS, "/healthz during bombs: %s" % st)
        probes += 1
        time.sleep(0.01)
    for t in threads:
        t.join()
    check(len(results) == 12 and all(r[0] == 413 for r in results),
          "12 concurrent bombs: all 413: %s" % sorted(set(r[0] for r in results)))
    check(probes > 0, "/healthz was probed while the bombs ran (%d probes)" % probes)
    used = srv.settle(base)
    check(used == base, "the budget is back after concurrent bombs: %d, before %d" % (used, base))


def gunzip(body):
    return gzip.decompress(body)


def test_replies(srv):
    body = json.dumps(forward_body()).encode()
    path, ct = "/v1/layers/bn/forward", {"Content-Type": "application/json"}
    plain = srv.call("POST", path, body, ct)
    st, h, z = srv.call("POST", path, body, dict(ct, **{"Accept-Encoding": "gzip"}))
    check(st == 200 and h.get("content-encoding") == "gzip" and
          h.get("vary") == "Accept-Encoding",
          "a 32x256 forward with Accept-Encoding: gzip is gzip'd: %s %s" % (st, h))
    ok = h.get("content-encoding") == "gzip" and gunzip(z) == plain[2]
    check(ok and json.loads(gunzip(z)) == json.loads(plain[2]),
          "the gzip'd reply is the plain reply (%d -> %d bytes)" % (len(plain[2]), len(z)))
    print("  32x256 forward reply: %d bytes, gzip'd %d" % (len(plain[2]), len(z)))
    check(plain[1].get("vary") == "Accept-Encoding" and "content-encoding" not in plain[1],
          "identity only: not compressed, Vary set: %s" % plain[1])
    for accept in ("gzip;q=0", "deflate, br", "*;q=0", "gzip;q=0, *", "identity",
                   "identity;q=1, gzip;q=0.5"):
        st, h, b = srv.call("POST", path, body, dict(ct, **{"Accept-Encoding": accept}))
        check(st == 200 and "content-encoding" not in h and b == plain[2],
              "Accept-Encoding %r: not compressed: %s" % (accept, h.get("content-encoding")))
    for accept in ("gzip;q=0.5", "*", "br, GZIP;Q=1.0", "x-gzip"):
        st, h, b = srv.call("POST", path, body, dict(ct, **{"Accept-Encoding": accept}))
        check(st == 200 and h.get("content-encoding") == "gzip" and gunzip(b) == plain[2],
              "Accept-Encoding %r: compressed: %s" % (accept, h.get("content-encoding")))
    # Small replies are never compressed (nor marked Vary): the threshold is 1400 bytes.
    st = srv.call("PUT", "/v1/layers/small", {"type": "BatchNormalization", "input": [4]})[0]
    check(st in (200, 201), "create a small layer: %s" % st)
    for method, p, b in (("GET", "/healthz", None),
                         ("POST", "/v1/layers/small/forward",
                          json.dumps(forward_body(2, 4)).encode()),
                         ("POST", "/v1/layers/nope/forward", body)):
        st, h, reply = srv.call(method, p, b, dict(ct, **{"Accept-Encoding": "gzip"}))
        check(len(reply) < MIN_BYTES and "content-encoding" not in h and "vary" not in h,
              "a %d-byte reply (%s %s) is not compressed: %s" % (len(reply), method, p, h))


def test_inline_replies(srv):
    """Replies made on the event loop: /metrics (small, compressed there) and a forward whose
    small base64 body runs inline but whose 80 KB reply is compressed on a worker."""
    st, h, z = srv.call("GET", "/metrics", None, {"Accept-Encoding": "gzip"})
    plain = srv.call("GET", "/metrics")[2]
    check(st == 200 and h.get("content-encoding") == "gzip" and
          gunzip(z).split(b"\n")[:3] == plain.split(b"\n")[:3],
          "GET /metrics (%d bytes) with gzip is compressed: %s" % (len(plain), h))
    rng = random.Random(3)
    floats = struct.pack("<%df" % (32 * 256), *[rng.gauss(0, 1) for _ in range(32 * 256)])
    req = {"input": {"shape": [32, 256], "datatype": "FP32",
                     "b64": base64.b64encode(floats).decode()}, "output_format": "nested"}
    body = json.dumps(req).encode()
    ct = {"Content-Type": "application/json"}
    want = srv.call("POST", "/v1/layers/bn/forward", body, ct)
    st, h, z = srv.call("POST", "/v1/layers/bn/forward", body,
                        dict(ct, **{"Accept-Encoding": "gzip"}))
    check(len(body) < 65536 and len(want[2]) > 65536, "the inline forward's sizes: %d, %d"
          % (len(body), len(want[2])))
    check(st == 200 and h.get("content-encoding") == "gzip" and gunzip(z) == want[2],
          "a large reply made inline is compressed (on a worker): %s %s" % (st, h))
    st, h, _ = srv.call("HEAD", "/metrics", None, {"Accept-Encoding": "gzip"})
    if st != 405:  # HEAD arrives with another change; until then it is 405
        check("content-encoding" not in h, "HEAD is never compressed: %s %s" % (st, h))


def main():
    srv = Server("--max-body-bytes", str(BODY_LIMIT))
    try:
        st = srv.call("PUT", "/v1/layers/bn",
                      {"type": "BatchNormalization", "input": [256]})[0]
        check(st in (200, 201), "create the layer: %s" % st)
        for test in (test_forward_bodies, test_binary_body, test_put_layer, test_unsupported,
                     test_corrupt, test_replies, test_inline_replies, test_bombs):
            try:
                test(srv)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                check(False, "%s: %s: %s" % (test.__name__, type(e).__name__, e))
        check(srv.call("GET", "/healthz")[0] == 200, "alive at the end")
    finally:
        check(srv.stop() == 0, "normd exits 0 after SIGTERM")
    return summary("encoding")


if __name__ == "__main__":
    sys.exit(main())

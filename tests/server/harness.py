"""harness.py - what the Python tests of tests/server/ share: the pass/fail tally, its summary
line, a free loopback port, and a normd started on one. Standard library only; imported from the
test's own folder."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

LIVENESS = 20.0  # seconds normd may take to start, stop or answer: a liveness bound, never a goal

_TALLY = {"passed": 0, "failed": 0}


def check(cond, what):
    """Counts one assertion; prints what failed. Returns cond."""
    if cond:
        _TALLY["passed"] += 1
    else:
        _TALLY["failed"] += 1
        print("FAIL: " + what, file=sys.stderr)
    return cond


def summary(name, extra_failed=0):
    """Prints "NAME: N passed, M failed"; returns the exit status (1 when anything failed)."""
    failed = _TALLY["failed"] + extra_failed
    print("%s: %d passed, %d failed" % (name, _TALLY["passed"], failed))
    return 1 if failed else 0


def free_port():
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """normd ($NORMD, default build/normd) on a free loopback port with extra flags, its stderr
    kept in self.log; started at once, stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, *flags):
        self.flags = list(flags)
        self.start()

    def start(self):
        self.port = free_port()
        args = [os.environ.get("NORMD", "build/normd"), "--host", "127.0.0.1", "--port",
                str(self.port), "--log-level", "warn"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args + self.flags, stderr=self.log)
        deadline = time.time() + LIVENESS
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("normd exited %s at start" % self.proc.returncode)
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("normd did not start")

    def stop(self):
        """Stops normd; returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(LIVENESS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def request(self, method, path, body=None, headers=None):
        """(status, headers with lower-case names, body bytes); a dict or list body goes as JSON."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=LIVENESS)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    call = request  # the tests' own name for it, unless a test's Server answers otherwise


class JsonServer(Server):
    """Server whose call() answers parsed JSON (None for an empty or non-JSON body)."""

    def call(self, method, path, body=None):
        """(status, headers with lower-case names, parsed JSON or None)."""
        status, hdrs, raw = self.request(method, path, body)
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        return status, hdrs, doc

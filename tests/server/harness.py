"""harness.py - what the Python tests of tests/server/ share: the pass/fail tally, its summary
line, a free loopback port, a normd started on one, a raw HTTP/1.1 connection (Conn, raw) and
run(), which runs a test selected by -k and counts an exception as a failure. Standard library
only; imported from the test's own folder."""
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


def owns_listener(pid, port):
    """Whether process pid holds the socket listening on 127.0.0.1:port."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return False
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.split(":")[1], 16) == port and inode in inodes:
                return True
    return False


class PortTaken(Exception):
    """normd found the port it was given in use."""


class Server:
    """normd ($NORMD, default build/normd) on a free loopback port with extra flags, its stderr
    kept in self.log; started at once (killed if it does not answer in time), stopped by its pid
    (SIGTERM, then SIGKILL)."""

    def __init__(self, *flags, env=None):
        """env: variables added to this process's environment for normd."""
        self.flags = list(flags)
        self.env = dict(os.environ, **(env or {}))
        self.start()

    def start(self):
        for _ in range(5):  # another process may take the free port first: normd exits "in use"
            try:
                return self.start_once()
            except PortTaken:
                continue
        raise RuntimeError("normd found its free port in use five times")

    def start_once(self):
        self.port = free_port()
        args = [os.environ.get("NORMD", "build/normd"), "--host", "127.0.0.1", "--port",
                str(self.port), "--log-level", "warn"] + self.flags
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=self.env)
        deadline = time.time() + LIVENESS
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                if self.proc.returncode == 1 and b"in use" in self.log.read():
                    raise PortTaken()
                raise RuntimeError("normd exited %s at start: %s"
                                   % (self.proc.returncode, " ".join(args)))
            try:
                if self.ready():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("normd did not start: " + " ".join(args))

    def ready(self):
        """Whether the started normd answers; a test's Server may ask more (raises OSError while
        nothing listens). Connection: close: the server lets go of the probe's connection before
        the test starts counting connections."""
        # another process may take the free port first: only our own listener counts
        return (owns_listener(self.proc.pid, self.port) and
                self.request("GET", "/healthz", headers={"Connection": "close"})[0] == 200)

    def stop(self):
        """Stops normd; returns its exit status."""
        if getattr(self, "metrics_conn", None) is not None:
            self.metrics_conn.close()
            self.metrics_conn = None
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

    def budget_used(self):
        """normd_memory_budget_bytes{state="used"}, read over one kept-alive connection. A
        reply's text counts in the budget until the server completes it, a moment after the
        client has read it; on one connection that happens before the next request is read,
        while a new connection may be served by another loop first, its reading then counting
        the previous /metrics reply (seen under ASan: 6 KB over the baseline at every poll)."""
        for _ in range(2):  # an idle connection the server closed: once more on a new one
            if getattr(self, "metrics_conn", None) is None:
                self.metrics_conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                               timeout=LIVENESS)
            try:
                self.metrics_conn.request("GET", "/metrics")
                text = self.metrics_conn.getresponse().read().decode()
                break
            except (OSError, http.client.HTTPException):
                self.metrics_conn.close()
                self.metrics_conn = None
        else:
            raise RuntimeError("GET /metrics failed twice")
        for line in text.splitlines():
            if line.startswith('normd_memory_budget_bytes{state="used"}'):
                return int(line.split()[-1])
        return -1


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


# ---- raw HTTP: what goes on the wire is what is checked ----


class Response:
    """One response read off a raw connection: status, headers as (name, value) pairs in order,
    body bytes, and (raw() only) whether the server closed the connection after it."""

    def __init__(self, status, headers, body, closed=False):
        self.status, self.headers, self.body, self.closed = status, headers, body, closed

    def header(self, name):
        """The value of a header (the first), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def cors(self):
        return [k for k, _ in self.headers if k.lower().startswith("access-control-")]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def error(self):
        """(code, field) of an error body, or (None, None)."""
        try:
            e = self.json()["error"]
            return e.get("code"), e.get("field")
        except (ValueError, KeyError, TypeError):
            return None, None


def request_bytes(method, target, body=None, headers=None, version="HTTP/1.1", host="x"):
    """One request as it goes on the wire: Host (unless None) and headers in order, and a body
    (bytes as they are, anything else as JSON) with its Content-Length."""
    hs = {} if host is None else {"Host": host}
    hs.update(headers or {})
    if body is not None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            hs.setdefault("Content-Type", "application/json")
        hs["Content-Length"] = str(len(body))
    head = "%s %s %s\r\n" % (method, target, version)
    head += "".join("%s: %s\r\n" % kv for kv in hs.items()) + "\r\n"
    return head.encode() + (body or b"")


class Conn:
    """One keep-alive connection; responses are read by their framing, so a HEAD that sent a
    body would show as garbage in front of the next response."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=LIVENESS)
        self.buf = b""

    def close(self):
        self.s.close()

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk

    def send(self, data):
        self.s.sendall(data)

    def read(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if not parts[0].startswith("HTTP/1."):
            raise ValueError("not a status line: %r" % lines[0][:80])
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(status, headers, b"")
        n = 0 if head or status in (204, 304) else int(resp.header("Content-Length") or 0)
        while len(self.buf) < n:
            self._fill()
        resp.body, self.buf = self.buf[:n], self.buf[n:]
        return resp

    def ask(self, method, target, body=None, headers=None, version="HTTP/1.1", host="x"):
        self.send(request_bytes(method, target, body, headers, version, host))
        return self.read(head=method == "HEAD")

    def closed(self):
        """True when the server closed the connection (after its answer)."""
        self.s.settimeout(2.0)
        try:
            return self.s.recv(1) == b""
        except socket.timeout:
            return False
        except OSError:
            return True
        finally:
            self.s.settimeout(LIVENESS)


def raw(port, data):
    """Sends bytes on a new connection: the response and whether the server then closed."""
    c = Conn(port)
    try:
        c.send(data)
        resp = c.read()
        resp.closed = c.closed()
        return resp
    finally:
        c.close()


# ---- running the tests of a file ----


def selected(name):
    """Whether `-k PART` on the command line (if given) selects the test of that name."""
    return "-k" not in sys.argv or sys.argv[sys.argv.index("-k") + 1] in name


def run(test, *args):
    """Runs test(*args) if selected; one that raises (a time-out, a reset where an answer
    belongs, a reply that does not parse) counts as a failure, and the next test still runs."""
    if not selected(test.__name__):
        return
    try:
        test(*args)
    except (OSError, EOFError, RuntimeError, ValueError, KeyError, TypeError, AttributeError,
            subprocess.SubprocessError) as e:
        check(False, "%s: %s: %s" % (test.__name__, type(e).__name__, e))

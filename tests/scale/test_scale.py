#!/usr/bin/env python3
"""test_scale.py - normd scaled out on one machine, over loopback, with the real programs: a
redis-server with AOF (appendfsync always), three normd replicas with --store redis://, and nginx
in front, configured from docker/nginx.conf rendered by docker/nginx-entrypoint.sh (the shipped
routing: hash on the layer name, failover only where it is safe). The checks (issue 11 §4):

  1. every /v1 route (and the probes, metrics and /v2) through nginx answers its status; a
     layer created on one replica exists on every replica, a deleted one on none;
  6. a forward, an extract and a GET with min_version on replica B right after a train-step on
     replica A see that step; an unreachable min_version is 503 unavailable;
  3. two clients training one layer through two replicas at once: the acknowledged versions are
     exactly v0+1..v0+N, and the final arrays and optimizer state equal a sequential replay of
     the acknowledged steps, in version order, on an in-memory normd (1e-6 relative);
  2. kill -9 of a replica during train-steps on 20 layers from 8 client threads: the stream goes
     on through the others, and every acknowledged step is in the final state (versions, and the
     history ring);
  4. a fourth replica added and one removed (nginx reloaded, then SIGTERM: it drains) during
     load: no 404, no 5xx but 503 unavailable, no 502;
  5. Redis restarted: nothing acknowledged lost (read back by a replica started afterwards, with
     an empty cache); Redis stopped: writes 503, forwards of cached layers 200, /readyz 503;
     Redis back: /readyz 200 and writes work.

Every wait is bounded by a count or a liveness timeout, never a speed. Every process is started
on 127.0.0.1 (free ports, a private temporary folder) and stopped by its pid, also on failure.

  NORMD=build/normd python3 tests/scale/test_scale.py     (make test-scale)

Needs redis-server and nginx (Debian: redis-server, nginx); without them it prints SKIP and
exits 0, unless CI is set, where that is a failure. Standard library only. Prints
"scale: N passed, M failed".
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from bisect import bisect_left

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "server"))
import harness  # noqa: E402 (tests/server/harness.py)
from harness import LIVENESS, check, free_port, summary  # noqa: E402

NAME = "scale"
REPLICA_FLAGS = ["--threads", "2", "--http-threads", "2", "--drain-timeout", "10"]
LOAD_LAYERS = ["load%02d" % i for i in range(20)]
DOCUMENTED = {409: "conflict", 503: "unavailable"}  # non-2xx answers a client must expect


def note(text):
    print("  " + text, flush=True)


def which(prog, *extra):
    for p in [shutil.which(prog)] + list(extra):
        if p and os.access(p, os.X_OK):
            return p
    return None


# ---- HTTP ----

def call(port, method, path, body=None, headers=None, timeout=LIVENESS):
    """(status, headers lower-cased, parsed JSON or the raw bytes); a new connection each time.
    A refused or reset connection is status 0 (its reason in the headers' 'error')."""
    h = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
    except (OSError, http.client.HTTPException) as e:
        return 0, {"error": repr(e)}, None
    finally:
        conn.close()
    try:
        doc = json.loads(raw) if raw and "json" in hdrs.get("content-type", "") else raw
    except ValueError:
        doc = raw
    return r.status, hdrs, doc


def code_of(doc):
    return doc.get("error", {}).get("code") if isinstance(doc, dict) and \
        isinstance(doc.get("error"), dict) else None


def wait_for(pred, what, limit=LIVENESS):
    """Polls pred() until true or the liveness bound; returns the seconds it took, or None."""
    start = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            note("gave up waiting for " + what)
            return None
        time.sleep(0.05)


def batch(n, c, k):
    """A deterministic batch of n examples of c values, different for every k."""
    r = random.Random(repr(k))
    return [[round(r.uniform(-2, 2), 3) for _ in range(c)] for _ in range(n)]


def step_body(c, k, extra=None):
    body = {"input": batch(4, c, ("x", k)), "output_gradient": batch(4, c, ("g", k)),
            "optimizer": {"type": "sgd", "learning_rate": 0.01, "momentum": 0.9},
            "return": ["version"]}
    body.update(extra or {})
    return body


# ---- nginx's consistent hash, to know where a layer should go ----

def chash_owner(addrs, key):
    """The server nginx's `hash KEY consistent` picks for key among addrs ("HOST:PORT", in the
    config's order) while all are up: ngx_http_upstream_hash_module's ring, 160 points a server,
    point j = crc32(HOST \\0 PORT, point j-1 as 4 little-endian bytes); the key's crc32 goes to
    the first point at or above it (wrapping), equal points keeping the first server's."""
    points = []
    for a in addrs:
        host, port = a.rsplit(":", 1)
        base, prev = zlib.crc32(host.encode() + b"\0" + port.encode()), 0
        for _ in range(160):
            prev = zlib.crc32(prev.to_bytes(4, "little"), base)
            points.append((prev, a))
    points.sort(key=lambda p: p[0])  # stable, like ngx_sort
    ring = [p for i, p in enumerate(points) if i == 0 or p[0] != points[i - 1][0]]
    i = bisect_left([h for h, _ in ring], zlib.crc32(key.encode()))
    return ring[i % len(ring)][1]


# ---- the programs ----

class Redis:
    """redis-server on 127.0.0.1:port with AOF (appendfsync always) in folder; by pid."""

    def __init__(self, exe, folder, port):
        self.exe, self.folder, self.port, self.proc = exe, folder, port, None
        os.makedirs(folder, exist_ok=True)

    def start(self):
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.folder,
                "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", os.path.join(self.folder, "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_for(lambda: self.proc.poll() is not None or self.ping(), "redis-server") is None \
                or self.proc.poll() is not None:
            raise RuntimeError("redis-server did not start (see %s/redis.log)" % self.folder)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        """SIGTERM: Redis flushes its AOF and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(LIVENESS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Replica(harness.Server):
    """A normd replica on a free port; name is for the messages."""

    def __init__(self, name, *flags):
        self.name = name
        super().__init__(*(REPLICA_FLAGS + list(flags)))

    def call(self, method, path, body=None, headers=None, timeout=LIVENESS):
        return call(self.port, method, path, body, headers, timeout)

    def addr(self):
        return "127.0.0.1:%d" % self.port

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=2000):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]


class Nginx:
    """nginx with docker/nginx.conf rendered by docker/nginx-entrypoint.sh --render for the given
    replicas; in the foreground, everything it writes in folder; reload() re-renders and HUPs."""

    def __init__(self, exe, folder):
        self.exe, self.folder, self.proc = exe, folder, None
        self.port = free_port()
        self.conf = os.path.join(folder, "nginx.conf")
        os.makedirs(folder, exist_ok=True)
        # As root nginx's workers run as nobody: they must reach the temporary folders.
        os.chmod(folder, 0o755)
        os.chmod(os.path.dirname(folder), 0o711)

    def render(self, replicas):
        """Runs the shipped entry point, which writes NGINX_TMP/nginx.conf and then runs
        `nginx -t` and `exec nginx`: here a stub nginx first on PATH, so only the rendering
        happens; the real nginx then checks the result."""
        stub = os.path.join(self.folder, "stub")
        os.makedirs(stub, exist_ok=True)
        with open(os.path.join(stub, "nginx"), "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(os.path.join(stub, "nginx"), 0o755)
        env = dict(os.environ, NGINX_TEMPLATE=os.path.join(REPO, "docker", "nginx.conf"),
                   NGINX_LISTEN="127.0.0.1:%d" % self.port, NGINX_TMP=self.folder,
                   NORMD_UPSTREAM=",".join(r.addr() for r in replicas),
                   PATH=stub + os.pathsep + os.environ.get("PATH", ""))
        r = subprocess.run(["sh", os.path.join(REPO, "docker", "nginx-entrypoint.sh")], env=env,
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError("nginx-entrypoint.sh: " + r.stderr.decode(errors="replace"))
        with open(self.conf) as f:
            servers = [l.split()[1] for l in f if l.strip().startswith("server 127.0.0.1:")]
        if servers != [x.addr() for x in replicas]:
            raise RuntimeError("rendered upstreams %s, expected %s" %
                               (servers, [x.addr() for x in replicas]))
        t = subprocess.run([self.exe, "-q", "-t", "-e", self.errlog(), "-c", self.conf],
                           capture_output=True)
        if t.returncode != 0:
            raise RuntimeError("nginx -t: " + t.stderr.decode(errors="replace"))

    def errlog(self):
        return os.path.join(self.folder, "error.log")

    def start(self, replicas):
        self.render(replicas)
        self.out = open(os.path.join(self.folder, "access.log"), "ab")
        self.err = open(self.errlog(), "ab")
        self.proc = subprocess.Popen([self.exe, "-p", self.folder, "-e", self.errlog(), "-c",
                                      self.conf, "-g", "daemon off;"],
                                     stdout=self.out, stderr=self.err)
        if wait_for(lambda: self.proc.poll() is not None or
                    call(self.port, "GET", "/healthz", timeout=2)[0] == 200, "nginx") is None \
                or self.proc.poll() is not None:
            raise RuntimeError("nginx did not start: " + self.tail())

    def workers(self):
        """The pids of the master's children now."""
        kids = set()
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == self.proc.pid:
                        kids.add(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        return kids

    def reload(self, replicas):
        """New config, SIGHUP; returns once two new workers (worker_processes 2) are running:
        every new connection then meets the new upstream list."""
        self.render(replicas)
        old = self.workers()
        self.proc.send_signal(signal.SIGHUP)
        return wait_for(lambda: len(self.workers() - old) >= 2, "nginx's new workers") is not None

    def tail(self, n=2000):
        try:
            with open(self.errlog(), "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(LIVENESS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """Redis, the replicas and nginx; stop() ends every process still running."""

    def __init__(self, tmp, redis_exe, nginx_exe):
        self.tmp = tmp
        self.redis = Redis(redis_exe, os.path.join(tmp, "redis"), free_port())
        self.store = "redis://127.0.0.1:%d" % self.redis.port
        self.replicas, self.retired, self.count = [], [], 0
        self.nginx = Nginx(nginx_exe, os.path.join(tmp, "nginx"))

    def new_replica(self):
        self.count += 1
        r = Replica(chr(ord("A") + self.count - 1), "--store", self.store)
        return r

    def start(self, n):
        self.redis.start()
        for _ in range(n):
            self.replicas.append(self.new_replica())
        self.nginx.start(self.replicas)

    def front(self, method, path, body=None, headers=None, timeout=LIVENESS):
        return call(self.nginx.port, method, path, body, headers, timeout)

    def stop(self):
        self.nginx.stop()
        for r in self.replicas + self.retired:
            if r.proc.poll() is None:
                r.stop()
        self.redis.stop()


# ---- 1. every route through nginx ----

def check_routes(cl):
    f = cl.front
    definition = {"type": "BatchNormalization", "input": [3]}
    expect = []

    ids = {}  # request id -> the routing key docker/nginx.conf's map gives its path

    def want(status, method, path, body=None):
        rid = "r1-%d" % len(expect)
        m = re.match(r"/v1/layers/([^/]+)|/v2/models/([^/]+)|/v1/shared-arrays/([^/]+)", path)
        if m:
            ids[rid] = m.group(1) or m.group(2) or "shared:" + m.group(3)
        st, hdrs, doc = f(method, path, body, {"X-Request-Id": rid})
        check(hdrs.get("x-request-id") == rid, "1. %s %s: X-Request-Id echoed: %s" %
              (method, path, hdrs.get("x-request-id")))
        ok = check(st == status, "1. %s %s: %s, expected %s %s" %
                   (method, path, st, status, str(doc)[:300]))
        expect.append(ok)
        return st, hdrs, doc

    for path in ("/healthz", "/readyz", "/metrics", "/v1", "/v1/types/BatchNormalization/options"):
        want(200, "GET", path)
    st, hdrs, _ = want(201, "POST", "/v1/layers", dict(definition, name="r1"))
    check(hdrs.get("location", "").endswith("/v1/layers/r1"), "1. Location of a POST: %s" % hdrs)
    # The name is in the body, so this POST lands on any replica: the store says it exists.
    want(409, "POST", "/v1/layers", dict(definition, name="r1"))
    want(201, "PUT", "/v1/layers/r2", definition)
    want(200, "PUT", "/v1/layers/r2", definition)
    want(200, "GET", "/v1/layers/r1")
    want(201, "PUT", "/v1/layers/u1", {"type": "BatchNormalization", "input": [None]})
    want(200, "POST", "/v1/layers/u1/initialize", {"input": [3]})
    want(200, "POST", "/v1/layers/r1/forward", {"input": [[1, 2, 3]]})
    st, _, doc = want(200, "POST", "/v1/layers/r1/train-step",
                      {"input": [[1, 2, 3], [3, 1, 2]], "output_gradient": [[1, 0, 0], [0, 1, 0]]})
    check(isinstance(doc, dict) and doc.get("version") == 2, "1. train-step version 2: %s" % doc)
    want(200, "POST", "/v1/layers/r1/extract", {"keys": ["Scaling", "MovingMean"]})
    want(200, "GET", "/v1/layers/r1/arrays")
    want(200, "GET", "/v1/layers/r1/arrays/Scaling")
    want(200, "PUT", "/v1/layers/r1/arrays/Scaling", {"array": [2, 2, 2]})
    st, _, doc = want(200, "GET", "/v1/layers/r1/history")
    check(isinstance(doc, dict) and [r.get("version") for r in doc.get("records", [])] == [2],
          "1. history of r1: %s" % doc)
    want(201, "PUT", "/v1/layers/s1", dict(definition, arrays={"Scaling": {"shared": "g1"}}))
    st, _, doc = want(200, "GET", "/v1/shared-arrays")
    check(isinstance(doc, dict) and "g1" in doc.get("shared_arrays", []),
          "1. g1 in the shared arrays: %s" % doc)
    st, _, doc = want(200, "GET", "/v1/shared-arrays/g1")
    check(isinstance(doc, dict) and doc.get("layers") == ["s1"], "1. g1's layers: %s" % doc)
    st, _, exported = want(200, "GET", "/v1/layers/r1/export")
    if isinstance(exported, dict):
        st, _, doc = want(201, "POST", "/v1/layers/r4/import", exported)
        st, _, doc = f("GET", "/v1/layers/r4")
        check(st == 200 and doc.get("version") == exported.get("version"),
              "1. the imported layer's version: %s %s" % (st, str(doc)[:200]))
    want(200, "GET", "/v2/models/r1")
    want(200, "POST", "/v2/models/r1/infer",
         {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    st, _, doc = want(200, "GET", "/v1/layers")
    names = {l["name"] for l in doc.get("layers", [])} if isinstance(doc, dict) else set()
    check({"r1", "r2", "u1", "s1", "r4"} <= names, "1. the list through nginx: %s" % sorted(names))
    # Any replica answers for any layer, the list included (the store is the truth).
    for r in cl.replicas:
        st, _, doc = r.call("GET", "/v1/layers/r2")
        check(st == 200, "1. r2 on replica %s: %s %s" % (r.name, st, str(doc)[:200]))
        st, _, doc = r.call("GET", "/v1/layers")
        names = {l["name"] for l in doc.get("layers", [])} if isinstance(doc, dict) else set()
        check({"r1", "r2", "u1", "s1", "r4"} <= names,
              "1. the list on replica %s: %s" % (r.name, sorted(names)))
    want(204, "DELETE", "/v1/layers/r2")
    want(404, "GET", "/v1/layers/r2")
    # Deleted everywhere (other replicas drop their copy on the store's message: bounded wait).
    for r in cl.replicas:
        took = wait_for(lambda: r.call("GET", "/v1/layers/r2")[0] == 404, "r2 gone on " + r.name)
        check(took is not None, "1. the deleted r2 is 404 on replica %s" % r.name)
    note("1. routes: %d of %d answered as expected" % (sum(expect), len(expect)))
    # Routing: every request about a layer (or shared array) went to its owner on the ring.
    log, addrs = upstreams(cl), [r.addr() for r in cl.replicas]
    wrong = [(rid, key, log.get(rid), chash_owner(addrs, key)) for rid, key in ids.items()
             if served_by(log.get(rid)) != chash_owner(addrs, key)]
    check(ids and not wrong, "1. requests about a layer reach its owner on nginx's hash ring: %s"
          % wrong[:5])
    note("1. %d requests about %d layers each reached the replica the hash ring names; the "
         "layers spread %s over the replicas" % (len(ids), len(set(ids.values())),
                                                 spread(addrs, set(ids.values()))))


def spread(addrs, keys):
    counts = [sum(chash_owner(addrs, k) == a for k in keys) for a in addrs]
    return "/".join(str(c) for c in counts)


# ---- 6. read-your-writes across replicas ----

def check_min_version(cl):
    a = cl.replicas[0]
    st, _, doc = a.call("PUT", "/v1/layers/ryw", {"type": "BatchNormalization", "input": [8]})
    check(st == 201, "6. create ryw: %s %s" % (st, doc))
    seen = 0
    rounds = 12
    for i in range(rounds):
        src = cl.replicas[i % len(cl.replicas)]
        dst = cl.replicas[(i + 1) % len(cl.replicas)]
        st, _, doc = src.call("POST", "/v1/layers/ryw/train-step",
                              step_body(8, ("ryw", i), {"return": ["version", "arrays"]}))
        if not check(st == 200, "6. train-step on %s: %s %s" % (src.name, st, doc)):
            continue
        v, arrays = doc["version"], doc["arrays"]
        x = {"input": batch(2, 8, ("f", i))}
        if i % 2:
            st, _, fwd = dst.call("POST", "/v1/layers/ryw/forward", dict(x, min_version=v))
        else:
            st, _, fwd = dst.call("POST", "/v1/layers/ryw/forward?min_version=%d" % v, x)
        ok = check(st == 200 and isinstance(fwd, dict) and fwd.get("version", 0) >= v,
                   "6. forward on %s with min_version %d (%s): %s %s" %
                   (dst.name, v, "body" if i % 2 else "query", st, str(fwd)[:200]))
        st, _, ext = dst.call("POST", "/v1/layers/ryw/extract",
                              {"keys": ["Scaling", "MovingMean"], "min_version": v})
        ok &= check(st == 200 and isinstance(ext, dict) and
                    close_tree(ext.get("Scaling"), arrays.get("Scaling")) and
                    close_tree(ext.get("MovingMean"), arrays.get("MovingMean")),
                    "6. extract on %s with min_version %d sees the step's arrays: %s %s vs %s" %
                    (dst.name, v, st, str(ext)[:200], str(arrays)[:200]))
        st, _, info = dst.call("GET", "/v1/layers/ryw?min_version=%d" % v)
        ok &= check(st == 200 and info.get("version", 0) >= v,
                    "6. GET on %s with min_version %d: %s %s" % (dst.name, v, st, str(info)[:200]))
        seen += ok
    st, hdrs, doc = cl.replicas[1].call("POST", "/v1/layers/ryw/forward?min_version=1000000",
                                        {"input": batch(2, 8, "late")}, timeout=3 * LIVENESS)
    check(st == 503 and code_of(doc) == "unavailable",
          "6. a min_version no store has: 503 unavailable, got %s %s" % (st, doc))
    note("6. min_version: %d of %d rounds saw the other replica's step (forward, extract, GET)"
         % (seen, rounds))


def close_tree(a, b, rel=1e-6):
    """Equal structures, numbers within rel (relative, with an absolute floor of rel)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_tree(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close_tree(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            not isinstance(a, bool) and not isinstance(b, bool):
        return abs(a - b) <= rel * max(1.0, abs(a), abs(b))
    return a == b


# ---- 3. two writers on one layer through two replicas ----

def check_two_writers(cl):
    a, b = cl.replicas[0], cl.replicas[1]
    definition = {"type": "BatchNormalization", "input": [16], "seed": 7}
    st, _, doc = a.call("PUT", "/v1/layers/duel", definition)
    check(st == 201, "3. create duel: %s %s" % (st, doc))
    v0 = a.call("GET", "/v1/layers/duel")[2].get("version")
    steps_each = 30
    results, refused = [[], []], []
    gate = threading.Barrier(2)

    def writer(c, replica):
        gate.wait(LIVENESS)
        for k in range(steps_each):
            body = {"input": batch(8, 16, ("dx", c, k)),
                    "output_gradient": batch(8, 16, ("dg", c, k)),
                    "optimizer": {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                    "return": ["version"]}
            st, _, doc = replica.call("POST", "/v1/layers/duel/train-step", body)
            results[c].append((st, doc.get("version") if st == 200 else code_of(doc), body))
            if st != 200:
                refused.append((replica.name, k, st, doc))

    threads = [threading.Thread(target=writer, args=(c, r)) for c, r in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10 * LIVENESS)
    acked = sorted((v, body) for res in results for st, v, body in res if st == 200)
    others = [(st, v) for res in results for st, v, _ in res if st != 200]
    versions = [v for v, _ in acked]
    n = len(versions)
    check(all(st in DOCUMENTED and v == DOCUMENTED[st] for st, v in others),
          "3. every refused step is a documented 409 conflict or 503: %s" % refused)
    check(versions == list(range(v0 + 1, v0 + 1 + n)),
          "3. acknowledged versions are exactly %d..%d: %s" % (v0 + 1, v0 + n, versions))
    for c in (0, 1):
        mine = [v for st, v, _ in results[c] if st == 200]
        check(mine == sorted(mine) and len(set(mine)) == len(mine),
              "3. client %d's versions increase: %s" % (c, mine))
    for r in (a, b):
        st, _, doc = r.call("GET", "/v1/layers/duel?min_version=%d" % (v0 + n))
        check(st == 200 and doc.get("version") == v0 + n,
              "3. replica %s at version %d: %s %s" % (r.name, v0 + n, st, str(doc)[:200]))
    owner = {v: c for c in (0, 1) for st, v, _ in results[c] if st == 200}
    switches = sum(owner[v] != owner[v + 1] for v in versions[:-1] if v + 1 in owner)
    note("3. two writers: %d steps acknowledged (%d through %s, %d through %s), %d refused %s; "
         "the writer changes %d times in version order" %
         (n, sum(st == 200 for st, _, _ in results[0]), a.name,
          sum(st == 200 for st, _, _ in results[1]), b.name, len(others),
          sorted(set(st for st, _ in others)), switches))
    # The replay: one in-memory normd, the same definition, the acknowledged steps in order.
    mem = harness.Server("--threads", "1", "--http-threads", "1")
    try:
        st, _, _ = call(mem.port, "PUT", "/v1/layers/duel", definition)
        check(st == 201, "3. replay: create: %s" % st)
        for v, body in acked:
            st, _, doc = call(mem.port, "POST", "/v1/layers/duel/train-step", body)
            if not check(st == 200 and doc.get("version") == v,
                         "3. replay of version %d: %s %s" % (v, st, str(doc)[:200])):
                break
        ref = call(mem.port, "GET", "/v1/layers/duel/export")[2]
    finally:
        mem.stop()
    for r in (a, b):
        got = r.call("GET", "/v1/layers/duel/export")[2]
        ok = isinstance(got, dict) and isinstance(ref, dict)
        for part in ("arrays", "optimizer_state", "counters", "version"):
            ok &= check(ok and close_tree(got.get(part), ref.get(part)),
                        "3. replica %s's %s equal the sequential replay's:\n  %s\n  %s" %
                        (r.name, part, str(got.get(part) if ok else got)[:400],
                         str(ref.get(part) if ok else ref)[:400]))
        if ok:
            note("3. replica %s's arrays and optimizer state equal the replay's (1e-6)" % r.name)


# ---- load through nginx ----

class Load:
    """Client threads through nginx, each up to a fixed count of requests on the load layers
    (fewer once stop is set); every answer recorded as (start, end, op, layer, status, version
    or error code, request id). The request ids (X-Request-Id, which nginx logs) find each
    request's replica in nginx's access log."""

    def __init__(self, cl, label, threads, per_thread, ops):
        self.cl, self.label, self.ops, self.records = cl, label, ops, []
        self.lock, self.stop, self.done = threading.Lock(), threading.Event(), 0
        self.threads = [threading.Thread(target=self.run, args=(per_thread, t))
                        for t in range(threads)]

    def run(self, count, t):
        rnd = random.Random("%s-%d" % (self.label, t))
        for k in range(count):
            if self.stop.is_set():
                break
            op, layer = rnd.choice(self.ops), rnd.choice(LOAD_LAYERS)
            path = "/v1/layers/" + layer
            rid = "%s-%d-%d" % (self.label, t, k)
            h = {"X-Request-Id": rid}
            t0 = time.monotonic()
            if op == "step":
                st, _, doc = self.cl.front("POST", path + "/train-step",
                                           step_body(8, (self.label, t, k)), h)
            elif op == "forward":
                st, _, doc = self.cl.front("POST", path + "/forward", {"input": batch(2, 8, k)}, h)
            else:
                st, _, doc = self.cl.front("GET", path, None, h)
            t1 = time.monotonic()
            got = doc.get("version") if st == 200 and isinstance(doc, dict) else code_of(doc)
            with self.lock:
                self.records.append((t0, t1, op, layer, st, got, rid))
                self.done += 1

    def start(self):
        for t in self.threads:
            t.start()

    def wait_done(self, n, limit=10 * LIVENESS):
        return wait_for(lambda: self.done >= n, "%d requests" % n, limit)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(20 * LIVENESS)
        return not any(t.is_alive() for t in self.threads)

    def statuses(self, since=0.0):
        out = {}
        for r in self.records:
            if r[0] >= since:
                out[r[4]] = out.get(r[4], 0) + 1
        return dict(sorted(out.items()))


def upstreams(cl):
    """{request id: [(replica address, its status), ...]} from nginx's access log: every replica
    nginx tried for the request, in order (docker/nginx.conf's log_format normd)."""
    out = {}
    with open(os.path.join(cl.nginx.folder, "access.log"), errors="replace") as f:
        for line in f:
            m = re.search(r" upstream=(.*)/(.*)/.* id=(\S+)$", line)
            if m:
                addrs = [a.strip() for a in m.group(1).split(",")]
                codes = [c.strip() for c in m.group(2).split(",")]
                out[m.group(3)] = list(zip(addrs, codes))
    return out


def create_load_layers(cl):
    ok = 0
    for name in LOAD_LAYERS:
        st, _, doc = cl.front("PUT", "/v1/layers/" + name, {"type": "BatchNormalization",
                                                             "input": [8]})
        ok += st in (200, 201)
    check(ok == len(LOAD_LAYERS), "load layers created: %d of %d" % (ok, len(LOAD_LAYERS)))


def acked_versions(records):
    """{layer: [versions of acknowledged train-steps]}, and {layer: count of answers that may or
    may not have been applied (not 2xx, except 404)}."""
    acked, unsure = {}, {}
    for _, _, op, layer, st, got, _ in records:
        if op != "step":
            continue
        if st == 200:
            acked.setdefault(layer, []).append(got)
        else:
            unsure[layer] = unsure.get(layer, 0) + 1
    return acked, unsure


def check_acked_kept(cl, records, base, label):
    """Every acknowledged train-step is in the final state: per layer, the versions are distinct,
    the final version >= the highest and at most base + acknowledged + unsure; the history ring
    holds every acknowledged version it still spans. base: {layer: version before}."""
    acked, unsure = acked_versions(records)
    lost = dupes = 0
    for layer in LOAD_LAYERS:
        mine = acked.get(layer, [])
        st, _, info = cl.front("GET", "/v1/layers/" + layer)
        if not check(st == 200, "%s: GET %s: %s %s" % (label, layer, st, info)):
            continue
        final = info["version"]
        dupes += not check(len(set(mine)) == len(mine),
                           "%s: %s acknowledged a version twice: %s" % (label, layer, sorted(mine)))
        lost += not check(not mine or final >= max(mine),
                          "%s: %s at %d, below the acknowledged %d" % (label, layer, final,
                                                                       max(mine or [0])))
        most = base[layer] + len(mine) + unsure.get(layer, 0)
        check(base[layer] + len(set(mine)) <= final <= most,
              "%s: %s: version %d, from %d with %d acknowledged and %d unsure steps" %
              (label, layer, final, base[layer], len(mine), unsure.get(layer, 0)))
        st, _, hist = cl.front("GET", "/v1/layers/%s/history" % layer)
        ring = [r["version"] for r in hist.get("records", [])] if st == 200 else []
        check(st == 200 and (not ring or ring[-1] == final),
              "%s: %s's history ends at version %d: %s %s" % (label, layer, final, st,
                                                             ring[-3:]))
        missing = [v for v in mine if ring and v >= ring[0] and v not in ring]
        check(not missing, "%s: %s's history lacks acknowledged versions %s (ring %d..%d)" %
              (label, layer, missing, ring[0] if ring else 0, ring[-1] if ring else 0))
    n = sum(len(v) for v in acked.values())
    note("%s: %d acknowledged train-steps on %d layers; %d below the final state, %d duplicated"
         % (label, n, len(acked), lost, dupes))


def versions_now(cl):
    out = {}
    for layer in LOAD_LAYERS:
        st, _, info = cl.front("GET", "/v1/layers/" + layer)
        out[layer] = info.get("version", 0) if st == 200 else 0
    return out


# ---- 2. kill -9 of a replica during train-steps ----

def served_by(tries):
    """The replica that answered (the last one nginx tried), or None."""
    return tries[-1][0] if tries else None


def check_kill(cl):
    base = versions_now(cl)
    per_thread = 50
    load = Load(cl, "k", 8, per_thread, ["step"])
    load.start()
    load.wait_done(8 * per_thread // 4)
    victim = cl.replicas[1]
    victim.proc.kill()  # SIGKILL: no drain, no goodbye
    victim.proc.wait()
    killed_at = time.monotonic()
    load.wait_done(8 * per_thread)  # every client's whole count: the stream goes on
    check(load.join(), "2. the clients finished")
    recs = load.records
    after = [r for r in recs if r[0] > killed_at]
    ok_after = sum(r[4] == 200 for r in after)
    stat = load.statuses()
    note("2. kill -9 of replica %s after %d of %d steps: answers %s; after the kill %d of %d "
         "acknowledged" % (victim.name, len(recs) - len(after), len(recs), stat, ok_after,
                           len(after)))
    check(after and ok_after * 2 > len(after),
          "2. most steps after the kill acknowledged: %d of %d" % (ok_after, len(after)))
    bad = [r[4:] for r in recs if r[4] not in (200, 502) and
           not (r[4] in DOCUMENTED and r[5] == DOCUMENTED[r[4]])]
    check(not bad, "2. no answer but 200, a 502 in flight, or a documented 409/503: %s" % bad[:10])
    in_flight = [r[4:] for r in recs if r[4] == 502]
    check(len(in_flight) <= 8, "2. at most one 502 per client (the step in flight at the kill): %s"
          % in_flight)
    # Where each step went (nginx's log): the victim's layers moved to the others, and failed
    # connections to it were passed on.
    log = upstreams(cl)
    dead = victim.addr()
    owned = {r[3] for r in recs if r[0] < killed_at and served_by(log.get(r[6])) == dead}
    moved = {r[3] for r in after if r[4] == 200 and r[3] in owned and
             served_by(log.get(r[6])) not in (None, dead)}
    passed_on = sum(1 for r in after if len(log.get(r[6], [])) > 1 and log[r[6]][0][0] == dead)
    check(not owned or moved == owned,
          "2. every layer replica %s served goes on elsewhere: %s of %s" %
          (victim.name, sorted(moved), sorted(owned)))
    note("2. replica %s served %d layers before the kill; after it they were trained on the "
         "others; nginx passed %d steps on from %s's refused connection" %
         (victim.name, len(owned), passed_on, victim.name))
    check_acked_kept(cl, recs, base, "2")
    # A replacement, so that later checks have three replicas.
    cl.replicas.remove(victim)
    cl.retired.append(victim)
    cl.replicas.insert(1, cl.new_replica())
    check(cl.nginx.reload(cl.replicas), "2. nginx reloaded with the replacement")


# ---- 4. a replica added and one removed during load ----

def check_membership(cl):
    base = versions_now(cl)
    load = Load(cl, "m", 4, 5000, ["step", "step", "forward", "get"])
    load.start()
    load.wait_done(80)
    new = cl.new_replica()
    cl.replicas.append(new)
    check(cl.nginx.reload(cl.replicas), "4. nginx reloaded with replica %s added" % new.name)
    added_at, n_added = time.monotonic(), load.done
    wait_for(lambda: load.done >= n_added + 150 and time.monotonic() > added_at + 2,
             "load with %s" % new.name, 10 * LIVENESS)
    gone = cl.replicas[2]
    cl.replicas.remove(gone)
    removing_at = time.monotonic()
    check(cl.nginx.reload(cl.replicas), "4. nginx reloaded with replica %s removed" % gone.name)
    removed_at, n_removed = time.monotonic(), load.done
    # nginx's old workers finish what they had sent; then the replica drains what is left.
    time.sleep(0.5)
    code = gone.stop()
    cl.retired.append(gone)
    check(code == 0, "4. replica %s drained and exited 0: %s" % (gone.name, code))
    n_left = load.done
    wait_for(lambda: load.done >= n_left + 150 and time.monotonic() > removed_at + 2,
             "load without %s" % gone.name, 10 * LIVENESS)
    check(load.join(), "4. the clients finished")
    recs = load.records
    stat = load.statuses()
    note("4. replica %s added after %d requests, %s removed (nginx reload, SIGTERM) after %d, "
         "of %d; answers: %s" % (new.name, n_added, gone.name, n_removed, len(recs), stat))
    check(404 not in stat, "4. no 404: %s" % [r[2:] for r in recs if r[4] == 404][:10])
    bad5 = [r[2:] for r in recs if r[4] >= 500 and not (r[4] == 503 and r[5] == "unavailable")]
    check(not bad5, "4. no 5xx but 503 unavailable: %s" % bad5[:10])
    check(502 not in stat, "4. no 502 (the replica left gracefully)")
    check(all(st == 200 or st in DOCUMENTED for st in stat),
          "4. every answer 200 or a documented 409/503: %s" % stat)
    # Where each request went (nginx's log), against the hash ring of each configuration; the
    # requests that began during a reload (either configuration may take them) or in the half
    # second after it (nginx's old workers may still take a connection or two) are left out.
    log = upstreams(cl)
    with_new = [r.addr() for r in cl.replicas[:2]] + [gone.addr(), new.addr()]
    without = [r.addr() for r in cl.replicas]
    phases = [("with %s" % new.name, with_new, added_at + 0.5, removing_at),
              ("without %s" % gone.name, without, removed_at + 0.5, float("inf"))]
    for label, addrs, t0, t1 in phases:
        mine = [r for r in recs if t0 < r[0] < t1 and r[4] == 200]
        wrong = [(r[2], r[3], r[6], log.get(r[6]), chash_owner(addrs, r[3])) for r in mine
                 if served_by(log.get(r[6])) != chash_owner(addrs, r[3])]
        check(mine and not wrong, "4. %s: %d requests, each to its layer's owner on the ring: %s"
              % (label, len(mine), wrong[:5]))
    by_new = {r[3] for r in recs
              if r[0] > added_at + 0.5 and served_by(log.get(r[6])) == new.addr()}
    by_gone = {r[3] for r in recs if added_at < r[0] < removed_at and
               served_by(log.get(r[6])) == gone.addr()}
    late = [r[6] for r in recs if r[0] > removed_at + 0.5 and
            gone.addr() in [a for a, _ in log.get(r[6], [])]]
    check(not late, "4. nothing sent to the removed replica after the reload: %s" % late[:5])
    note("4. the ring gave the new replica %s %s of the 20 layers (then %s, once %s left); it "
         "served %d layers it had never seen; %s served %d before it left" %
         (new.name, spread(with_new, LOAD_LAYERS).split("/")[3],
          spread(without, LOAD_LAYERS).split("/")[2], gone.name, len(by_new), gone.name,
          len(by_gone)))
    check_acked_kept(cl, recs, base, "4")


# ---- 5. Redis restarted, stopped, back ----

def export_all(port):
    out = {}
    for layer in LOAD_LAYERS + ["duel", "ryw"]:
        st, _, doc = call(port, "GET", "/v1/layers/%s/export" % layer)
        out[layer] = doc if st == 200 else st
    return out


def check_redis(cl):
    before = export_all(cl.nginx.port)
    check(all(isinstance(d, dict) for d in before.values()), "5. every layer exported before")
    cl.redis.stop()
    cl.redis.start()
    for r in cl.replicas:
        took = wait_for(lambda: r.call("GET", "/readyz", timeout=3)[0] == 200,
                        "replica %s ready after Redis's restart" % r.name)
        check(took is not None, "5. replica %s ready after Redis's restart" % r.name)
    # A replica started now has nothing cached: what it reads is what Redis kept.
    fresh = cl.new_replica()
    cl.retired.append(fresh)
    after = export_all(fresh.port)
    fresh.stop()
    same = 0
    for layer, doc in before.items():
        got = after.get(layer)
        ok = isinstance(got, dict) and isinstance(doc, dict) and \
            got.get("version") == doc.get("version") and \
            close_tree(got.get("arrays"), doc.get("arrays"), 0) and \
            close_tree(got.get("optimizer_state"), doc.get("optimizer_state"), 0)
        same += check(ok, "5. %s after Redis's restart: version %s, was %s" %
                      (layer, got.get("version") if isinstance(got, dict) else got,
                       doc.get("version") if isinstance(doc, dict) else doc))
    note("5. Redis restarted (AOF): %d of %d layers read back by a new replica as acknowledged"
         % (same, len(before)))

    # Stopped: cache every layer on each replica first (a forward loads it), then stop Redis.
    x = {"input": batch(2, 8, "cached")}
    for r in cl.replicas:
        for layer in ("load00", "load01"):
            st, _, _ = r.call("POST", "/v1/layers/%s/forward" % layer, x)
            check(st == 200, "5. warm-up forward of %s on %s: %s" % (layer, r.name, st))
    cl.redis.stop()
    for r in cl.replicas:
        took = wait_for(lambda: r.call("GET", "/readyz", timeout=3)[0] == 503,
                        "replica %s not ready without Redis" % r.name)
        check(took is not None, "5. /readyz 503 on replica %s without Redis" % r.name)
        st, _, doc = r.call("POST", "/v1/layers/load00/train-step", step_body(8, "down"),
                            timeout=3 * LIVENESS)
        check(st == 503 and code_of(doc) == "unavailable",
              "5. a train-step on %s without Redis: 503 unavailable, got %s %s" % (r.name, st, doc))
        st, _, doc = r.call("PUT", "/v1/layers/down", {"type": "BatchNormalization", "input": [8]},
                            timeout=3 * LIVENESS)
        check(st == 503 and code_of(doc) == "unavailable",
              "5. a PUT on %s without Redis: 503 unavailable, got %s %s" % (r.name, st, doc))
        for layer in ("load00", "load01"):
            st, _, doc = r.call("POST", "/v1/layers/%s/forward" % layer, x)
            check(st == 200, "5. a forward of the cached %s on %s without Redis: %s %s" %
                  (layer, r.name, st, str(doc)[:200]))
    st, _, doc = cl.front("POST", "/v1/layers/load02/train-step", step_body(8, "down"),
                          timeout=3 * LIVENESS)
    check(st == 503 and code_of(doc) == "unavailable",
          "5. a train-step through nginx without Redis: 503 unavailable, got %s %s" % (st, doc))
    note("5. Redis stopped: writes 503 unavailable, forwards of cached layers 200, /readyz 503")

    cl.redis.start()
    for r in cl.replicas:
        took = wait_for(lambda: r.call("GET", "/readyz", timeout=3)[0] == 200,
                        "replica %s ready after Redis came back" % r.name)
        if check(took is not None, "5. /readyz 200 on replica %s after Redis came back" % r.name):
            note("5. replica %s ready %.1f s after Redis came back" % (r.name, took))
    for layer in ("load00", "load02"):
        v = before[layer]["version"] if isinstance(before[layer], dict) else 0
        st, _, doc = cl.front("POST", "/v1/layers/%s/train-step" % layer, step_body(8, "back"))
        check(st == 200 and doc.get("version") == v + 1,
              "5. a train-step on %s after Redis came back: %s %s, expected version %d" %
              (layer, st, str(doc)[:200], v + 1))


# ---- main ----

def main():
    redis_exe = which("redis-server", "/usr/bin/redis-server")
    nginx_exe = which("nginx", "/usr/sbin/nginx")
    if not redis_exe or not nginx_exe:
        missing = " and ".join(p for p, e in (("redis-server", redis_exe), ("nginx", nginx_exe))
                               if not e)
        if os.environ.get("CI"):
            print("%s: FAIL: %s missing (CI is set)" % (NAME, missing), file=sys.stderr)
            return 1
        print("%s: SKIP (%s missing; Debian: apt-get install redis-server nginx)" %
              (NAME, missing))
        return 0
    normd = os.environ.get("NORMD", "build/normd")
    help_text = subprocess.run([normd, "--help"], capture_output=True, text=True).stdout
    if not check("--store" in help_text, "%s --help names --store" % normd):
        return summary(NAME)
    tmp = tempfile.mkdtemp(prefix="normd-scale-")
    cl = Cluster(tmp, redis_exe, nginx_exe)
    errors = 0
    try:
        cl.start(3)
        note("redis on %d, replicas %s, nginx on %d; files in %s" %
             (cl.redis.port, " ".join("%s=%d" % (r.name, r.port) for r in cl.replicas),
              cl.nginx.port, tmp))
        steps = [("1", check_routes), ("6", check_min_version), ("3", check_two_writers)]
        steps += [("load", create_load_layers), ("2", check_kill), ("4", check_membership),
                  ("5", check_redis)]
        for label, fn in steps:
            try:
                fn(cl)
            except Exception as e:  # a crash in one check is its failure; the others still run
                errors += 1
                print("FAIL: %s raised %r" % (label, e), file=sys.stderr)
                import traceback
                traceback.print_exc()
            if not cl.redis.proc or cl.redis.proc.poll() is not None:
                cl.redis.start()
    finally:
        failed = harness._TALLY["failed"] + errors
        if failed:
            for r in cl.replicas + cl.retired:
                print("---- replica %s (port %d) log:\n%s" % (r.name, r.port, r.log_tail()),
                      file=sys.stderr)
            print("---- nginx error log:\n" + cl.nginx.tail(), file=sys.stderr)
        cl.stop()
        if failed and os.environ.get("KEEP_TMP"):
            print("files kept in " + tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return summary(NAME, errors)


if __name__ == "__main__":
    sys.exit(main())

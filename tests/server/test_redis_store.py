#!/usr/bin/env python3
"""test_redis_store.py - --store redis://: replicas of normd over one real redis-server.

Starts its own redis-server on a free loopback port (AOF on, appendfsync always, in a temporary
folder) and two normd replicas A and B on it, and checks: a layer created on A is served by B
(same forward); a train-step on A shows on B (invalidation); train-steps on A and B alternately
and concurrently give versions without gaps or repeats; the keys in Redis hold what the
replicas say; a compare-and-set against a version the store does not hold is 409 `conflict`;
a delete on B reaches A; a shared array lives under its own keys; a restarted replica reloads
from Redis; with Redis killed: /readyz 503 naming the store, train-steps 503 `unavailable`,
forwards of a cached layer 200, a replica still starts; Redis restarted on the same port and
folder: /readyz 200 again, nothing acknowledged lost, writes work. NORMD_REDIS_PASSWORD reaches
a Redis with requirepass (a wrong one: not ready, 503). Bad --store values exit 2 with a
message (a password in the URL is never echoed).

  NORMD=build/normd python3 tests/server/test_redis_store.py

Skips (exit 0) when redis-server is not installed, unless CI=true. Standard library only.
Prints "redis_store: N passed, M failed".
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402 (tests/server/harness.py)
from harness import LIVENESS, check, free_port, summary  # noqa: E402

DEFINITION = {"type": "BatchNormalization", "input": [3]}
X = [[1, 2, 3], [4, 5, 7], [0.5, -1, 2]]
STEP = {"input": X, "target": [[0, 0, 0], [1, 1, 1], [0, 1, 0]],
        "optimizer": {"type": "sgd", "learning_rate": 0.1}}


# ---- a redis-server of our own, and a few commands to it ----

class RedisError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RedisError("unexpected reply %r" % line)


class Redis:
    """redis-server on a free loopback port with AOF in a folder; stopped by its pid."""

    def __init__(self, folder, password=None):
        self.folder = folder
        self.port = free_port()
        self.password = password
        self.proc = None
        self.start()

    def start(self):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.log = open(os.path.join(self.folder, "redis.log"), "ab")
        extra = ["--requirepass", self.password] if self.password else []
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.folder,
             "--daemonize", "no"] + extra, stdout=self.log, stderr=self.log)
        deadline = time.time() + LIVENESS
        while time.time() < deadline:
            try:
                if self.cmd("PING") == "PONG":
                    return
            except (OSError, RedisError):
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cmd(self, *args):
        """One command's reply (after AUTH when the server has a password)."""
        cmds = ([("AUTH", self.password)] if self.password else []) + [args]
        out = b""
        for cmd in cmds:
            out += b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=LIVENESS) as s:
            s.sendall(out)
            f = s.makefile("rb")
            replies = [_read_reply(f) for _ in cmds]
        return replies[-1]

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(LIVENESS)
        self.log.close()


# ---- normd ----

class Server(harness.JsonServer):
    """harness.JsonServer with this test's shorthands."""

    def version(self, name):
        st, _, doc = self.call("GET", "/v1/layers/" + name)
        return doc.get("version") if st == 200 and doc else None

    def forward(self, name):
        return self.call("POST", "/v1/layers/%s/forward" % name, {"input": X})

    def step(self, name):
        return self.call("POST", "/v1/layers/%s/train-step" % name, STEP)


def metric(srv, name):
    """The value of an unlabelled metric of srv's /metrics, or None."""
    status, _, raw = srv.request("GET", "/metrics")
    for line in raw.decode().splitlines() if status == 200 else []:
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_for(cond):
    """Polls cond() until true or LIVENESS passes; its last value."""
    deadline = time.time() + LIVENESS
    while True:
        v = cond()
        if v or time.time() > deadline:
            return v
        time.sleep(0.05)


def code_of(doc):
    return ((doc or {}).get("error") or {}).get("code")


# ---- the checks ----

def test_bad_flags():
    exe = os.environ.get("NORMD", "build/normd")
    cases = [("--store", "nfs:/x", "dir:PATH or redis://"),
             ("--store", "redis://", "needs a host"),
             ("--store", "redis://h:0", "port"),
             ("--store", "redis://h:6379/x", "database"),
             ("--store", "redis://h:6379?timeout=1", "query"),
             ("--store", "dir:", "folder"),
             ("--store", "redis://user:s3cr3t@h:6379", "NORMD_REDIS_PASSWORD")]
    for flag, value, says in cases:
        p = subprocess.run([exe, flag, value], capture_output=True, timeout=LIVENESS)
        err = p.stderr.decode(errors="replace")
        check(p.returncode == 2 and says in err, "%s %s: exit %s, %r" % (flag, value,
                                                                       p.returncode, err))
        check("s3cr3t" not in err, "a password in the URL is not echoed: %r" % err)
    p = subprocess.run([exe, "--store", "redis://127.0.0.1:1", "--data-dir", "/tmp/x"],
                       capture_output=True, timeout=LIVENESS)
    check(p.returncode == 2 and b"two stores" in p.stderr,
          "--store redis:// with --data-dir: exit %s, %r" % (p.returncode, p.stderr))


def test_replicas(redis, a, b):
    st, _, doc = a.call("PUT", "/v1/layers/l1", DEFINITION)
    check(st == 201, "create on A: %s %s" % (st, doc))
    st, _, doc = b.call("GET", "/v1/layers/l1")
    check(st == 200 and doc.get("version") == 1, "B serves A's layer: %s %s" % (st, doc))
    fa, fb = a.forward("l1"), b.forward("l1")
    check(fa[0] == 200 and fa[2] == fb[2], "forward on A and B equal: %s %s" % (fa, fb))

    st, _, doc = a.step("l1")
    check(st == 200 and doc.get("version") == 2, "train-step on A: %s %s" % (st, doc))
    check(wait_for(lambda: b.version("l1") == 2), "B sees version 2 after A's step")
    fa, fb = a.forward("l1"), b.forward("l1")
    check(fa[0] == 200 and fa[2] == fb[2], "after the step, forwards on A and B equal")

    versions = []
    for i in range(6):
        st, _, doc = (b if i % 2 == 0 else a).step("l1")
        versions.append(doc.get("version") if st == 200 else (st, doc))
    check(versions == list(range(3, 9)), "alternate steps on B and A: versions %s" % versions)
    check(redis.cmd("GET", "normd:{l1}:version") == b"8", "Redis holds version 8 of l1")
    check(b"l1" in redis.cmd("SMEMBERS", "normd:layers"), "normd:layers lists l1")


def test_concurrent(a, b):
    """4 clients, 2 per replica, 10 steps each on one layer: every acknowledged version is
    distinct and the final version counts exactly the acknowledged steps."""
    a.call("PUT", "/v1/layers/hot", DEFINITION)
    results, lock = [], threading.Lock()

    def client(srv):
        for _ in range(10):
            st, _, doc = srv.step("hot")
            with lock:
                results.append((st, doc))
    threads = [threading.Thread(target=client, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked = sorted(d["version"] for st, d in results if st == 200)
    others = [(st, code_of(d)) for st, d in results if st != 200]
    check(all(o == (409, "conflict") for o in others), "only 200 or 409 conflict: %s" % others)
    check(len(acked) == len(set(acked)), "no version acknowledged twice: %s" % acked)
    check(acked == list(range(2, 2 + len(acked))), "versions without gaps: %s" % acked)
    check(wait_for(lambda: a.version("hot") == 1 + len(acked) == b.version("hot")),
          "final version %s on A, %s on B, %d steps acknowledged"
          % (a.version("hot"), b.version("hot"), len(acked)))


def test_stale(redis, a):
    """The store holds a version this copy was not changed from (written behind its back, no
    message): the compare-and-set refuses, and the store keeps its bytes."""
    a.call("PUT", "/v1/layers/cas", DEFINITION)
    check(a.step("cas")[0] == 200, "a first step")
    before = redis.cmd("GET", "normd:{cas}:state")
    redis.cmd("SET", "normd:{cas}:version", "99")
    retries = metric(a, "normd_store_retries_total")
    st, _, doc = a.step("cas")
    check(st == 409 and code_of(doc) == "conflict", "a lost compare-and-set: %s %s" % (st, doc))
    check(metric(a, "normd_store_retries_total") == retries + 7,
          "run 8 times in all (normd_store_retries_total %s, before %s)"
          % (metric(a, "normd_store_retries_total"), retries))
    check(redis.cmd("GET", "normd:{cas}:state") == before, "the store's bytes are unchanged")
    check(redis.cmd("GET", "normd:{cas}:version") == b"99", "the store's version is unchanged")
    redis.cmd("SET", "normd:{cas}:version", "2")
    st, _, doc = a.step("cas")
    check(st == 200 and doc.get("version") == 3, "with the versions agreeing again: %s %s"
          % (st, doc))


def test_delete_and_shared(redis, a, b):
    st, _, _ = a.call("PUT", "/v1/layers/gone", DEFINITION)
    check(st == 201 and b.version("gone") == 1, "created on A, seen on B")
    st, _, _ = b.call("DELETE", "/v1/layers/gone")
    check(st == 204, "delete on B: %s" % st)
    check(wait_for(lambda: a.call("GET", "/v1/layers/gone")[0] == 404), "A no longer has it")
    check(redis.cmd("EXISTS", "normd:{gone}:state", "normd:{gone}:version") == 0,
          "its keys are gone from Redis")
    check(b"gone" not in redis.cmd("SMEMBERS", "normd:layers"), "and from normd:layers")

    st, _, doc = a.call("PUT", "/v1/layers/sh", dict(DEFINITION,
                                                     arrays={"Scaling": {"shared": "g1"}}))
    check(st == 201, "a layer with a shared array: %s %s" % (st, doc))
    check(redis.cmd("EXISTS", "normd:shared:{g1}:state") == 1 and
          b"g1" in redis.cmd("SMEMBERS", "normd:shared"), "the shared array has its own keys")
    st, _, doc = b.step("sh")
    check(st == 200, "a step on B through the shared array: %s %s" % (st, doc))
    st, _, doc = wait_for(lambda: a.call("GET", "/v1/shared-arrays/g1")) or (0, 0, 0)
    _, _, on_b = b.call("GET", "/v1/shared-arrays/g1")
    check(st == 200 and doc.get("array") == (on_b or {}).get("array"),
          "A and B hold the same shared array after B's step")


def test_restart_replica(a, b):
    before = b.forward("l1")
    a.stop()
    a.start()
    check(a.version("l1") == 8, "a restarted replica loads l1 from Redis: version %s"
          % a.version("l1"))
    check(a.forward("l1")[2] == before[2], "and forwards as before")


def test_outage(redis, a, b):
    check(a.forward("l1")[0] == 200, "A holds l1 (cached)")
    last = a.version("l1")
    redis.stop(signal.SIGKILL)
    for srv, name in ((a, "A"), (b, "B")):
        st = wait_for(lambda: srv.call("GET", "/readyz")[0] == 503)
        _, _, doc = srv.call("GET", "/readyz")
        check(st and "redis://127.0.0.1:%d" % redis.port in json.dumps(doc),
              "%s: /readyz 503 naming the store: %s" % (name, doc))
        check(srv.call("GET", "/healthz")[0] == 200, "%s: /healthz still 200" % name)
        check(srv.call("GET", "/v2/health/ready")[0] == 503, "%s: /v2/health/ready 503" % name)
        check(metric(srv, "normd_store_up") == 0 and metric(srv, "normd_ready") == 0,
              "%s: normd_store_up and normd_ready 0" % name)
    st, _, doc = a.step("l1")
    check(st == 503 and code_of(doc) == "unavailable", "train-step: %s %s" % (st, doc))
    st, _, doc = a.forward("l1")
    check(st == 200, "forward of a cached layer: %s %s" % (st, doc))
    check(a.version("l1") == last, "the refused step changed nothing")
    b.stop()
    b.start()  # Kubernetes starts replicas before Redis: no refusal
    check(b.call("GET", "/readyz")[0] == 503, "a replica started without Redis: not ready")

    redis.start()
    for srv, name in ((a, "A"), (b, "B")):
        check(wait_for(lambda: srv.call("GET", "/readyz")[0] == 200),
              "%s: /readyz 200 once Redis is back" % name)
        check(metric(srv, "normd_store_up") == 1, "%s: normd_store_up 1 again" % name)
    check(b.version("l1") == last, "nothing acknowledged was lost: version %s, %s"
          % (b.version("l1"), last))
    st, _, doc = b.step("l1")
    check(st == 200 and doc.get("version") == last + 1, "writes work again: %s %s" % (st, doc))


def test_password(folder):
    """NORMD_REDIS_PASSWORD is sent with AUTH; a wrong one leaves the replica not ready."""
    redis = Redis(folder, password="pw-" + str(os.getpid()))
    url = "redis://127.0.0.1:%d" % redis.port
    servers = []
    try:
        for password, ready in ((redis.password, True), ("wrong", False)):
            os.environ["NORMD_REDIS_PASSWORD"] = password
            try:
                srv = Server("--store", url)
            finally:
                del os.environ["NORMD_REDIS_PASSWORD"]
            servers.append(srv)
            if ready:
                check(wait_for(lambda: srv.call("GET", "/readyz")[0] == 200),
                      "the right password: ready")
                st, _, doc = srv.call("PUT", "/v1/layers/p", DEFINITION)
                check(st == 201 and redis.cmd("GET", "normd:{p}:version") == b"1",
                      "the right password: a layer stored: %s %s" % (st, doc))
            else:
                time.sleep(0.5)
                check(srv.call("GET", "/readyz")[0] == 503, "a wrong password: not ready")
                st, _, doc = srv.call("PUT", "/v1/layers/q", DEFINITION)
                check(st == 503 and code_of(doc) == "unavailable" and
                      "wrong" not in json.dumps(doc), "a wrong password: 503 %s %s" % (st, doc))
    finally:
        for srv in servers:
            check(srv.stop() == 0, "normd exits 0 on SIGTERM")
        redis.stop()


def main():
    if not shutil.which("redis-server") and not os.path.exists("/usr/bin/redis-server"):
        if os.environ.get("CI") == "true":
            print("redis_store: redis-server is not installed (needed in CI)", file=sys.stderr)
            return 1
        print("SKIP redis_store: redis-server is not installed (apt-get install redis-server)")
        return 0
    test_bad_flags()
    folder = tempfile.mkdtemp(prefix="normd-redis-")
    redis = Redis(folder)
    servers = []
    try:
        url = "redis://127.0.0.1:%d" % redis.port
        a, b = Server("--store", url), Server("--store", url)
        servers = [a, b]
        for srv in servers:
            check(wait_for(lambda: srv.call("GET", "/readyz")[0] == 200), "ready with Redis")
        test_replicas(redis, a, b)
        test_concurrent(a, b)
        test_stale(redis, a)
        test_delete_and_shared(redis, a, b)
        test_restart_replica(a, b)
        test_outage(redis, a, b)
    finally:
        for srv in servers:
            check(srv.stop() == 0, "normd exits 0 on SIGTERM")
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
    folder = tempfile.mkdtemp(prefix="normd-redis-auth-")
    try:
        test_password(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return summary("redis_store")


if __name__ == "__main__":
    sys.exit(main())

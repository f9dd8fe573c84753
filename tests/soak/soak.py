#!/usr/bin/python3
"""soak.py - run normd under a mixed workload for a while and watch it for 5xx, dropped
connections and growing memory or file descriptors.

    tests/soak/soak.py [--seconds N] [--connections C] [--names K] [-- normd flags...]

Starts $NORMD (default build/normd) on 127.0.0.1 and a free port, drives it with C client
threads (each one persistent HTTP/1.1 connection) for N seconds, samples the server's VmRSS
and open fds every 2 s, prints a report and exits 0 (PASS) or 1 (FAIL). See README.md here for
the pass/fail rules. Standard library only.
"""

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
SAMPLE_EVERY = 2.0           # seconds between RSS/fd samples
PROGRESS_EVERY = 10.0        # seconds between progress lines
REQUEST_TIMEOUT = 30.0       # a reply slower than this is a failure (a stall), not a wait
MAX_REQUESTS_PER_SECOND = 50_000   # a bound on the loop's count, far above what 2 cores do
RSS_SLACK_FRACTION = 0.10    # RSS growth allowed after warm-up: max(10%, 16 MiB)
RSS_SLACK_BYTES = 16 << 20
FD_SLACK = 4                 # fd growth allowed after warm-up, and after the clients leave
STOP_GRACE = 15.0            # seconds between SIGTERM and SIGKILL

# Non-2xx answers the workload provokes on purpose: a layer deleted by another thread (404),
# a concurrent change (409/412), the layer limit (429). Any other 4xx means this script sent
# something the server should have accepted, so the soak would not test what it claims.
EXPECTED_NON2XX = {404, 409, 412, 429}


# ---- the workload ----------------------------------------------------------------------------

def tensor(rng, shape):
    """A nested list of floats of the given shape, rounded so the JSON stays short."""
    if len(shape) == 1:
        return [round(rng.uniform(-2.0, 2.0), 3) for _ in range(shape[0])]
    return [tensor(rng, shape[1:]) for _ in range(shape[0])]


# One entry per layer kind: its definition, the batch shapes of its forward and train-step,
# and the keys its extract asks for (only arrays the kind has: others would be a 404).
KINDS = {
    "bn": {"definition": {"type": "BatchNormalization", "input": [64]},
           "forward": [1, 64], "train": [16, 64], "extract": ["Scaling", "MovingMean"]},
    "ln": {"definition": {"type": "LayerNormalization", "input": [256]},
           "forward": [32, 256], "train": [8, 256], "extract": ["Scaling", "Biases"]},
    "gn": {"definition": {"type": "GroupNormalization", "input": [32, 8],
                          "options": {"groups": 4}},
           "forward": [4, 32, 8], "train": [4, 32, 8], "extract": ["Scaling", "Biases"]},
    "bn3": {"definition": {"type": "BatchNormalization", "convention": "pytorch",
                           "input": [16, 4, 4]},
            "forward": [2, 16, 4, 4], "train": [8, 16, 4, 4],
            "extract": ["Scaling", "MovingMean", "MovingVariance"]},
    "rms": {"definition": {"type": "RMSNormalization", "convention": "pytorch", "input": [128]},
            "forward": [1, 128], "train": [8, 128], "extract": ["Scaling"]},
}


def build_bodies(seed=1, variants=4):
    """Encodes every request body once: the clients then spend their time waiting on the
    server, not in json.dumps (the client shares the machine's 2 cores with the server)."""
    rng = random.Random(seed)
    bodies = {}
    for kind, k in KINDS.items():
        bodies[kind] = {
            "create": json.dumps(k["definition"]).encode(),
            "forward": [json.dumps({"input": tensor(rng, k["forward"])}).encode()
                        for _ in range(variants)],
            "train": [json.dumps({"input": tensor(rng, k["train"]),
                                  "output_gradient": tensor(rng, k["train"]),
                                  "optimizer": {"type": "adam"},
                                  "return": ["output", "input_gradient"] if i % 2 else
                                            ["version"]}).encode()
                      for i in range(variants)],
            "extract": json.dumps({"keys": k["extract"]}).encode(),
        }
    return bodies


def layer_names(count):
    """count names, kinds in turn; a name keeps its kind across deletes and re-creates so a
    request never meets a layer of another shape (that would be a 422, not a soak finding)."""
    kinds = list(KINDS)
    return [("soak-%02d" % i, kinds[i % len(kinds)]) for i in range(count)]


# (operation, weight): mostly forwards and train-steps, with enough replaces and deletes to
# churn the layer table and the allocator. A delete is followed at once by the re-create on
# the same connection, so a name is missing only briefly and most requests do real work; the
# 404s left are the races with other connections, which is what the soak wants to provoke.
OPERATIONS = [("forward", 40), ("train-step", 22), ("extract", 10), ("get", 6),
              ("replace", 4), ("delete", 6), ("list", 4), ("metrics", 2), ("healthz", 2)]


def plan(op, name, kind, bodies, rng):
    """The requests of one operation: a list of (route label, method, path, body)."""
    if op == "delete":
        return [("DELETE layer", "DELETE", "/v1/layers/" + name, None),
                ("PUT layer (re-create)", "PUT", "/v1/layers/" + name, bodies[kind]["create"])]
    return [plan_one(op, name, kind, bodies, rng)]


def plan_one(op, name, kind, bodies, rng):
    """(route label, method, path, body) of one request."""
    b = bodies[kind]
    base = "/v1/layers/" + name
    if op == "forward":
        shape = "x".join(map(str, KINDS[kind]["forward"]))
        return "forward %s %s" % (kind, shape), "POST", base + "/forward", rng.choice(b["forward"])
    if op == "train-step":
        return "train-step adam " + kind, "POST", base + "/train-step", rng.choice(b["train"])
    if op == "extract":
        return "extract " + kind, "POST", base + "/extract", b["extract"]
    if op == "get":
        return "GET layer", "GET", base, None
    if op == "replace":
        return "PUT layer (replace)", "PUT", base, b["create"]
    if op == "list":
        return "GET /v1/layers", "GET", "/v1/layers", None
    if op == "metrics":
        return "GET /metrics", "GET", "/metrics", None
    return "GET /healthz", "GET", "/healthz", None


def shape_of(nested):
    """The shape of a rectangular nested list, read along its first elements."""
    shape = []
    while isinstance(nested, list):
        shape.append(len(nested))
        nested = nested[0] if nested else None
    return shape


def check_reply(route, method, data, kind, rng):
    """A 2xx reply's body must be what the route promises: JSON, and a forward's output must
    have the batch's shape (a torn or truncated reply under load is a real failure). Parsing a
    32x256 reply costs the client 1.5 ms, so big replies are parsed 1 in 8 and otherwise only
    checked to be a whole JSON object: the clients share the 2 cores with normd."""
    if method == "DELETE" or route == "GET /metrics":
        return None
    if len(data) > 16384 and rng.random() >= 0.125:
        if data[:1] == b"{" and data.rstrip()[-1:] == b"}":
            return None
        return "%s: reply is not a whole JSON object: %r...%r" % (route, data[:60], data[-60:])
    try:
        doc = json.loads(data)
    except ValueError as e:
        return "%s: reply is not JSON (%s): %r" % (route, e, data[:120])
    if route.startswith("forward") and shape_of(doc.get("output")) != KINDS[kind]["forward"]:
        return "%s: output shape %s: %r" % (route, shape_of(doc.get("output")), data[:120])
    return None


class Client(threading.Thread):
    """One persistent connection issuing requests until the deadline or its request budget.
    Counts stay in the thread (no lock on the hot path); the main thread reads them at the
    end, and reads `done` (a plain int) for progress lines."""

    def __init__(self, idx, port, names, bodies, deadline, budget, stop):
        super().__init__(name="client-%d" % idx, daemon=True)
        self.port, self.names, self.bodies = port, names, bodies
        self.deadline, self.budget, self.stop = deadline, budget, stop
        self.rng = random.Random(1000 + idx)
        self.ops = [op for op, w in OPERATIONS for _ in range(w)]
        self.counts = {}        # (route, status) -> n; status is an int or "conn-error"
        self.latency = {}       # route -> [seconds]
        self.errors = []        # first few failure messages
        self.failures = 0       # 5xx, unexpected 4xx, bad bodies, connection errors
        self.connects = 0
        self.done = 0
        self.conn = None

    def run(self):
        try:
            while (not self.stop.is_set() and self.done < self.budget
                   and time.monotonic() < self.deadline):
                self.one_operation()
        finally:
            if self.conn:
                self.conn.close()

    def one_operation(self):
        name, kind = self.rng.choice(self.names)
        for route, method, path, body in plan(self.rng.choice(self.ops), name, kind,
                                              self.bodies, self.rng):
            self.one_request(route, method, path, body, kind)

    def one_request(self, route, method, path, body, kind):
        if self.conn is None or self.conn.sock is None:
            # http.client reconnects by itself; count it: under steady keep-alive load a
            # growing number of connects means the server is closing connections.
            self.connects += 1
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        t0 = time.monotonic()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.record(route, "conn-error", time.monotonic() - t0,
                        "%s %s: %s: %s" % (method, path, type(e).__name__, e))
            self.conn.close()   # the next request starts a fresh connection
            return
        status = resp.status
        problem = None
        if status >= 500:
            problem = "%s %s: %d %s" % (method, path, status, data[:200])
        elif status >= 300 and status not in EXPECTED_NON2XX:
            problem = "%s %s: unexpected %d %s" % (method, path, status, data[:200])
        elif status < 300:
            problem = check_reply(route, method, data, kind, self.rng)
        self.record(route, status, time.monotonic() - t0, problem)

    def record(self, route, status, seconds, problem):
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.latency.setdefault(route, []).append(seconds)
        self.done += 1
        if problem:
            self.failures += 1
            if len(self.errors) < 5:
                self.errors.append(problem)


# ---- the server ------------------------------------------------------------------------------

def free_port():
    """A port the kernel just handed out: bound to port 0, then released. Another process
    could take it before normd binds, so start_server retries."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def healthy(port):
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=1.0)
        c.request("GET", "/healthz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def start_server(binary, flags, log):
    """Starts normd on a free loopback port; returns (Popen, port). Retries with another port
    when normd exits early (the port was taken in between), but not on exit status 2: that is
    normd rejecting a flag, which another port will not fix."""
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen([binary, "--host", HOST, "--port", str(port)] + flags,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        for _ in range(100):
            if healthy(port):
                return proc, port
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        stop_server(proc)
        if proc.returncode == 2:
            break
    raise RuntimeError("cannot start %s (see its log below)" % binary)


def stop_server(proc):
    """SIGTERM by PID, wait for the drain; SIGKILL if it does not exit. Returns the exit
    status (negative: killed by that signal)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "killed after %.0f s without exiting on SIGTERM" % STOP_GRACE
    return proc.returncode


def sample(pid):
    """(RSS bytes, open fds) of pid, or None if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, StopIteration):
        return None


def cpu_seconds(pid):
    """User + system CPU seconds pid has used (fields 14 and 15 of /proc/PID/stat; the
    command name before them may hold spaces, hence the split at its closing parenthesis)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def create_all(port, names, bodies):
    """Creates every layer once before the load, so the first forwards find them."""
    c = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        for name, kind in names:
            c.request("PUT", "/v1/layers/" + name, body=bodies[kind]["create"],
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            if r.status not in (200, 201):
                raise RuntimeError("setup PUT %s: %d %s" % (name, r.status, data[:200]))
    finally:
        c.close()


# ---- the run ---------------------------------------------------------------------------------

def run_load(proc, port, args, names, bodies):
    """Runs the clients for args.seconds while sampling the server. Returns (clients,
    samples, elapsed, notes); samples are (t, rss, fds) taken after the warm-up."""
    warmup = max(10.0, 0.1 * args.seconds)
    stop = threading.Event()
    start = time.monotonic()
    deadline = start + args.seconds
    budget = int(MAX_REQUESTS_PER_SECOND * args.seconds / args.connections) + 1
    clients = [Client(i, port, names, bodies, deadline, budget, stop)
               for i in range(args.connections)]
    for c in clients:
        c.start()
    samples, notes = [], []
    next_sample, next_progress, last_done = start + SAMPLE_EVERY, start + PROGRESS_EVERY, 0
    while any(c.is_alive() for c in clients) and time.monotonic() < deadline + REQUEST_TIMEOUT:
        # Sleep to the next sample; past the deadline, poll the clients' exit gently.
        time.sleep(max(0.1, min(next_sample, deadline) - time.monotonic()))
        now = time.monotonic()
        if proc.poll() is not None:
            notes.append("server exited during the load with status %s" % proc.returncode)
            stop.set()
            break
        if now >= next_sample:
            next_sample += SAMPLE_EVERY
            s = sample(proc.pid)
            if s and now - start >= warmup and now <= deadline:
                samples.append((now - start, s[0], s[1]))
        if now >= next_progress:
            next_progress += PROGRESS_EVERY
            done = sum(c.done for c in clients)
            s = sample(proc.pid) or (0, 0)
            print("  %5.0f s  %8d requests  %7.0f req/s  rss %6.1f MiB  fds %d"
                  % (now - start, done, (done - last_done) / PROGRESS_EVERY, s[0] / 2**20, s[1]),
                  flush=True)
            if done == last_done and now < deadline:
                notes.append("stall: no request completed between %.0f s and %.0f s"
                             % (now - start - PROGRESS_EVERY, now - start))
            last_done = done
    stop.set()
    for c in clients:
        c.join(REQUEST_TIMEOUT)
    stuck = [c.name for c in clients if c.is_alive()]
    if stuck:
        notes.append("clients still waiting for a reply after the run: %s" % ", ".join(stuck))
    return clients, samples, time.monotonic() - start, notes


def settle_fds(pid, baseline, seconds=5.0):
    """fds once the clients have closed their connections: polled until back within the
    slack of the count before the load, or seconds pass (closing is asynchronous)."""
    end = time.monotonic() + seconds
    while True:
        s = sample(pid)
        if s is None or s[1] <= baseline + FD_SLACK or time.monotonic() >= end:
            return s
        time.sleep(0.2)


def growth(values):
    """(median of the first third, median of the last third): robust to a single spike."""
    third = max(1, len(values) // 3)
    return statistics.median(values[:third]), statistics.median(values[-third:])


def merge(clients):
    counts, latency, errors, failures, connects = {}, {}, [], 0, 0
    for c in clients:
        for k, v in c.counts.items():
            counts[k] = counts.get(k, 0) + v
        for k, v in c.latency.items():
            latency.setdefault(k, []).extend(v)
        errors += c.errors
        failures += c.failures
        connects += c.connects
    return counts, latency, errors, failures, connects


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def print_table(counts, latency, elapsed):
    routes = sorted({r for r, _ in counts})
    statuses = sorted({s for _, s in counts}, key=str)
    print("\n%-30s %s %9s %8s %8s %8s" % ("route", " ".join("%7s" % s for s in statuses),
                                          "req/s", "p50 ms", "p99 ms", "max ms"))
    for r in routes:
        lat = sorted(latency[r])
        print("%-30s %s %9.1f %8.2f %8.2f %8.1f" % (
            r, " ".join("%7d" % counts.get((r, s), 0) for s in statuses),
            len(lat) / elapsed, 1000 * percentile(lat, 0.5), 1000 * percentile(lat, 0.99),
            1000 * lat[-1]))
    total = sum(counts.values())
    print("%-30s %s %9.1f" % ("total", " ".join("%7d" % sum(v for (_, s), v in counts.items()
                                                              if s == st) for st in statuses),
                              total / elapsed))


def mib(b):
    return "%.1f MiB" % (b / 2**20)


def verdict(checks):
    """Prints one line per check and the final line; returns the exit status."""
    print()
    for ok, text in checks:
        print("  %s  %s" % ("PASS" if ok else "FAIL", text))
    passed = sum(1 for ok, _ in checks if ok)
    failed = len(checks) - passed
    print("\nsoak: %d passed, %d failed -- %s" % (passed, failed, "PASS" if not failed else "FAIL"))
    return 0 if not failed else 1


def judge(before, samples, after, counts, errors, failures, notes, exit_status, connects, conns):
    """The checks, each (ok, description)."""
    checks = []
    n5xx = sum(v for (_, s), v in counts.items() if isinstance(s, int) and s >= 500)
    nconn = sum(v for (_, s), v in counts.items() if s == "conn-error")
    checks.append((n5xx == 0, "no 5xx answers (%d)" % n5xx))
    checks.append((nconn == 0, "no connection errors or timeouts > %.0f s (%d)"
                   % (REQUEST_TIMEOUT, nconn)))
    other = failures - n5xx - nconn
    checks.append((other == 0, "no unexpected 4xx or malformed replies (%d)" % other))
    checks.append((not notes, "server alive and answering throughout"
                   + ("" if not notes else ": " + "; ".join(notes))))
    if len(samples) >= 3:
        r0, r1 = growth([s[1] for s in samples])
        limit = max(RSS_SLACK_FRACTION * r0, RSS_SLACK_BYTES)
        checks.append((r1 - r0 <= limit, "RSS steady after warm-up: median %s -> %s "
                       "(+%s, limit +%s)" % (mib(r0), mib(r1), mib(r1 - r0), mib(limit))))
        f0, f1 = growth([s[2] for s in samples])
        checks.append((f1 - f0 <= FD_SLACK, "fds steady after warm-up: median %g -> %g "
                       "(limit +%d)" % (f0, f1, FD_SLACK)))
    else:
        checks.append((False, "too few samples after warm-up (%d) to judge growth: run longer"
                       % len(samples)))
    if after:
        checks.append((after[1] <= before[1] + FD_SLACK, "fds back after the clients closed: "
                       "%d before the load, %d after (limit +%d)"
                       % (before[1], after[1], FD_SLACK)))
    if exit_status is not None:   # None: it had died already (reported above), no SIGTERM
        checks.append((exit_status == 0, "clean exit on SIGTERM (status %s)" % exit_status))
    if connects > conns:
        print("note: %d connections opened for %d clients (the server closed %d)"
              % (connects, conns, connects - conns))
    for e in errors[:10]:
        print("error: " + e)
    return checks


def report(before, samples, after, warmup):
    print("\nserver memory and fds (samples every %.0f s after a %.0f s warm-up: %d)"
          % (SAMPLE_EVERY, warmup, len(samples)))
    print("  %-22s %12s %6s" % ("", "RSS", "fds"))
    print("  %-22s %12s %6d" % ("before the load", mib(before[0]), before[1]))
    if samples:
        peak = max(samples, key=lambda s: s[1])
        print("  %-22s %12s %6d" % ("warm-up end (%.0f s)" % samples[0][0], mib(samples[0][1]),
                                    samples[0][2]))
        print("  %-22s %12s %6d" % ("peak RSS (%.0f s)" % peak[0], mib(peak[1]), peak[2]))
        print("  %-22s %12s %6d" % ("peak fds", "", max(s[2] for s in samples)))
        print("  %-22s %12s %6d" % ("end (%.0f s)" % samples[-1][0], mib(samples[-1][1]),
                                    samples[-1][2]))
    if after:
        print("  %-22s %12s %6d" % ("clients closed", mib(after[0]), after[1]))


def parse_args(argv):
    """soak.py's own flags before `--`, normd's after it."""
    own, flags = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float,
                   default=float(os.environ.get("SOAK_SECONDS") or 60))
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--names", type=int, default=50)
    args = p.parse_args(own)
    if args.seconds <= 0 or args.connections <= 0 or args.names <= 0:
        p.error("--seconds, --connections and --names must be positive")
    # Request logs at info are one line per request; warn keeps the log small unless asked.
    if not any(f == "--log-level" or f.startswith("--log-level=") for f in flags):
        flags = ["--log-level", "warn"] + flags
    return args, flags


def on_sigterm(signum, frame):
    # Turned into an exception so the finally in main stops the server on every exit path.
    raise KeyboardInterrupt


def main(argv):
    args, flags = parse_args(argv)
    binary = os.environ.get("NORMD") or "build/normd"
    if not os.access(binary, os.X_OK):
        print("soak: %s is not an executable (set NORMD or run make)" % binary, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_sigterm)
    log = tempfile.TemporaryFile(mode="w+b")
    proc = None
    try:
        proc, port = start_server(binary, flags, log)
        print("soak: %s %s on %s:%d (pid %d), %.0f s, %d connections, %d layers"
              % (binary, " ".join(flags), HOST, port, proc.pid, args.seconds,
                 args.connections, args.names), flush=True)
        status = soak(proc, port, args)
    except KeyboardInterrupt:
        print("soak: interrupted -- FAIL", file=sys.stderr)
        status = 1
    except RuntimeError as e:
        print("soak: %s -- FAIL" % e, file=sys.stderr)
        status = 1
    finally:
        # Every exit path stops the server by its PID (an exception still propagating too).
        if proc is not None and proc.poll() is None:
            stop_server(proc)
    if status:
        log.seek(0)
        tail = log.read()[-3000:].decode(errors="replace")
        if tail:
            print("\nlast lines of the server's log:\n" + tail)
    log.close()
    return status


def soak(proc, port, args):
    """Setup, load, stop, report; returns the exit status."""
    names, bodies = layer_names(args.names), build_bodies()
    create_all(port, names, bodies)
    before = sample(proc.pid)
    cpu0, own0 = cpu_seconds(proc.pid), os.times()
    clients, samples, elapsed, notes = run_load(proc, port, args, names, bodies)
    cpu1, own1 = cpu_seconds(proc.pid), os.times()
    died = proc.poll() is not None
    after = settle_fds(proc.pid, before[1]) if not died else None
    exit_status = stop_server(proc)
    counts, latency, errors, failures, connects = merge(clients)
    print_table(counts, latency, elapsed)
    report(before, samples, after, max(10.0, 0.1 * args.seconds))
    # Who was busy: on a small machine the Python clients can be the bottleneck, not normd.
    own = (own1.user + own1.system) - (own0.user + own0.system)
    if not died:
        print("  CPU during the load: normd %.2f cores, the clients %.2f cores (of %d)"
              % ((cpu1 - cpu0) / elapsed, own / elapsed, os.cpu_count()))
    checks = judge(before, samples, after, counts, errors, failures, notes,
                   None if died else exit_status, connects, args.connections)
    return verdict(checks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

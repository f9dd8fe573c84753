#!/usr/bin/env python3
"""test_defaults.py - safe by default (issue 9, section 6), against the real binary.

The bare binary listens on 127.0.0.1 only (read back from /proc/net/tcp); a non-loopback --host
without --api-key logs a warning at start. Tests never listen beyond loopback: the warning is
checked with 192.0.2.1 (TEST-NET-1, assigned to no machine), whose bind fails after the warning.

  NORMD=build/normd tests/server/test_defaults.py

Standard library only. Prints "defaults: N passed, M failed".
"""
import os
import subprocess
import sys
import time
import urllib.request

from harness import check, free_port, summary  # noqa: E402 (tests/server/harness.py)

NORMD = os.environ.get("NORMD", "build/normd")



def listening_addresses(port):
    """The local addresses of the TCP sockets listening on port (IPv4 and IPv6, as hex)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            addr, p = f[1].split(":")
            if int(p, 16) == port and f[3] == "0A":  # 0A: LISTEN
                found.append(addr)
    return found


def run(args, env=None, seconds=20.0):
    """Starts normd; returns (proc, port) once /healthz answers, or (proc, None) if it exited."""
    port = free_port()
    proc = subprocess.Popen([NORMD, "--port", str(port), "--log-level", "info"] + args,
                            stderr=subprocess.PIPE, env=env)
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            return proc, None
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=2).read()
            return proc, port
        except OSError:
            time.sleep(0.05)
    return proc, None


def stop(proc):
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode("utf-8", "replace")


def main():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORMD_")}
    proc, port = run([], env=env)
    check(port is not None, "the bare binary starts and answers on 127.0.0.1")
    if port:
        addrs = listening_addresses(port)
        # one socket per HTTP loop (SO_REUSEPORT), all on 127.0.0.1
        check(addrs and set(addrs) == {"0100007F"},
              "the bare binary listens on 127.0.0.1 only, got %s" % addrs)
    log = stop(proc)
    check("no --api-key" not in log, "no warning on loopback: %s" % log)

    proc, port = run(["--host", "192.0.2.1"], env=env)
    log = stop(proc) if proc.poll() is None else proc.communicate()[1].decode("utf-8", "replace")
    check(port is None, "192.0.2.1 is no address of this machine: the bind fails")
    check("--host 192.0.2.1 with no --api-key" in log and "WARN" in log.upper(),
          "a non-loopback host without a key is warned about: %r" % log)

    proc, port = run(["--host", "192.0.2.1", "--api-key", "k" * 40], env=env)
    log = stop(proc) if proc.poll() is None else proc.communicate()[1].decode("utf-8", "replace")
    check("no --api-key" not in log and "k" * 40 not in log,
          "with a key: no warning, and the key is never printed: %r" % log)

    return summary("defaults")


if __name__ == "__main__":
    sys.exit(main())

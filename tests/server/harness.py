"""harness.py - what the Python tests of tests/server/ share: the pass/fail tally, its summary
line, and a free loopback port. Standard library only; imported from the test's own folder."""
import socket
import sys

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

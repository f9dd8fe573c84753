#!/usr/bin/env python3
"""test_history.py - GET /v1/layers/{name}/history against the real binary.

Train-steps with a target, with an output gradient and with neither (moving statistics only),
each asking for "return": ["batch_statistics"]: every record's version, train_step, loss,
optimizer and learning rate equal what the step answered, and its norms are the L2 norms of the
statistics it returned (computed here). A frozen layer's steps and refused steps record nothing;
300 steps keep the newest 256 (total 300, the oldest dropped); limit keeps the newest N and is
refused outside 1..256; an unknown layer is 404; PUT starts an empty history; the history
survives a restart with --data-dir, bit for bit.

  NORMD=build/normd python3 tests/server/test_history.py

Standard library only. Prints "history: N passed, M failed".
"""
import math
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402 (tests/server/harness.py)
from harness import check, summary  # noqa: E402

CAPACITY = 256


Server = harness.JsonServer


def norm(values):
    """L2 norm of a (possibly nested) list of numbers."""
    flat = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        else:
            flat.append(float(v))
    walk(values)
    return math.sqrt(sum(x * x for x in flat))


def close(a, b, rel=1e-5):
    return a is not None and b is not None and abs(a - b) <= rel * max(1.0, abs(b))


def batch(n, c, k):
    """A batch of n examples of c values, fixed by k."""
    return [[round(((i * 7 + j * 3 + k * 5) % 13) / 4.0 - 1.5, 3) for j in range(c)]
            for i in range(n)]


def define(srv, name, definition):
    st, _, doc = srv.call("PUT", "/v1/layers/" + name, definition)
    check(st in (200, 201), "define %s: %s %s" % (name, st, doc))


def history(srv, name, query=""):
    return srv.call("GET", "/v1/layers/%s/history%s" % (name, query))


# ---- values of each record ----

def step(srv, name, body):
    body = dict(body, **{"return": ["batch_statistics"]})
    st, _, doc = srv.call("POST", "/v1/layers/%s/train-step" % name, body)
    check(st == 200, "train-step %s: %s %s" % (name, st, doc))
    return doc or {}


def check_record(rec, answer, train_step, loss, optimizer, lr, what):
    check(rec["version"] == answer.get("version"), "%s: version %s, step answered %s" %
          (what, rec["version"], answer.get("version")))
    check(rec["train_step"] == train_step, "%s: train_step %s" % (what, rec["train_step"]))
    check(isinstance(rec["time"], float) and abs(rec["time"] - time.time()) < 3600,
          "%s: time %s is not now" % (what, rec["time"]))
    if loss:
        check(close(rec["loss"], answer.get("loss")), "%s: loss %s vs %s" %
              (what, rec["loss"], answer.get("loss")))
    else:
        check(rec["loss"] is None, "%s: loss %s without a target" % (what, rec["loss"]))
    stats = answer.get("batch_statistics") or {}
    check(close(rec["batch_mean_norm"], norm(stats.get("mean", []))),
          "%s: batch_mean_norm %s vs %s" % (what, rec["batch_mean_norm"],
                                            norm(stats.get("mean", []))))
    check(close(rec["batch_variance_norm"], norm(stats.get("variance", []))),
          "%s: batch_variance_norm %s vs %s" % (what, rec["batch_variance_norm"],
                                                norm(stats.get("variance", []))))
    check(rec["optimizer"] == optimizer, "%s: optimizer %s" % (what, rec["optimizer"]))
    check(rec["learning_rate"] == lr, "%s: learning_rate %s" % (what, rec["learning_rate"]))


def test_values(srv):
    define(srv, "bn", {"type": "BatchNormalization", "input": [3]})
    define(srv, "norm", {"type": "Normalization", "input": [2, 3],
                         "options": {"aggregation_levels": "All"}})
    for name, c in (("bn", 3), ("norm", 6)):
        shape = (lambda b: b) if name == "bn" else (lambda b: [[r[:3], r[3:]] for r in b])
        x, y = shape(batch(4, c, 1)), shape(batch(4, c, 2))
        answers = [
            step(srv, name, {"input": x, "target": y,
                             "optimizer": {"type": "adam", "learning_rate": 0.02}}),
            step(srv, name, {"input": y, "output_gradient": x,
                             "optimizer": {"type": "sgd", "learning_rate": 0.5}}),
        ]
        if name == "bn":  # moving statistics only: a step without a gradient
            answers.append(step(srv, name, {"input": shape(batch(4, c, 3))}))
        st, hdrs, doc = history(srv, name)
        check(st == 200, "history of %s: %s" % (name, st))
        if st != 200:
            continue
        recs = doc["records"]
        check(doc["name"] == name and doc["capacity"] == CAPACITY, "%s: header %s" % (name, doc))
        check(doc["total"] == len(answers) and len(recs) == len(answers),
              "%s: %s records, total %s" % (name, len(recs), doc["total"]))
        check(hdrs.get("etag") == '"%d"' % answers[-1].get("version", -1),
              "%s: ETag %s" % (name, hdrs.get("etag")))
        if len(recs) != len(answers):
            continue
        check_record(recs[0], answers[0], 1, True, "adam", 0.02, name + " target")
        check_record(recs[1], answers[1], 2, False, "sgd", 0.5, name + " gradient")
        if name == "bn":
            check_record(recs[2], answers[2], 3, False, None, None, name + " statistics only")
            check(sorted(recs[2]) == sorted(["version", "train_step", "time", "loss",
                                             "batch_mean_norm", "batch_variance_norm",
                                             "optimizer", "learning_rate"]),
                  "record keys: %s" % sorted(recs[2]))
        check(recs[0]["time"] <= recs[-1]["time"], "%s: times out of order" % name)


def test_nothing_recorded(srv):
    define(srv, "frozen", {"type": "BatchNormalization", "input": [2], "options":
                           {"trainable": False}})
    st, _, doc = srv.call("POST", "/v1/layers/frozen/train-step",
                          {"input": batch(3, 2, 1), "output_gradient": batch(3, 2, 2)})
    check(st == 200, "frozen train-step: %s %s" % (st, doc))
    st, _, doc = history(srv, "frozen")
    check(st == 200 and doc["records"] == [] and doc["total"] == 0,
          "a frozen layer records nothing: %s %s" % (st, doc))
    st, _, _ = srv.call("POST", "/v1/layers/bn/train-step",
                        {"input": batch(3, 4, 1), "output_gradient": batch(3, 4, 1)})
    check(st == 400 or st == 422, "a step of the wrong shape is refused: %s" % st)
    st, _, doc = history(srv, "bn")
    check(st == 200 and doc["total"] == 3, "a refused step records nothing: %s" % doc["total"])


def test_ring_and_limit(srv):
    define(srv, "ring", {"type": "BatchNormalization", "input": [2]})
    versions = []
    for k in range(300):
        doc = step(srv, "ring", {"input": batch(2, 2, k), "output_gradient": batch(2, 2, k + 1),
                                 "optimizer": {"type": "sgd", "learning_rate": 0.001}})
        versions.append(doc.get("version"))
    st, _, doc = history(srv, "ring")
    recs = doc["records"] if st == 200 else []
    check(st == 200 and doc["total"] == 300 and len(recs) == CAPACITY,
          "300 steps: %s records, total %s" % (len(recs), doc and doc.get("total")))
    check([r["version"] for r in recs] == versions[-CAPACITY:],
          "the newest 256 are kept, oldest first")
    check(recs and recs[0]["train_step"] == 300 - CAPACITY + 1,
          "the oldest 44 fell out: first train_step %s" % (recs and recs[0]["train_step"]))
    for limit in (1, 5, CAPACITY):
        st, _, doc = history(srv, "ring", "?limit=%d" % limit)
        got = [r["version"] for r in doc["records"]] if st == 200 else None
        check(got == versions[-limit:] and doc["total"] == 300,
              "limit=%d keeps the newest %d" % (limit, limit))
    for bad in ("0", "257", "-1", "x", "", "1.5", "99999"):
        st, _, doc = history(srv, "ring", "?limit=" + bad)
        err = (doc or {}).get("error", {})
        check(st == 422 and err.get("code") == "invalid_value" and err.get("field") == "limit",
              "limit=%r: %s %s" % (bad, st, err))
    st, _, doc = history(srv, "ring", "?since=3")
    check(st == 422 and doc["error"]["code"] == "unknown_field", "an unknown parameter: %s" % st)
    st, _, doc = history(srv, "nope")
    check(st == 404 and doc["error"]["code"] == "not_found", "unknown layer: %s %s" % (st, doc))
    # PUT replaces the layer: its history starts empty.
    define(srv, "ring", {"type": "BatchNormalization", "input": [2]})
    st, _, doc = history(srv, "ring")
    check(st == 200 and doc["records"] == [] and doc["total"] == 0,
          "a replaced layer starts an empty history: %s" % (doc and doc.get("total")))


def test_restart(data):
    srv = Server("--data-dir", data)
    try:
        define(srv, "kept", {"type": "LayerNormalization", "input": [3]})
        for k in range(5):
            step(srv, "kept", {"input": batch(2, 3, k), "target": batch(2, 3, k + 2),
                               "optimizer": {"type": "adam", "learning_rate": 0.003}})
        st, _, before = history(srv, "kept")
        check(st == 200 and before["total"] == 5, "history before the restart")
    finally:
        check(srv.stop() == 0, "normd exits 0 on SIGTERM")
    srv = Server("--data-dir", data)
    try:
        st, _, after = history(srv, "kept")
        check(st == 200 and after == before, "the history survives a restart bit for bit")
        step(srv, "kept", {"input": batch(2, 3, 9), "output_gradient": batch(2, 3, 1)})
        st, _, again = history(srv, "kept")
        check(st == 200 and again["total"] == 6 and again["records"][:5] == before["records"],
              "a step after the restart appends")
    finally:
        srv.stop()


def main():
    srv = Server()
    try:
        test_values(srv)
        test_nothing_recorded(srv)
        test_ring_and_limit(srv)
    finally:
        check(srv.stop() == 0, "normd exits 0 on SIGTERM")
    data = tempfile.mkdtemp(prefix="normd-history-")
    try:
        test_restart(data)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return summary("history")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""test_export.py - a layer leaves and comes back whole (API.md 2.4), against the real binary.

Every kind and convention is trained a few steps with adam and with sgd + momentum, exported
(JSON and binary) and imported under new names; the next train-step must then answer bit for bit
what the original answers (outputs, gradients, arrays and batch statistics compared as base64
FP32), and exporting the copy gives the original's document back. Also: a layer bound to a
shared array (created from the export in a fresh server, bound to the existing one otherwise,
refused when its shape differs), an import surviving a restart with --data-dir, damaged or
invalid documents refused with the field named and nothing created, If-Match, GET .../arrays
and extract "All".

  NORMD=build/normd tests/server/test_export.py

Standard library only. Prints "export: N passed, M failed".
"""
import base64
import json
import os
import random
import shutil
import struct
import sys
import tempfile

import harness  # noqa: E402 (tests/server/harness.py)
from harness import check, summary  # noqa: E402




# ---- the server ----



class Server(harness.Server):
    """harness.Server with the export and import calls this test makes."""

    def json(self, method, path, body=None, headers=None):
        status, hdrs, data = self.call(method, path, body, headers)
        return status, (json.loads(data) if data else None)

    def export_json(self, name):
        status, doc = self.json("GET", "/v1/layers/%s/export" % name)
        check(status == 200, "export %s: %s %s" % (name, status, doc))
        return doc

    def export_binary(self, name):
        status, hdrs, data = self.call("GET", "/v1/layers/%s/export" % name,
                                       headers={"Accept": "application/octet-stream"})
        check(status == 200 and hdrs.get("content-type") == "application/octet-stream"
              and data[:4] == b"NDX1", "binary export %s: %s %r" % (name, status, data[:40]))
        return data

    def export_binary_refuses_format(self, name):
        status, _, data = self.call("GET", "/v1/layers/%s/export?output_format=b64" % name,
                                    headers={"Accept": "application/octet-stream"})
        check(status == 422 and b"output_format" in data,
              "output_format with a binary export is refused: %s %r" % (status, data[:120]))

    def import_binary(self, name, data, headers=None):
        h = {"Content-Type": "application/octet-stream"}
        h.update(headers or {})
        status, _, body = self.call("POST", "/v1/layers/%s/import" % name, data, h)
        return status, (json.loads(body) if body else None)

    def exists(self, name):
        return self.call("GET", "/v1/layers/" + name)[0] == 200


# ---- the layers ----

# name, definition, per-example input shape
CASES = [
    ("bn_wolfram", {"type": "BatchNormalization", "input": [3, 2]}),
    ("bn_keras", {"type": "BatchNormalization", "convention": "keras", "input": [2, 3]}),
    ("bn_onnx", {"type": "BatchNormalization", "convention": "onnx", "input": [3]}),
    ("bn_pytorch", {"type": "BatchNormalization", "convention": "pytorch", "input": [3, 2]}),
    ("bn_pytorch_null", {"type": "BatchNormalization", "convention": "pytorch", "input": [3, 2],
                         "options": {"momentum": None}}),
    ("bn_puzzlelib", {"type": "BatchNormalization", "convention": "puzzlelib", "input": [3, 2],
                      "options": {"init_factor": 0.8, "min_factor": 0.2}}),
    ("bn_extras", {"type": "BatchNormalization", "input": [3, 2], "seed": 7,
                   "options": {"epsilon": 0.0025, "momentum": 0.75,
                               "scaling_regularizer": {"l1": 0.01, "l2": 0.02},
                               "biases_constraint": {"type": "max_norm", "max_value": 1.5}},
                   "learning_rate_multipliers": {"Scaling": 0.5, "Biases": 2}}),
    ("norm", {"type": "Normalization", "input": [2, 3],
              "options": {"aggregation_levels": "All", "epsilon": 0.01}}),
    ("norm_groups", {"type": "Normalization", "input": [3, 4],
                     "options": {"group_number": [2], "unbiased": True}}),
    ("layernorm", {"type": "LayerNormalization", "convention": "keras", "input": [2, 3]}),
    ("instancenorm", {"type": "InstanceNormalization", "input": [2, 3]}),
    ("groupnorm", {"type": "GroupNormalization", "input": [4, 2], "options": {"groups": 2}}),
    ("rmsnorm", {"type": "RMSNormalization", "convention": "pytorch", "input": [3]}),
    # PyTorch's class names: no running statistics (batch statistics in inference too).
    ("torch_no_running", {"type": "BatchNorm1d", "input": [3],
                          "options": {"num_features": 3, "track_running_stats": False}}),
    ("torch_groupnorm", {"type": "GroupNorm", "input": [4, 2],
                         "options": {"num_groups": 2, "num_channels": 4}}),
]

OPTIMIZERS = [
    ("adam", {"type": "adam", "learning_rate": 0.01}),
    ("sgdm", {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}),
]

RETURN = ["output", "input_gradient", "array_gradients", "arrays", "batch_statistics"]


def tensor(rng, shape):
    n = 1
    for d in shape:
        n *= d
    data = [round(rng.uniform(-2, 2), 3) for _ in range(n)]
    return {"shape": shape, "data": data}


def step_body(rng, shape, optimizer):
    batch = [4] + shape
    return {"input": tensor(rng, batch), "output_gradient": tensor(rng, batch),
            "optimizer": optimizer, "return": RETURN, "output_format": "b64"}


def train(srv, name, body):
    status, r = srv.json("POST", "/v1/layers/%s/train-step" % name, body)
    check(status == 200, "train %s: %s %s" % (name, status, r))
    return r


def without(doc, *keys):
    return {k: v for k, v in doc.items() if k not in keys}


def round_trip_case(srv, name, definition, opt_name, optimizer):
    base = "%s_%s" % (name, opt_name)
    rng = random.Random(base)
    status, r = srv.json("PUT", "/v1/layers/" + base, definition)
    if not check(status == 201, "define %s: %s %s" % (base, status, r)):
        return
    shape = definition["input"]
    for _ in range(3):
        train(srv, base, step_body(rng, shape, optimizer))
    doc = srv.export_json(base)
    data = srv.export_binary(base)
    status, info = srv.json("POST", "/v1/layers/%s_j/import" % base, doc)
    check(status == 201, "import JSON %s: %s %s" % (base, status, info))
    status, info = srv.import_binary(base + "_b", data)
    check(status == 201, "import binary %s: %s %s" % (base, status, info))
    for copy in (base + "_j", base + "_b"):
        again = srv.export_json(copy)
        check(again is not None and without(again, "name") == without(doc, "name"),
              "%s: its export is not the original's:\n%s\n%s" % (copy, again, doc))
    body = step_body(rng, shape, optimizer)
    want = train(srv, base, body)
    for copy in (base + "_j", base + "_b"):
        got = train(srv, copy, body)
        check(got == want, "%s: the next train-step differs:\n%s\n%s" % (copy, got, want))


def test_round_trips(srv):
    for name, definition in CASES:
        for opt_name, optimizer in OPTIMIZERS:
            round_trip_case(srv, name, definition, opt_name, optimizer)


# ---- shared arrays ----


def test_shared(srv):
    rng = random.Random("shared")
    d = {"type": "BatchNormalization", "input": [3], "arrays": {"Scaling": {"shared": "gs"}}}
    check(srv.json("PUT", "/v1/layers/sh", d)[0] == 201, "define sh")
    for _ in range(2):
        train(srv, "sh", step_body(rng, [3], OPTIMIZERS[0][1]))
    doc = srv.export_json("sh")
    check(doc["definition"]["arrays"] == {"Scaling": {"shared": "gs"}},
          "the definition names the shared array: %s" % doc["definition"].get("arrays"))
    data = srv.export_binary("sh")
    srv.export_binary_refuses_format("sh")
    # A fresh server creates gs from the export; the next step agrees with the original.
    other = Server()
    try:
        status, info = other.import_binary("sh", data)
        check(status == 201, "import into a fresh server: %s %s" % (status, info))
        check(other.json("GET", "/v1/shared-arrays/gs")[0] == 200, "gs created from the export")
        body = step_body(rng, [3], OPTIMIZERS[0][1])
        want = train(srv, "sh", body)
        got = train(other, "sh", body)
        check(got == want, "shared: the next train-step differs")
        # A server whose gs has another shape refuses it, and creates nothing.
        d4 = {"type": "BatchNormalization", "input": [4], "arrays": {"Scaling": {"shared": "g4"}}}
        other.json("PUT", "/v1/layers/four", d4)
        doc4 = json.loads(json.dumps(doc).replace('"gs"', '"g4"'))
        status, err = other.json("POST", "/v1/layers/sh4/import", doc4)
        check(status == 422 and err["error"]["code"] == "shape_mismatch"
              and err["error"].get("field") == "arrays.Scaling",
              "shared shape mismatch: %s %s" % (status, err))
        check(not other.exists("sh4"), "nothing created after a shared shape mismatch")
    finally:
        other.stop()
    # In the same server the copy binds the existing gs: both layers then use it.
    status, info = srv.json("POST", "/v1/layers/sh_copy/import", doc)
    check(status == 201 and info["arrays"]["Scaling"]["shared"] == "gs",
          "import binds the existing shared array: %s %s" % (status, info))
    status, shared = srv.json("GET", "/v1/shared-arrays/gs")
    check(status == 200 and sorted(shared["layers"]) == ["sh", "sh_copy"],
          "gs is used by both: %s" % shared)


# ---- persistence ----


def test_restart(srv):
    rng = random.Random("restart")
    d = {"type": "BatchNormalization", "convention": "pytorch", "input": [3, 2],
         "options": {"momentum": None}, "arrays": {"Biases": {"shared": "gp"}}}
    srv.json("PUT", "/v1/layers/persisted", d)
    for _ in range(3):
        train(srv, "persisted", step_body(rng, [3, 2], OPTIMIZERS[0][1]))
    doc = srv.export_json("persisted")
    data_dir = tempfile.mkdtemp(prefix="normd-export-")
    durable = Server("--data-dir", data_dir)
    try:
        status, info = durable.json("POST", "/v1/layers/p/import", doc)
        check(status == 201, "import into a durable server: %s %s" % (status, info))
        before = durable.export_json("p")
        durable.stop()
        durable.start()
        after = durable.export_json("p")
        check(after == before, "the import survives a restart:\n%s\n%s" % (after, before))
        body = step_body(rng, [3, 2], OPTIMIZERS[0][1])
        want = train(srv, "persisted", body)
        got = train(durable, "p", body)
        check(got == want, "after a restart the next train-step differs")
    finally:
        durable.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# ---- refusals ----


def reseal(b):
    """Recomputes the container's length and FNV-1a checksum after an edit."""
    b = bytearray(b)
    b[8:16] = struct.pack("<Q", len(b) - 24)
    h = 0xcbf29ce484222325
    for x in b[:-8]:
        h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    b[-8:] = struct.pack("<Q", h)
    return bytes(b)


def expect_refused(srv, what, status, code, field, want_status, want_code, want_field=None):
    err = (code or {}).get("error", {}) if isinstance(code, dict) else {}
    ok = status == want_status and err.get("code") == want_code
    if want_field is not None:
        ok = ok and err.get("field") == want_field
    check(ok, "%s: %s %s (want %s %s %s)" % (what, status, code, want_status, want_code,
                                            want_field))
    check(not srv.exists("bad"), "%s: nothing created" % what)


def test_refusals(srv):
    srv.json("PUT", "/v1/layers/src", {"type": "BatchNormalization", "input": [3]})
    train(srv, "src", step_body(random.Random(1), [3], OPTIMIZERS[0][1]))
    data = srv.export_binary("src")
    doc = srv.export_json("src")

    def binary(what, body, want_code="malformed_body", status=400):
        s, r = srv.import_binary("bad", body)
        expect_refused(srv, what, s, r, None, status, want_code, "body")
        return r

    binary("truncated binary", data[: len(data) // 2])
    binary("empty binary", b"")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    r = binary("wrong checksum", bytes(flipped))
    check("checksum" in r["error"]["message"], "checksum named: %s" % r)
    v2 = bytearray(data)
    v2[4] = 2
    r = binary("binary format version 2", reseal(v2))
    check("format version 2" in r["error"]["message"], "version named: %s" % r)
    binary("a JSON document sent as binary", json.dumps(doc).encode())

    def refused(what, d, want_status, want_code, want_field):
        s, r = srv.json("POST", "/v1/layers/bad/import", d)
        expect_refused(srv, what, s, r, None, want_status, want_code, want_field)

    def edited(**changes):
        d = json.loads(json.dumps(doc))
        for path, value in changes.items():
            node, keys = d, path.split("__")
            for k in keys[:-1]:
                node = node[k]
            if value is KeyError:
                del node[keys[-1]]
            else:
                node[keys[-1]] = value
        return d

    refused("format_version 2", edited(format_version=2), 422, "invalid_value", "format_version")
    refused("another format", edited(format="x"), 422, "invalid_value", "format")
    refused("no definition", edited(definition=KeyError), 422, "invalid_value", "definition")
    refused("unknown field", edited(extra=1), 422, "unknown_field", "extra")
    refused("unknown array field", edited(arrays__Scaling__colour=1), 422, "unknown_field",
            "arrays.Scaling.colour")
    refused("unknown array", edited(arrays__Gain=None), 422, "unknown_field", "arrays.Gain")
    refused("array of the wrong shape", edited(arrays__Scaling__values=[1, 2]), 422,
            "shape_mismatch", "arrays.Scaling")
    refused("array missing", edited(arrays__Biases=None), 422, "invalid_value", "arrays.Biases")
    refused("moment of the wrong shape", edited(optimizer_state__Scaling__m=[0, 0]), 422,
            "shape_mismatch", "optimizer_state.Scaling.m")
    refused("bad option", edited(definition__options__epsilon=-1), 422, "invalid_value",
            "definition.options.epsilon")
    refused("wrong type", edited(counters__train_steps="3"), 400, "invalid_type",
            "counters.train_steps")
    refused("negative MovingVariance", edited(arrays__MovingVariance__values=[1, -1, 1]), 422,
            "invalid_value", "arrays.MovingVariance")
    # If-Match as PUT: a replace at the wrong version is refused and changes nothing.
    s, info = srv.json("POST", "/v1/layers/target/import", doc)
    check(s == 201, "import target: %s %s" % (s, info))
    s, _, _ = srv.call("POST", "/v1/layers/target/import", json.dumps(doc).encode(),
                       {"Content-Type": "application/json", "If-Match": '"999"'})
    check(s == 412, "If-Match mismatch: %s" % s)
    s, hdrs, _ = srv.call("POST", "/v1/layers/target/import", json.dumps(doc).encode(),
                          {"Content-Type": "application/json", "If-Match": info["version"]
                           and '"%d"' % info["version"]})
    check(s == 200 and hdrs.get("etag") == '"%d"' % (info["version"] + 1),
          "replace answers 200 with the next version: %s %s" % (s, hdrs.get("etag")))


# ---- arrays list and extract All ----


def test_arrays_and_extract_all(srv):
    d = {"type": "LayerNormalization", "input": [2, 3],
         "arrays": {"Biases": None, "Scaling": {"shared": "ga"}}}
    srv.json("PUT", "/v1/layers/lst", d)
    status, r = srv.json("GET", "/v1/layers/lst/arrays")
    check(status == 200 and r["arrays"] == [
        {"name": "Scaling", "shape": [3], "learning_rate_multiplier": 1, "shared": "ga",
         "enabled": True},
        {"name": "Biases", "shape": None, "learning_rate_multiplier": 1, "shared": None,
         "enabled": False}], "arrays list: %s %s" % (status, r))
    status, r = srv.json("GET", "/v1/layers/nope/arrays")
    check(status == 404, "arrays of a missing layer: %s" % status)
    status, r = srv.json("POST", "/v1/layers/lst/extract", {"keys": "All"})
    check(status == 200 and r.get("Scaling") == [1, 1, 1] and r.get("Biases") is None
          and r.get("Epsilon") == 0.001 and r.get("Input") == [2, 3]
          and "epsilon" in r and "Momentum" not in r, "extract All: %s %s" % (status, r))
    status, r = srv.json("POST", "/v1/layers/lst/extract", {"keys": 3})
    check(status == 400 and r["error"]["code"] == "invalid_type", "keys 3: %s %s" % (status, r))


def main():
    srv = Server()
    try:
        for test in (test_round_trips, test_shared, test_restart, test_refusals,
                     test_arrays_and_extract_all):
            try:
                test(srv)
            except Exception as e:  # a crash of one test is a failure, the rest still run
                check(False, "%s raised %r" % (test.__name__, e))
        check(srv.proc.poll() is None, "normd is still running")
    finally:
        srv.stop()
    sys.exit(summary("export"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""test_oip.py - the Open Inference Protocol v2 (KServe V2 REST, docs/API.md) of the real binary.

Server and model metadata, health and readiness, infer with JSON (FP32, FP64, FP16; nested and
flat data) and binary tensors (Triton's binary tensor data extension, the raw binary request),
outputs and parameters, the id echoed, normd's train extension, and every error path in the
protocol's form ({"error": "..."}). Numbers are compared bit for bit with /v1's forward and
train-step on identical layers. The examples of the protocol's specification and of Triton's
binary-data documentation (tests/data/oip/, README.md there) are replayed.

  NORMD=build/normd python3 tests/server/test_oip.py

Standard library only. Prints "oip: N passed, M failed".
"""
import json
import os
import struct
import sys

import harness  # noqa: E402 (tests/server/harness.py)
from harness import check, summary  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "oip")
IHCL = "Inference-Header-Content-Length"
KEY = "oip-test-key"


class Server(harness.Server):
    """harness.Server, whose json() also answers the headers."""

    def json(self, method, path, body=None, headers=None):
        s, h, b = self.call(method, path, body, headers)
        return s, h, json.loads(b) if b else None


def f32(values):
    """The float32 bit patterns of values (exact comparison)."""
    return struct.pack("<%df" % len(values), *values)


def flatten(x):
    return [v for row in x for v in flatten(row)] if isinstance(x, list) else [x]


def split_binary(h, body):
    """(JSON header as an object, the bytes after it) of a binary-extension reply."""
    n = int(h[IHCL.lower()])
    return json.loads(body[:n]), body[n:]


def binary_request(header, *tensors):
    """The body and headers of a binary-extension request: header JSON, then the bytes."""
    text = json.dumps(header).encode()
    return text + b"".join(tensors), {"Content-Type": "application/octet-stream",
                                      IHCL: str(len(text))}


def inp(shape, data=None, datatype="FP32", name="input", size=None):
    t = {"name": name, "shape": shape, "datatype": datatype}
    if data is not None:
        t["data"] = data
    if size is not None:
        t["parameters"] = {"binary_data_size": size}
    return t


def is_oip_error(status, h, body, want):
    """A protocol-form error: the status, {"error": string} and nothing else, X-Request-Id."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return (status == want and set(doc) == {"error"} and isinstance(doc["error"], str) and
            doc["error"] != "" and "x-request-id" in h)


BN = {"type": "BatchNormalization", "input": [3],
      "arrays": {"Scaling": [1, 2, 3], "Biases": [0.5, -1, 0], "MovingMean": [0.1, 0.2, 0.3],
                 "MovingVariance": [1, 4, 9]}}
X = [[1, 2, 3], [4, 5, 6.5]]


def v1_forward(srv, layer, x, mode="inference"):
    s, _, doc = srv.json("POST", "/v1/layers/%s/forward" % layer, {"input": x, "mode": mode})
    return doc["output"] if s == 200 else None


def test_metadata(srv):
    s, _, doc = srv.json("GET", "/v2")
    _, _, v1 = srv.json("GET", "/v1")
    check(s == 200 and doc["name"] == "normd" and doc["version"] == v1["version"],
          "GET /v2: name normd and /v1's version: %s" % doc)
    check("binary_tensor_data" in doc["extensions"] and "train" in doc["extensions"],
          "GET /v2 advertises binary_tensor_data and train")
    check(srv.json("GET", "/v2/health/live")[::2] == (200, {"live": True}), "live")
    check(srv.json("GET", "/v2/health/ready")[::2] == (200, {"ready": True}), "ready")
    s, h, doc = srv.json("GET", "/v2/models/bn")
    check(s == 200 and doc == {
        "name": "bn", "versions": ["1"], "platform": "normd_BatchNormalization",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]},
        "model metadata: %s" % doc)
    s, _, doc = srv.json("GET", "/v2/models/auto")
    check(s == 200 and doc["inputs"][0]["shape"] == [-1, 3, -1] and
          doc["platform"] == "normd_LayerNormalization",
          "Automatic dims are -1, the platform the canonical type: %s" % doc)
    check(srv.json("GET", "/v2/models/bn/versions/1")[0] == 200, "metadata of version 1")
    check(is_oip_error(*srv.call("GET", "/v2/models/bn/versions/2"), 404), "version 2: 404")
    check(is_oip_error(*srv.call("GET", "/v2/models/bn/versions/v1"), 400), "version v1: 400")
    check(is_oip_error(*srv.call("GET", "/v2/models/nope"), 404), "unknown model: 404")
    s, _, doc = srv.json("GET", "/v2/models/bn/ready")
    check((s, doc) == (200, {"name": "bn", "ready": True}), "model ready: %s" % doc)
    check(srv.json("GET", "/v2/models/bn/versions/1/ready")[0] == 200, "version 1 ready")
    check(is_oip_error(*srv.call("GET", "/v2/models/bn/versions/9/ready"), 404), "v9 ready 404")
    check(is_oip_error(*srv.call("GET", "/v2/models/uninit/ready"), 503),
          "an uninitialized layer is not ready: 503")
    check(is_oip_error(*srv.call("GET", "/v2/models/nope/ready"), 404), "unknown ready 404")
    check(is_oip_error(*srv.call("GET", "/v2/nothing/here"), 404), "unknown /v2 path: 404")
    check(is_oip_error(*srv.call("DELETE", "/v2/models/bn"), 405), "DELETE model: 405")


def infer(srv, body, path="/v2/models/bn/infer", headers=None):
    return srv.call("POST", path, body, headers)


def test_infer_json(srv):
    ref = f32(flatten(v1_forward(srv, "bn", X)))
    for name, data in (("nested", X), ("flat", flatten(X))):
        for dt in ("FP32", "FP64", "FP16" if name == "flat" else "FP32"):
            s, h, b = infer(srv, {"id": "req-%s-%s" % (name, dt),
                                  "inputs": [inp([2, 3], data, dt)]})
            doc = json.loads(b)
            out = doc["outputs"][0] if s == 200 else {}
            check(s == 200 and doc["id"] == "req-%s-%s" % (name, dt) and
                  doc["model_name"] == "bn" and doc["model_version"] == "1" and
                  out.get("name") == "output" and out.get("datatype") == "FP32" and
                  out.get("shape") == [2, 3] and h["content-type"].startswith("application/json"),
                  "infer %s %s: %s" % (name, dt, b[:300]))
            if dt != "FP16":
                check(f32(out.get("data", [])) == ref, "infer %s %s = /v1 forward" % (name, dt))
    # FP16 values widened exactly: 0.5 steps are halves
    half = [[0.5, 1.5, -2], [4, 0.25, 6.5]]
    s, _, b = infer(srv, {"inputs": [inp([2, 3], flatten(half), "FP16")]})
    check(s == 200 and f32(json.loads(b)["outputs"][0]["data"]) ==
          f32(flatten(v1_forward(srv, "bn", half))), "FP16 JSON data = /v1 forward")
    # mode train: the batch's statistics, as /v1's mode train
    s, _, b = infer(srv, {"inputs": [inp([2, 3], X)], "parameters": {"mode": "train"}})
    check(s == 200 and f32(json.loads(b)["outputs"][0]["data"]) ==
          f32(flatten(v1_forward(srv, "bn", X, "train"))), "parameters.mode train = /v1 train mode")
    # outputs listed and none
    s, _, b = infer(srv, {"inputs": [inp([2, 3], X)], "outputs": [{"name": "output"}]})
    check(s == 200 and len(json.loads(b)["outputs"]) == 1, "outputs [output]")
    s, _, b = infer(srv, {"inputs": [inp([2, 3], X)], "outputs": []})
    check(s == 200 and json.loads(b)["outputs"] == [], "outputs []: none returned")
    check(is_oip_error(*infer(srv, {"inputs": [inp([2, 3], X)], "outputs": [{"name": "y"}]}), 400),
          "unknown output name: 400")
    s, _, b = infer(srv, {"inputs": [inp([2, 3], X)]}, "/v2/models/bn/versions/1/infer")
    check(s == 200, "infer on versions/1")


def test_binary(srv):
    ref = f32(flatten(v1_forward(srv, "bn", X)))
    flat = flatten(X)
    cases = (("FP32", struct.pack("<6f", *flat)), ("FP64", struct.pack("<6d", *flat)),
             ("FP16", struct.pack("<6e", *flat)))
    for dt, data in cases:
        body, hs = binary_request({"inputs": [inp([2, 3], datatype=dt, size=len(data))],
                                   "outputs": [{"name": "output",
                                                "parameters": {"binary_data": True}}]}, data)
        s, h, b = infer(srv, body, headers=hs)
        if not check(s == 200 and IHCL.lower() in h, "binary %s in: %d %s" % (dt, s, b[:200])):
            continue
        head, tail = split_binary(h, b)
        out = head["outputs"][0]
        want = ref if dt != "FP16" else f32(flatten(v1_forward(srv, "bn", [
            list(struct.unpack("<3e", struct.pack("<3e", *row))) for row in X])))
        check(h["content-type"] == "application/octet-stream" and
              int(h["content-length"]) == int(h[IHCL.lower()]) + 24 and
              out["parameters"] == {"binary_data_size": 24} and "data" not in out and
              tail == want, "binary %s out = /v1 forward, framed as Triton's example" % dt)
    # binary_data_output for all outputs; binary_data false overrides it
    body, hs = binary_request({"inputs": [inp([2, 3], size=24)],
                               "parameters": {"binary_data_output": True}}, f32(flat))
    s, h, b = infer(srv, body, headers=hs)
    check(s == 200 and split_binary(h, b)[1] == ref, "binary_data_output true")
    s, h, b = infer(srv, {"inputs": [inp([2, 3], X)], "parameters": {"binary_data_output": True},
                          "outputs": [{"name": "output", "parameters": {"binary_data": False}}]})
    check(s == 200 and IHCL.lower() not in h and f32(json.loads(b)["outputs"][0]["data"]) == ref,
          "binary_data false overrides binary_data_output")
    # binary out for a JSON request, and a JSON header sent as application/json
    s, h, b = infer(srv, json.dumps({"inputs": [inp([2, 3], size=24)]}).encode() + f32(flat),
                    headers={"Content-Type": "application/json",
                             IHCL: str(len(json.dumps({"inputs": [inp([2, 3], size=24)]})))})
    check(s == 200 and f32(json.loads(b)["outputs"][0]["data"]) == ref,
          "binary input with Content-Type application/json")
    # the raw binary request: the whole body is the input, batch = bytes / example
    s, h, b = infer(srv, f32(flat), headers={"Content-Type": "application/octet-stream", IHCL: "0"})
    if check(s == 200, "raw binary request: %d %s" % (s, b[:200])):
        head, tail = split_binary(h, b)
        check(head["outputs"][0]["shape"] == [2, 3] and tail == ref, "raw binary = /v1 forward")
    check(is_oip_error(*infer(srv, f32(flat[:4]), headers={IHCL: "0"}), 400),
          "raw binary of a partial example: 400")
    check(is_oip_error(*infer(srv, f32(list(range(6))), "/v2/models/auto/infer",
                              headers={IHCL: "0"}), 400),
          "raw binary on a model with an Automatic dim: 400")


def train_pair(srv, name):
    for n in (name + "_v1", name + "_v2"):
        srv.call("PUT", "/v1/layers/" + n, BN)


def test_train(srv):
    train_pair(srv, "t")
    grad = [[1, 0, -1], [0.5, 2, 0]]
    params = {"optimizer": "adam", "learning_rate": 0.1, "beta_1": 0.8, "return_gradients": True}
    for step in range(2):
        s, _, v1 = srv.json("POST", "/v1/layers/t_v1/train-step", {
            "input": X, "output_gradient": grad,
            "optimizer": {"type": "adam", "learning_rate": 0.1, "beta_1": 0.8},
            "return": ["output", "input_gradient", "array_gradients"]})
        s2, h, b = srv.call("POST", "/v2/models/t_v2/train", {
            "id": "t%d" % step, "inputs": [inp([2, 3], X), inp([2, 3], grad, name="output_gradient")],
            "parameters": params})
        doc = json.loads(b)
        if not check(s == 200 and s2 == 200, "train step %d: %d %d %s" % (step, s, s2, b[:300])):
            return
        outs = {o["name"]: o for o in doc["outputs"]}
        check([o["name"] for o in doc["outputs"]] ==
              ["output", "input_gradient", "scaling_gradient", "biases_gradient"],
              "return_gradients: the four outputs in order")
        check(doc["id"] == "t%d" % step and doc["parameters"] == {"version": v1["version"]} and
              doc["model_version"] == str(v1["version"]), "train: id, parameters.version %s" % doc.get("parameters"))
        check(f32(outs["output"]["data"]) == f32(flatten(v1["output"])) and
              f32(outs["input_gradient"]["data"]) == f32(flatten(v1["input_gradient"])) and
              f32(outs["scaling_gradient"]["data"]) == f32(v1["array_gradients"]["Scaling"]) and
              f32(outs["biases_gradient"]["data"]) == f32(v1["array_gradients"]["Biases"]),
              "train step %d = /v1 train-step bit for bit" % step)
    a1 = srv.json("GET", "/v1/layers/t_v1/arrays/Scaling")[2]
    a2 = srv.json("GET", "/v1/layers/t_v2/arrays/Scaling")[2]
    check(a1["array"] == a2["array"], "the layers' Scaling agree after two steps")
    # target (mean squared), sgd with momentum, one gradient output in binary, on versions/{v}
    s, _, v1 = srv.json("POST", "/v1/layers/t_v1/train-step", {
        "input": X, "target": grad, "optimizer": {"type": "sgd", "learning_rate": 0.05,
                                                  "momentum": 0.9},
        "return": ["output", "array_gradients"]})
    version = srv.json("GET", "/v2/models/t_v2")[2]["versions"][0]
    s2, h, b = srv.call("POST", "/v2/models/t_v2/versions/%s/train" % version, {
        "inputs": [inp([2, 3], X), inp([2, 3], grad, name="target")],
        "parameters": {"optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        "outputs": [{"name": "scaling_gradient", "parameters": {"binary_data": True}},
                    {"name": "output"}]})
    if check(s == 200 and s2 == 200, "train with target: %d %s" % (s2, b[:300])):
        head, tail = split_binary(h, b)
        check([o["name"] for o in head["outputs"]] == ["scaling_gradient", "output"] and
              tail == f32(v1["array_gradients"]["Scaling"]) and
              f32(head["outputs"][1]["data"]) == f32(flatten(v1["output"])),
              "train with target: outputs in the requested order, binary gradient = /v1")
    check(is_oip_error(*srv.call("POST", "/v2/models/t_v2/versions/1/train", {
        "inputs": [inp([2, 3], X)]}), 404), "train on an old version: 404")
    check(is_oip_error(*srv.call("POST", "/v2/models/t_v2/train", {
        "inputs": [inp([2, 3], X), inp([2, 3], grad, name="output_gradient"),
                   inp([2, 3], grad, name="target")]}), 400), "train with three inputs: 400")
    check(is_oip_error(*srv.call("POST", "/v2/models/t_v2/train", {
        "inputs": [inp([2, 3], X)], "parameters": {"optimizer": "lbfgs"}}), 400),
        "train with an unknown optimizer: 400")
    check(is_oip_error(*srv.call("POST", "/v2/models/t_v2/train", {
        "inputs": [inp([2, 3], grad, name="target")]}), 400), "train without input: 400")


def test_errors(srv, small):
    good = inp([2, 3], X)
    cases = [
        ("unknown model", "/v2/models/nope/infer", {"inputs": [good]}, 404),
        ("wrong version", "/v2/models/bn/versions/7/infer", {"inputs": [good]}, 404),
        ("bad version", "/v2/models/bn/versions/x/infer", {"inputs": [good]}, 400),
        ("bad datatype", None, {"inputs": [inp([2, 3], X, "INT32")]}, 400),
        ("datatype not a string", None, {"inputs": [inp([2, 3], X, 5)]}, 400),
        ("data count", None, {"inputs": [inp([2, 3], [1, 2, 3])]}, 400),
        ("nested shape differs", None, {"inputs": [inp([3, 2], X)]}, 400),
        ("layer shape mismatch", None, {"inputs": [inp([1, 4], [1, 2, 3, 4])]}, 400),
        ("one example, no batch dim", None, {"inputs": [inp([3], [1, 2, 3])]}, 400),
        ("two inputs", None, {"inputs": [good, dict(good, name="input")]}, 400),
        ("no inputs", None, {"inputs": []}, 400),
        ("inputs not a list", None, {"inputs": good}, 400),
        ("unknown input name", None, {"inputs": [dict(good, name="x")]}, 400),
        ("no shape", None, {"inputs": [{"name": "input", "datatype": "FP32", "data": [1]}]}, 400),
        ("negative dim", None, {"inputs": [inp([-2, 3], X)]}, 400),
        ("no data", None, {"inputs": [inp([2, 3])]}, 400),
        ("data and binary", None, {"inputs": [inp([2, 3], X, size=24)]}, 400),
        ("data as an object", None, {"inputs": [inp([2, 3], {"b64": ""})]}, 400),
        ("unknown key", None, {"inputs": [good], "colour": 1}, 400),
        ("unknown parameter", None, {"inputs": [good], "parameters": {"sequence_id": 1}}, 400),
        ("bad mode", None, {"inputs": [good], "parameters": {"mode": "fast"}}, 400),
        ("binary_data not bool", None, {"inputs": [good], "outputs": [
            {"name": "output", "parameters": {"binary_data": "yes"}}]}, 400),
        ("output twice", None, {"inputs": [good], "outputs": [{"name": "output"}] * 2}, 400),
        ("id not a string", None, {"id": 42, "inputs": [good]}, 400),
        ("model_name differs", None, {"model_name": "other", "inputs": [good]}, 400),
        ("malformed JSON", None, b'{"inputs": [', 400),
        ("uninitialized layer", "/v2/models/uninit/infer",
         {"inputs": [inp([1, 3, 1, 1], [1, 2, 3])]}, 400),
    ]
    for what, path, body, want in cases:
        check(is_oip_error(*infer(srv, body, path or "/v2/models/bn/infer"), want),
              "%s: %d in the protocol's form" % (what, want))
    data = f32(flatten(X))
    header = json.dumps({"inputs": [inp([2, 3], size=24)]}).encode()
    for what, value in (("negative", "-1"), ("larger than the body", str(len(header) + 25)),
                        ("non-numeric", "abc"), ("a number and text", "12abc"),
                        ("cut inside the JSON", str(len(header) - 3))):
        check(is_oip_error(*infer(srv, header + data, headers={IHCL: value}), 400),
              "Inference-Header-Content-Length %s: 400" % what)
    for what, size, tail in (("binary_data_size larger than the shape", 28, data + b"\0" * 4),
                             ("binary_data_size smaller than the shape", 20, data[:20]),
                             ("fewer bytes than binary_data_size", 24, data[:12]),
                             ("bytes no input claims", 24, data + b"\0\0")):
        body, hs = binary_request({"inputs": [inp([2, 3], size=size)]}, tail)
        check(is_oip_error(*infer(srv, body, headers=hs), 400), "%s: 400" % what)
    big = {"inputs": [inp([100, 3], [0.0] * 300)]}
    check(is_oip_error(*small.call("POST", "/v2/models/bn/infer", big), 413),
          "more elements than --max-elements: 413")
    check(is_oip_error(*srv.call("POST", "/v2/models/bn/infer", b"{}",
                                 {"Content-Type": "text/plain"}), 415), "text/plain: 415")


def test_auth():
    srv = Server("--api-key", KEY)
    try:
        check(srv.call("GET", "/v2/health/live")[0] == 200 and
              srv.call("GET", "/v2/health/ready")[0] == 200, "health needs no key")
        check(is_oip_error(*srv.call("GET", "/v2"), 401), "GET /v2 without the key: 401")
        check(is_oip_error(*srv.call("POST", "/v2/models/bn/infer", {}), 401),
              "infer without the key: 401")
        check(srv.call("GET", "/v2", headers={"Authorization": "Bearer " + KEY})[0] == 200,
              "GET /v2 with the key")
    finally:
        srv.stop()


def read_example(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def renamed(doc):
    """A reply with normd's names read as the examples' (output -> output0), its model_name
    and model_version set aside."""
    doc = {k: v for k, v in doc.items() if k not in ("model_name", "model_version")}
    for o in doc["outputs"]:
        o["name"] = "output0" if o["name"] == "output" else o["name"]
    return doc


def test_examples(srv):
    # the examples as published: two inputs, normd's models take one
    s, h, b = infer(srv, read_example("kserve_infer_request.json"), "/v2/models/mymodel/infer",
                    {"Content-Type": "application/json"})
    check(is_oip_error(s, h, b, 404), "KServe example request to an unknown model: 404")
    s, h, b = infer(srv, read_example("kserve_infer_request.json"), "/v2/models/ident/infer",
                    {"Content-Type": "application/json"})
    check(is_oip_error(s, h, b, 400) and "one input" in json.loads(b)["error"],
          "KServe example request as published: 400 naming the one input: %s" % b)
    tri = read_example("triton_binary_request.json")
    body = tri + b"\1\0\0\0\2\0\0\0\3\0\0\0\4\0\0\0" + b"\1\0\1"  # 16 + 3 bytes, as the example
    s, h, b = infer(srv, body, "/v2/models/ident/infer",
                    {"Content-Type": "application/octet-stream", IHCL: str(len(tri))})
    check(is_oip_error(s, h, b, 400), "Triton binary example as published: 400: %s" % b)

    # adapted to the identity layer: the example's response numbers come back
    text = read_example("kserve_infer_response.json").decode()
    want = json.loads(text.replace('"42"\n', '"42",\n', 1))  # the comma the example lacks
    req = json.loads(read_example("kserve_infer_request.json"))
    req["inputs"] = [inp([3, 2], want["outputs"][0]["data"])]
    req["outputs"] = [{"name": "output"}]
    s, h, b = infer(srv, req, "/v2/models/ident/infer")
    got = renamed(json.loads(b)) if s == 200 else None
    check(got is not None and f32(got["outputs"][0].pop("data")) ==
          f32(want["outputs"][0].pop("data")) and got == want,
          "KServe example adapted: normd answers the example's response: %s" % b[:300])

    head = json.loads(tri)
    head.update(model_name="ident", inputs=[inp([3, 2], size=24)])
    head["outputs"][0]["name"] = "output"
    values = [1.0, 1.1, 2.0, 2.1, 3.0, 3.1]
    body, hs = binary_request(head, f32(values))
    s, h, b = infer(srv, body, "/v2/models/ident/infer", hs)
    if check(s == 200, "Triton binary example adapted: %d %s" % (s, b[:200])):
        got, tail = split_binary(h, b)
        check(renamed(got) == json.loads(read_example("triton_binary_response.json")) and
              tail == f32(values) and h["content-type"] == "application/octet-stream" and
              int(h["content-length"]) == int(h[IHCL.lower()]) + 24,
              "Triton binary example adapted: its response header and 24 bytes")

    raw = f32([1.0, 2.0, 3.0, 4.0])  # the example's 16 bytes
    s, h, b = infer(srv, raw, "/v2/models/four/infer",
                    {"Content-Type": "application/octet-stream", IHCL: "0"})
    if check(s == 200, "Triton raw binary example: %d %s" % (s, b[:200])):
        got, tail = split_binary(h, b)
        first = json.loads(read_example("triton_raw_response.json"))["outputs"][0]
        out = renamed(got)["outputs"][0]
        check(len(got["outputs"]) == 1 and out["name"] == first["name"] and
              out["datatype"] == first["datatype"] and out["shape"] == [1, 4] and
              out["parameters"] == {"binary_data_size": 16} and len(tail) == 16,
              "Triton raw example: a batch of one, every output binary: %s" % got)


def main():
    servers = []
    try:
        srv = Server()
        servers.append(srv)
        small = Server("--max-elements", "64")
        servers.append(small)
        for s in (srv, small):
            s.call("PUT", "/v1/layers/bn", BN)
        srv.call("PUT", "/v1/layers/auto", {"type": "LayerNormalization", "input": [3, None]})
        srv.call("PUT", "/v1/layers/uninit", {"type": "BatchNorm2D"})
        srv.call("PUT", "/v1/layers/ident", {
            "type": "BatchNormalization", "input": [2], "options": {"epsilon": 0.5},
            "arrays": {"MovingVariance": [0.5, 0.5]}})
        srv.call("PUT", "/v1/layers/four", {"type": "RMSNormalization", "input": [4]})
        test_metadata(srv)
        test_infer_json(srv)
        test_binary(srv)
        test_train(srv)
        test_errors(srv, small)
        test_examples(srv)
        test_auth()
    finally:
        for s in servers:
            s.stop()
    return summary("oip")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""durability_client.py - the HTTP side of test_durability.sh: bodies, snapshots, the
train-step stream of its kill -9 loop and its checks, file surgery. Run as
`durability_client.py COMMAND ARGS...` (the cmd_* functions). Python standard library only."""
import http.client, json, os, random, sys, urllib.parse

J = {"Content-Type": "application/json"}


class Client:
    def __init__(self, base, timeout=30):
        u = urllib.parse.urlsplit(base)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)

    def call(self, method, path, body=None, headers=None):
        h = {}
        if body is not None and not isinstance(body, bytes):
            h, body = dict(J), json.dumps(body)
        h.update(headers or {})
        self.c.request(method, path, body=body, headers=h)
        r = self.c.getresponse()
        return r.status, r.read()

    def ok(self, method, path, body=None, want=(200,), headers=None):
        st, b = self.call(method, path, body, headers)
        if st not in want:
            sys.exit("%s %s: %d %s" % (method, path, st, b[:300].decode(errors="replace")))
        return b


def tensor(rng, shape):
    if not shape:
        return round(rng.uniform(-2, 2), 3)
    return [tensor(rng, shape[1:]) for _ in range(shape[0])]


SGD_M = {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}
SGD_N = {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True}
SGD = {"type": "sgd", "learning_rate": 0.1}
ADAM = {"type": "adam", "learning_rate": 0.01}
# part a: name -> (definition, per-example shape of its train-steps, optimizer)
LAYERS = {
    "bn_wolfram": ({"type": "BatchNormalization", "input": [3, 4]}, [3, 4], SGD_M),
    "bn_keras": ({"type": "BatchNormalization", "convention": "keras", "input": [4, 3],
                  "options": {"momentum": 0.95}}, [4, 3], ADAM),
    "bn_onnx": ({"type": "BatchNorm2D", "convention": "onnx", "input": [2, 3, 2]}, [2, 3, 2], SGD_N),
    "bn_pytorch": ({"type": "BatchNorm1D", "convention": "pytorch", "input": [3, 5]}, [3, 5], ADAM),
    "bn_pytorch_null": ({"type": "BatchNormalization", "convention": "pytorch", "input": [3],
                         "options": {"momentum": None}}, [3], SGD_M),
    "bn_puzzlelib": ({"type": "BatchNormalization", "convention": "puzzlelib", "input": [3, 2],
                      "options": {"init_factor": 0.8, "min_factor": 0.2}, "seed": 7}, [3, 2], ADAM),
    "bn_axes": ({"type": "BatchNormalization", "convention": "keras", "input": [2, 3, 4],
                 "options": {"axis": [1, 3]}}, [2, 3, 4], SGD_M),
    "bn_options": ({"type": "BatchNormalization", "input": [4], "seed": 11,
                    "options": {"epsilon": 0.01, "momentum": 0.8, "moving_variance": "unbiased",
                                "scaling_initializer": {"type": "random_normal", "mean": 1,
                                                        "stddev": 0.1},
                                "scaling_regularizer": {"l1": 0.01, "l2": 0.02},
                                "biases_constraint": {"type": "non_neg"},
                                "scaling_constraint": {"type": "max_norm", "max_value": 3}},
                    "learning_rate_multipliers": {"Biases": 0.5, "MovingMean": 1}}, [4], ADAM),
    "bn_no_biases": ({"type": "BatchNormalization", "input": [2], "arrays": {"Biases": None},
                      "options": {"momentum": 0.5}}, [2], SGD_M),
    "bn_frozen": ({"type": "BatchNormalization", "input": [3], "options": {"trainable": False},
                   "arrays": {"MovingMean": [0.5, -1, 2]}}, [3], SGD_M),
    "norm_levels": ({"type": "Normalization", "input": [3, 4, 2],
                     "options": {"aggregation_levels": "2;;All", "scaling_levels": "Complement",
                                 "unbiased": True}}, [3, 4, 2], ADAM),
    "norm_groups_rms": ({"type": "Normalization", "input": [4, 3],
                         "options": {"aggregation_levels": [1, 2], "scaling_levels": [1],
                                     "group_number": [2], "method": "RMS"}}, [4, 3], SGD_M),
    "norm_scalar": ({"type": "Normalization", "input": [5],
                     "options": {"aggregation_levels": "All"}}, [5], SGD_N),
    "layer_norm": ({"type": "LayerNormalization", "convention": "keras", "input": [3, 6],
                    "options": {"axis": [-2, -1]}}, [3, 6], ADAM),
    "instance_norm": ({"type": "InstanceNormalization", "convention": "pytorch", "input": [3, 4]},
                      [3, 4], SGD_M),
    "group_norm": ({"type": "GroupNormalization", "input": [4, 3], "options": {"groups": 2}},
                   [4, 3], ADAM),
    "rms_norm": ({"type": "RMSNormalization", "convention": "pytorch", "input": [6]}, [6], SGD_M),
    "shared_a": ({"type": "BatchNormalization", "input": [3],
                  "arrays": {"Scaling": {"shared": "gamma"}}}, [3], SGD_M),
    "shared_b": ({"type": "LayerNormalization", "input": [3],
                  "arrays": {"Scaling": {"shared": "gamma"}}}, [3], SGD_M),
    "uninitialized": ({"type": "BatchNormalization", "convention": "keras"}, [3], ADAM),
    "initialized_later": ({"type": "GroupNormalization", "options": {"groups": 2},
                           "arrays": {"Biases": None}}, [4, 2], SGD_M),
    "replaced": ({"type": "BatchNormalization", "input": [2]}, [2, 2], ADAM),
    "deleted": ({"type": "BatchNormalization", "input": [2]}, [2], SGD_M),
}
REPLACEMENT = {"type": "LayerNormalization", "input": [2, 2], "options": {"epsilon": 0.5}}
# parts b and d
OTHERS = {
    "k_sgd": ({"type": "BatchNormalization", "input": [8]}, [8], SGD),
    "k_adam": ({"type": "BatchNormalization", "convention": "pytorch", "input": [8],
                "options": {"momentum": None}}, [8], ADAM),
    "full": ({"type": "BatchNormalization", "convention": "pytorch", "input": [64],
              "options": {"momentum": None}}, [64], ADAM),
    "full_shared": ({"type": "LayerNormalization", "input": [16],
                     "arrays": {"Scaling": {"shared": "full_gamma"}}}, [16], SGD_M),
    "full_uninit": ({"type": "BatchNormalization"}, [4], SGD),
    "limited": ({"type": "BatchNormalization", "input": [256]}, [256], SGD),
}
ALL = dict(LAYERS, **OTHERS)
ARRAYS = ["Scaling", "Biases", "MovingMean", "MovingVariance"]
RETURN = ["output", "input_gradient", "array_gradients", "arrays", "batch_statistics"]


def step_body(name, k, batch=3, optimizer=None):
    """The k-th train-step of a layer, the same on every server: k % 3 == 0 only moves the
    statistics, 1 has an output_gradient, 2 a target and a loss."""
    shape, opt = ALL[name][1], optimizer or ALL[name][2]
    rng = random.Random("%s/%d" % (name, k))
    body = {"input": tensor(rng, [batch] + shape), "optimizer": opt, "return": RETURN}
    if k % 3 == 2:
        body["target"], body["loss"] = tensor(rng, [batch] + shape), "mean_squared"
        body["return"] = RETURN + ["loss"]
    elif k % 3 == 1:
        body["output_gradient"] = tensor(rng, [batch] + shape)
    return body


def cmd_body(name, k, optimizer=None):
    """Prints a train-step body (optimizer: a JSON object replacing the layer's)."""
    print(json.dumps(step_body(name, int(k), optimizer=json.loads(optimizer) if optimizer else None)))


def cmd_definition(name):
    print(json.dumps(ALL[name][0]))


def cmd_define(base):
    """Every kind of change on a fresh server: create, replace, delete, initialize, train-steps
    with three optimizers, array writes (JSON, scalar, binary), shared-array changes."""
    c = Client(base)
    for name, (d, _, _) in LAYERS.items():
        c.ok("PUT", "/v1/layers/" + name, d, want=(201,))
    c.ok("PUT", "/v1/layers/replaced", REPLACEMENT)
    c.ok("DELETE", "/v1/layers/deleted", want=(204,))
    c.ok("POST", "/v1/layers/initialized_later/initialize", {"input": [4, 2], "seed": 3})
    for k in range(4):
        for name in LAYERS:
            if name not in ("deleted", "uninitialized"):
                c.ok("POST", "/v1/layers/%s/train-step" % name, step_body(name, k))
    c.ok("PUT", "/v1/layers/bn_onnx/arrays/MovingVariance", {"array": [0.5, 2]})
    c.ok("PUT", "/v1/layers/shared_b/arrays/Scaling", {"array": [1.5, 0.25, -1]})
    c.ok("PUT", "/v1/layers/norm_scalar/arrays/Biases", {"array": 0.125})
    # the smallest subnormal, the largest float, one ulp above 1, -0.5: raw bits go through
    raw = b"".join(x.to_bytes(4, "little") for x in (0x3f800001, 0x7f7fffff, 1, 0xbf000000))
    c.ok("PUT", "/v1/layers/bn_options/arrays/Scaling", raw,
         headers={"Content-Type": "application/octet-stream", "X-Tensor-Shape": "4"})
    for name in ("shared_a", "shared_b", "bn_onnx", "bn_options"):
        c.ok("POST", "/v1/layers/%s/train-step" % name, step_body(name, 4))


def cmd_snap(base, out, *names):
    """OUT/NAME per layer: its information, every array as JSON and as raw bytes, an extract
    (b64); OUT/_list+shared: the layer list and the shared arrays."""
    c = Client(base)
    os.makedirs(out, exist_ok=True)
    for name in names or LAYERS:
        st, info = c.call("GET", "/v1/layers/" + name)
        lines = [b"GET %d " % st + info]
        for a in ARRAYS:
            st, b = c.call("GET", "/v1/layers/%s/arrays/%s" % (name, a))
            lines.append(b"%s json %d " % (a.encode(), st) + b)
            st, b = c.call("GET", "/v1/layers/%s/arrays/%s" % (name, a),
                           headers={"Accept": "application/octet-stream"})
            lines.append(b"%s raw %d " % (a.encode(), st) + b.hex().encode())
        keys = [a for a in ARRAYS if ('"%s":{"shape":[' % a).encode() in info]
        st, b = c.call("POST", "/v1/layers/%s/extract" % name,
                       {"keys": keys + ["Epsilon"], "output_format": "b64"})
        lines.append(b"extract %d " % st + b)
        with open(os.path.join(out, name), "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
    with open(os.path.join(out, "_list+shared"), "wb") as f:
        f.write(c.ok("GET", "/v1/layers") + b"\n" + c.ok("GET", "/v1/shared-arrays") + b"\n")
        for s in json.loads(c.ok("GET", "/v1/shared-arrays"))["shared_arrays"]:
            f.write(c.ok("GET", "/v1/shared-arrays/" + s) + b"\n")


def cmd_next(base, out):
    """One more change of every part-a layer; OUT/NAME holds the answers."""
    c = Client(base)
    os.makedirs(out, exist_ok=True)
    for name in LAYERS:
        res = b""
        if name == "uninitialized":
            st, b = c.call("POST", "/v1/layers/uninitialized/initialize", {"input": [3], "seed": 9})
            res += b"initialize %d " % st + b + b"\n"
        st, b = c.call("POST", "/v1/layers/%s/train-step" % name, step_body(name, 5))
        with open(os.path.join(out, name), "wb") as f:
            f.write(res + b"train-step %d " % st + b + b"\n")


def state(c, name):
    info = json.loads(c.ok("GET", "/v1/layers/" + name))
    arrays = json.loads(c.ok("POST", "/v1/layers/%s/extract" % name, {"keys": ARRAYS}))
    return {"version": info["version"], "arrays": arrays}


def cmd_stream(base, name, out):
    """Sends one train-step after the other on a keep-alive connection until the server goes
    away; OUT gets the last acknowledged state (the one before the first step if none was)."""
    body = step_body(name, 1, batch=4)
    body["return"] = ["arrays"]
    ack = {"version": None, "arrays": None, "acked": 0, "error": None}
    try:
        c = Client(base, timeout=60)
        ack.update(state(c, name))
        while True:
            st, b = c.call("POST", "/v1/layers/%s/train-step" % name, body)
            if st != 200:
                ack["error"] = "train-step answered %d %s" % (st, b[:200])
                break
            r = json.loads(b)
            if r["version"] != ack["version"] + 1:
                ack["error"] = "version %d after %d" % (r["version"], ack["version"])
                break
            ack.update(version=r["version"], arrays=r["arrays"], acked=ack["acked"] + 1)
            if ack["acked"] == 1:  # the kill loop waits for this before it picks its moment
                open(out + ".acked", "w").close()
    except (OSError, http.client.HTTPException, SystemExit):
        pass  # killed: what was acknowledged is in ack
    with open(out + ".new", "w") as f:
        json.dump(ack, f)
    os.rename(out + ".new", out)


def cmd_check(base, name, ackfile, twin):
    """After a kill -9 and a restart: the layer is there, at the last acknowledged version with
    exactly its arrays, or one step ahead (the unacknowledged step reached the disk). For k_sgd,
    one step ahead must be exactly that step (replayed on TWIN from the acknowledged arrays).
    Prints equal, ahead or untracked; exits 1 with the reason on failure."""
    with open(ackfile) as f:
        ack = json.load(f)
    if ack["error"]:
        sys.exit("%s: the stream failed: %s" % (name, ack["error"]))
    now = state(Client(base), name)
    if ack["version"] is None:
        print("untracked 0")  # killed before the stream began
        return
    if now["version"] == ack["version"]:
        if now["arrays"] != ack["arrays"]:
            sys.exit("%s: version %d reloaded with other arrays: %s, acknowledged %s" %
                     (name, now["version"], now["arrays"], ack["arrays"]))
        print("equal", ack["acked"])
        return
    if now["version"] != ack["version"] + 1:
        sys.exit("%s: reloaded version %d, last acknowledged %d" %
                 (name, now["version"], ack["version"]))
    if name == "k_sgd":  # plain sgd, wolfram momentum: the arrays are the whole state
        t = Client(twin)
        d = dict(ALL[name][0], arrays=ack["arrays"])
        t.ok("PUT", "/v1/layers/replay", d, want=(200, 201))
        body = step_body(name, 1, batch=4)
        body["return"] = ["arrays"]
        replay = json.loads(t.ok("POST", "/v1/layers/replay/train-step", body))["arrays"]
        if replay != now["arrays"]:
            sys.exit("%s: one step ahead, but not the step: %s, replayed %s" %
                     (name, now["arrays"], replay))
    print("ahead", ack["acked"])


def cmd_garble(path, how):
    """Damages a stored file: flip (one byte in the middle), garbage, version (a format from
    the future: 9999)."""
    with open(path, "rb") as f:
        b = bytearray(f.read())
    if how == "flip":
        b[len(b) // 2] ^= 0x5a
    elif how == "garbage":
        b = bytearray(random.Random(5).randbytes(len(b)))
    elif how == "version":
        b[4:8] = (9999).to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(b)


def fnv1a(b):
    h = 0xcbf29ce484222325
    for x in b:
        h = ((h ^ x) * 0x100000001b3) & 0xffffffffffffffff
    return h


def cmd_rename(src, dst, name):
    """Writes SRC as a valid layer file for another layer name (length and checksum redone)."""
    with open(src, "rb") as f:
        b = f.read()
    old = int.from_bytes(b[16:20], "little")
    payload = len(name).to_bytes(4, "little") + name.encode() + b[20 + old:-8]
    out = b[:8] + len(payload).to_bytes(8, "little") + payload
    with open(dst, "wb") as f:
        f.write(out + fnv1a(out).to_bytes(8, "little"))


if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
